#!/bin/sh
# Installs the Debian packages bakery needs, but only those whose commands are
# missing, so `make run` on a ready machine never touches apt.
#   scripts/ensure-deps.sh run    what `make run` needs (only Go: see install_go)
#   scripts/ensure-deps.sh test   what the test suite's oracles need
set -eu

profile=${1:-run}

# command:package pairs
run_deps=""
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

# Go may live in /usr/local/go (or ~/.local/go, where install_go puts it
# without root) without being on PATH.
PATH=$PATH:/usr/local/go/bin:$HOME/.local/go/bin:/usr/sbin:/sbin

SUDO=""
if [ "$(id -u)" != 0 ]; then
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive

# go_usable: a Go new enough to fetch the toolchain go.mod asks for by
# itself (GOTOOLCHAIN, Go 1.21 and later). Debian bookworm's golang-go is
# 1.19, which cannot even read go.mod.
go_usable() {
	command -v go >/dev/null 2>&1 || return 1
	minor=$(go env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
	[ -n "$minor" ] && [ "$minor" -ge 21 ]
}

# install_go puts the toolchain go.mod names in /usr/local/go (root) or
# ~/.local/go ($GO_INSTALL_DIR overrides), from the Go module proxy, which serves every release as the
# module golang.org/toolchain.
install_go() {
	want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$(dirname "$0")/../go.mod")
	arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
	case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
	proxy=${GOPROXY:-https://proxy.golang.org}
	proxy=${proxy%%,*}
	[ "$proxy" != direct ] && [ "$proxy" != off ] || proxy=https://proxy.golang.org
	for tool in curl unzip; do
		command -v $tool >/dev/null 2>&1 || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends $tool ca-certificates >/dev/null; }
	done
	dest=/usr/local/go
	[ "$(id -u)" = 0 ] || dest=$HOME/.local/go
	dest=${GO_INSTALL_DIR:-$dest}
	echo "installing Go $want ($arch) from $proxy into $dest" >&2
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	mod=v0.0.1-go$want.linux-$arch
	curl -fsSL -o "$tmp/go.zip" "$proxy/golang.org/toolchain/@v/$mod.zip"
	unzip -q "$tmp/go.zip" -d "$tmp"
	# Module zips keep no file modes: the binaries need theirs back.
	chmod +x "$tmp/golang.org/toolchain@$mod"/bin/* "$tmp/golang.org/toolchain@$mod"/pkg/tool/*/*
	rm -rf "$dest"
	mkdir -p "$(dirname "$dest")"
	mv "$tmp/golang.org/toolchain@$mod" "$dest"
}

go_usable || install_go

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
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
