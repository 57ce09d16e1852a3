#!/bin/sh
set -e
chown outbox:outbox /var/spool/outbox
chmod 0755 /var/spool/outbox
chown outbox:outbox /var/spool/outbox/maildrop
chmod 1733 /var/spool/outbox/maildrop
chgrp outbox /etc/outbox/relay.hcl || true
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl enable outbox.service >/dev/null 2>&1 || true
	if outbox check --config /etc/outbox/relay.hcl >/dev/null 2>&1; then
		systemctl restart outbox.service || true
	else
		echo "outbox: edit /etc/outbox/relay.hcl (run 'outbox check'), then 'systemctl start outbox'" >&2
	fi
fi
