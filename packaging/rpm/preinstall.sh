#!/bin/sh
# rpm: the outbox user exists before the files are laid down.
set -e
if ! getent group outbox >/dev/null; then
	groupadd --system outbox
fi
if ! getent passwd outbox >/dev/null; then
	useradd --system --gid outbox --home-dir /var/spool/outbox --no-create-home --shell /sbin/nologin --comment "Outbox mail relay" outbox
fi
