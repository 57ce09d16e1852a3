# /etc/outbox/relay.hcl — Outbox configuration. `outbox check` validates it.
# Every key is described in the README (/usr/share/doc/outbox).

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

aliases {
  # root must go somewhere real: cron and system tools write to it.
  root       = "admin@example.com"
  postmaster = "root"
}

# Fill in your provider; see `outbox test-upstream default`.
upstream "default" {
  provider      = "gmail"
  username      = "me@gmail.com"
  password_file = "/etc/outbox/password"   # chmod 600, owned by outbox
  envelope_from = "me@gmail.com"
}
