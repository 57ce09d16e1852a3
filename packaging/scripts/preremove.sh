#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl stop outbox.service >/dev/null 2>&1 || true
	systemctl disable outbox.service >/dev/null 2>&1 || true
fi
# The spool is kept: it may hold mail not yet delivered.
