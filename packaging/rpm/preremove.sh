#!/bin/sh
# rpm: $1 is 0 on erase, 1 on upgrade; only an erase stops the service.
set -e
if [ "${1:-0}" -eq 0 ] && [ -d /run/systemd/system ]; then
	systemctl disable --now outbox.service outbox.socket >/dev/null 2>&1 || true
fi
# The spool is kept: it may hold mail not yet delivered.
