#!/bin/sh
# Installs the Debian packages bakery needs, but only those whose commands are
# missing, so `make run` on a ready machine never touches apt.
#   scripts/ensure-deps.sh run    what `make run` needs (only Go)
#   scripts/ensure-deps.sh test   what the test suite's oracles need
set -eu

profile=${1:-run}

# command:package pairs
run_deps="go:golang-go"
test_deps="e2fsck:e2fsprogs debugfs:e2fsprogs fsck.fat:dosfstools mkfs.fat:dosfstools mcopy:mtools
sfdisk:fdisk losetup:mount bmaptool:bmap-tools cloud-init:cloud-init systemd-analyze:systemd
busybox:busybox dhclient:isc-dhcp-client dnsmasq:dnsmasq-base atftp:atftp qemu-img:qemu-utils rsync:rsync
curl:curl ip:iproute2 dpkg-deb:dpkg rpm:rpm xz:xz-utils zstd:zstd gzip:gzip bzip2:bzip2 sha256sum:coreutils
fallocate:util-linux partx:util-linux pwck:passwd"

case "$profile" in
run) deps=$run_deps ;;
test) deps="$run_deps $test_deps" ;;
*) echo "usage: $0 run|test" >&2; exit 2 ;;
esac

# Go may live in /usr/local/go without being on PATH.
PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin

missing=""
for pair in $deps; do
	cmd=${pair%%:*}
	pkg=${pair#*:}
	if ! command -v "$cmd" >/dev/null 2>&1; then
		case " $missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
	fi
done

if [ -z "$missing" ]; then
	exit 0
fi

echo "installing missing packages:$missing" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
