#!/bin/sh
# mkroot.sh ROOT: a Debian 12 (bookworm) root in the empty folder ROOT for
# the package test: debootstrap's minbase, then exim4 (the MTA our package
# must replace), bsd-mailx, php-cli, procps, and systemd (booted with
# systemd-nspawn to run the unit as shipped) from the archive.
#
# The finished root is cached as a tarball under $OUTBOX_CI_CACHE
# (default /var/cache/outbox-ci), named after a hash of the suite and the
# package list, so a change to either makes a new one; later runs unpack
# it in seconds. OUTBOX_DEBIAN_MIRROR overrides debootstrap's default mirror.
set -eu

root=$1
cache=${OUTBOX_CI_CACHE:-/var/cache/outbox-ci}
suite=bookworm
packages="exim4-daemon-light bsd-mailx php-cli procps systemd systemd-sysv dbus"
key=$(printf '%s\n' "$suite" "$packages" | sha256sum | cut -c1-16)
tarball="$cache/debian-$suite-$key.tar"

if [ -r "$tarball" ]; then
	tar -C "$root" -xf "$tarball"
	echo "mkroot: unpacked $tarball" >&2
	exit 0
fi

debootstrap --variant=minbase "$suite" "$root" ${OUTBOX_DEBIAN_MIRROR:-} >"$root.debootstrap.log" 2>&1 || {
	tail -n 30 "$root.debootstrap.log" >&2
	exit 1
}
rm -f "$root.debootstrap.log"

# Nothing installed in the root may start a daemon: the root shares the
# host's network, and exim would take port 25.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"

mount -t proc proc "$root/proc"
trap 'umount "$root/proc"' EXIT
export DEBIAN_FRONTEND=noninteractive
for try in 1 2 3; do
	if chroot "$root" apt-get update -qq &&
		chroot "$root" apt-get install -y -qq --no-install-recommends $packages >/dev/null; then
		break
	fi
	[ "$try" -lt 3 ] || { echo "mkroot: apt-get failed three times" >&2; exit 1; }
	sleep 10
done
chroot "$root" apt-get clean
umount "$root/proc"
trap - EXIT

if mkdir -p "$cache" 2>/dev/null; then
	tar -C "$root" -cf "$tarball.tmp.$$" . && mv "$tarball.tmp.$$" "$tarball" ||
		rm -f "$tarball.tmp.$$"
	echo "mkroot: cached $tarball" >&2
fi
