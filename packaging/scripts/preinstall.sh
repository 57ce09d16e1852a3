#!/bin/sh
set -e
if ! getent group outbox >/dev/null; then
	groupadd --system outbox
fi
if ! getent passwd outbox >/dev/null; then
	useradd --system --gid outbox --home-dir /var/spool/outbox --shell /usr/sbin/nologin --comment "Outbox mail relay" outbox
fi
