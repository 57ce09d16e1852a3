# /etc/outbox/relay.hcl — Outbox configuration. `outbox check` validates it.
# Every key is described in the README (/usr/share/doc/outbox).
#
# Values containing CHANGE-ME are placeholders: `outbox check` fails, and the
# daemon does not start, until each is replaced (mail sent meanwhile waits in
# the maildrop folder). The package's configuration step (debconf, again with
# `dpkg-reconfigure outbox`) rewrites the lines marked "debconf" below:
# provider, username and envelope_from of upstream "default", the password
# into password_file, and root in the aliases block. Or edit them by hand.

# hostname = "server.example.com"   # default: this machine's host name

listen {
  address = "127.0.0.1:25"
}
listen {
  address = "[::1]:25"
}
listen {
  address = "unix:/run/outbox/submit.sock"   # used by /usr/sbin/sendmail
}

spool {
  path     = "/var/spool/outbox/spool.db"
  maildrop = "/var/spool/outbox/maildrop"
}

admin {
  socket = "/run/outbox/admin.sock"
}

# Debian's aliases (name: address, ...); the aliases block below wins for a
# name both define. A missing file is fine. Run newaliases after editing it.
aliases_file = "/etc/aliases"

aliases {
  # root must go somewhere real: cron and system tools write to it.
  root       = "CHANGE-ME@example.com"   # debconf: root's address
  postmaster = "root"
}

# Mail for every other local name with no alias (www-data, nobody, a user's
# cron job) goes where root's goes, as with Postfix's luser_relay.
local_catchall = "root"

# Check it with `outbox test-upstream default`.
upstream "default" {
  provider      = "CHANGE-ME"                # debconf: gmail, office365, qq, 163, ses… (README: Provider presets)
  username      = "CHANGE-ME@example.com"    # debconf: the account
  password_file = "/etc/outbox/password"     # debconf writes it: mode 0640, root:outbox
  envelope_from = "CHANGE-ME@example.com"    # debconf: the account's address (remove if the provider takes any sender)
}
