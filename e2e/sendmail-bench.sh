#!/bin/sh
# sendmail-bench.sh times `sendmail -t -i` with a 4 KiB message, one whole
# process per call, for Outbox's two programs (sendmail, the C program that
# hands the call to the daemon's sendmail socket, and outbox-sendmail, the
# whole shim in Go), dma and Postfix's sendmail (and /bin/true, the cost of
# any process) side by side in one run: the calls are taken in turn, so
# that all of them see the same machine load. Each call must return only
# once the message is stored (Outbox: the daemon's answer after its commit;
# dma: its queue file fsynced; Postfix: the maildrop file fsynced by
# postdrop), and every call must exit 0 for the run to count.
#
# The three MTAs live in a scratch Debian root (chroot), so that nothing
# is installed on this machine and all three write to the same disk; each
# delivers what it stored to a local mailbox in the background, as it
# would on a server. Calls run as the user nobody.
#
# Usage, as root, from the repository:
#
#   e2e/sendmail-bench.sh [DEBIAN_ROOT_TAR]     (N=300 calls of each)
#
# DEBIAN_ROOT_TAR is a tar of a Debian bookworm root, by default the one
# the package test caches (/var/cache/outbox-ci/debian-bookworm-*.tar); it
# needs network access to the Debian archive for postfix and dma.
set -eu

N=${N:-300}
TAR=${1:-$(ls /var/cache/outbox-ci/debian-bookworm-*.tar 2>/dev/null | head -n 1)}
[ "$(id -u)" = 0 ] || { echo "$0: run as root (chroot)" >&2; exit 1; }
[ -f "$TAR" ] || { echo "$0: no Debian root tar; pass one" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/outbox-sendmail-bench.XXXXXX)
ROOT=$WORK/root
DAEMON=
cleanup() {
	[ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
	chroot "$ROOT" postfix stop >/dev/null 2>&1 || true
	umount "$ROOT/proc" 2>/dev/null || true
	if grep -q " $ROOT/" /proc/self/mounts; then
		echo "$0: $ROOT still has mounts; left in place" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT INT TERM

echo "building" >&2
make -s build
go build -o "$WORK/outbox-bench" ./cmd/outbox-bench

echo "unpacking $TAR into $ROOT, installing postfix and dma" >&2
mkdir -p "$ROOT"
tar -xf "$TAR" -C "$ROOT"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount -t proc proc "$ROOT/proc"
in_root() { chroot "$ROOT" env PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
in_root sh -c '
	set -e
	echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
	echo "postfix postfix/mailname string bench.invalid" | debconf-set-selections
	apt-get -qq update
	apt-get -qq install -y --no-install-recommends postfix >/dev/null
	# dma and postfix both claim /usr/sbin/sendmail: dma is unpacked by
	# hand, as /usr/sbin/dma, with the modes its package gives.
	cd /tmp && apt-get -qq download dma && dpkg-deb -x dma_*.deb /tmp/dma
	cp -a /tmp/dma/usr/sbin/dma /usr/sbin/dma
	cp -a /tmp/dma/usr/lib/dma /usr/lib/dma
	cp -a /tmp/dma/var/spool/dma /var/spool/dma
	mkdir -p /etc/dma
	printf "MAILNAME /etc/mailname\n" >/etc/dma/dma.conf
	useradd -m bench
	postfix start >/dev/null 2>&1
'

echo "starting outbox" >&2
install -m 755 dist/outbox "$ROOT/usr/local/bin/outbox"
install -m 755 dist/sendmail dist/outbox-sendmail "$ROOT/usr/local/sbin/"
mkdir -p "$ROOT/etc/outbox" "$ROOT/run/outbox" "$ROOT/var/spool/outbox"
cat >"$ROOT/etc/outbox/relay.hcl" <<'EOF'
hostname = "bench.invalid"
listen {
  address = "unix:/run/outbox/submit.sock"
}
aliases {
  bench = "bench@example.com"
}
upstream "local" {
  type = "maildir"
  path = "/var/mail/outbox"
}
EOF
chroot "$ROOT" /usr/local/bin/outbox serve 2>"$WORK/outbox.log" &
DAEMON=$!
i=0
until [ -S "$ROOT/run/outbox/submit.sock" ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || { cat "$WORK/outbox.log" >&2; exit 1; }
	sleep 0.1
done

# 4096 bytes: a header and 76-column lines.
{
	printf 'To: bench\nSubject: sendmail bench\n\n'
	i=0
	while [ $i -lt 52 ]; do
		printf '%076d\n' $i
		i=$((i + 1))
	done
} | head -c 4095 >"$WORK/msg"
echo >>"$WORK/msg"

echo "timing $N calls of each" >&2
"$WORK/outbox-bench" sendmail -n "$N" -root "$ROOT" -user 65534:65534 -stdin "$WORK/msg" \
	'outbox=/usr/local/sbin/sendmail -t -i' \
	'outbox-whole=/usr/local/sbin/outbox-sendmail -t -i' \
	'dma=/usr/sbin/dma -t -i' \
	'postfix=/usr/sbin/sendmail -t -i' \
	'true=/bin/true'
uname -srm
# What each stored, as a check that the calls did their work: Outbox's
# upstream is a Maildir, dma and Postfix deliver to /var/mail/bench.
calls=$((N + 10)) # the warm-up calls too
echo "each was called $calls times; delivered so far: outbox $(ls "$ROOT/var/mail/outbox/new" | wc -l)," \
	"dma and postfix $(grep -c '^Subject: sendmail bench' "$ROOT/var/mail/bench" || true) (together)," \
	"still queued: dma $(ls "$ROOT/var/spool/dma" | grep -c '^M' || true)," \
	"postfix $(find "$ROOT/var/spool/postfix/maildrop" "$ROOT/var/spool/postfix/incoming" "$ROOT/var/spool/postfix/active" "$ROOT/var/spool/postfix/deferred" -type f | wc -l)"
