# Outbox development configuration: works as is in a fresh clone.
# `go run ./cmd/outbox serve --config relay.hcl` listens on 127.0.0.1:2525 and
# on var/submit.sock, spools to var/, and delivers into the Maildir
# var/maildir (no provider account needed). See README.md for every key.

hostname = "relay.localhost"

listen {
  address        = "127.0.0.1:2525"
  allow_networks = ["127.0.0.0/8"]
}

listen {
  address = "unix:var/submit.sock"     # the sendmail shim submits here
}

spool {
  path     = "var/spool.db"
  maildrop = "var/maildrop"            # shim mail while the daemon is down
}

admin {
  socket = "var/admin.sock"
}

queue {
  retry_initial = "1m"
  retry_max     = "1h"
  lifetime      = "120h"
  delay_warning = "0"
}

limits {
  max_message_size = "25MiB"
  max_recipients   = 100
}

aliases {
  root       = "ops@example.com"
  postmaster = "root"
}

# The first upstream takes all mail unless a route says otherwise.
upstream "capture" {
  type = "maildir"
  path = "var/maildir"
}

# A real provider looks like this (uncomment, fill in, move it first):
# upstream "gmail" {
#   provider      = "gmail"
#   username      = "me@gmail.com"
#   password_file = "/etc/outbox/gmail.secret"
#   envelope_from = "me@gmail.com"
# }
