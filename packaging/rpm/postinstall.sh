#!/bin/sh
# rpm: spool modes as on Debian; the units are enabled through presets
# and started only once `outbox check` accepts the configuration.
set -e
install -d -m 0751 -o outbox -g outbox /var/spool/outbox
install -d -m 1733 -o outbox -g outbox /var/spool/outbox/maildrop
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	systemctl preset outbox.socket outbox.service >/dev/null 2>&1 || true
	if outbox check --config /etc/outbox/relay.hcl >/dev/null 2>&1; then
		systemctl try-restart outbox.service >/dev/null 2>&1 || true
	else
		echo "outbox: edit /etc/outbox/relay.hcl (run 'outbox check'), put the password in /etc/outbox/password (root:outbox, 0640), then: systemctl enable --now outbox.socket outbox.service" >&2
	fi
fi
