#!/bin/sh
# TFTP throughput: bakery's TFTP server against dnsmasq's, same files, same
# run. 50 clients at once each fetch a Raspberry Pi 4 boot set (~30 MB of
# placeholder files of realistic sizes: start4.elf, fixup4.dat, the device
# tree, overlays, cmdline.txt, kernel8.img, an initramfs) on loopback, with
# blksize 1024 as a Pi 4 asks. Both servers run as their own processes and
# are measured with the same client. Prints the aggregate throughput ratio
# bakery/dnsmasq (target >= 1.0x) and the RFC 7440 windowsize gain over
# lock-step (target >= 4x).
#   sh bench/tftp.sh [extra tftpbench flags, e.g. -clients 20 -scale 4]
# Needs root (dnsmasq binds port 69) and dnsmasq.
set -eu
cd "$(dirname "$0")/.."
PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
command -v dnsmasq >/dev/null || { echo "bench/tftp.sh: dnsmasq not installed (scripts/ensure-deps.sh test)" >&2; exit 1; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/tftpbench" ./bench/tftpbench
echo "== bakery TFTP vs dnsmasq TFTP ($(date -u +%Y-%m-%d), $(nproc) cores, $(dnsmasq --version | head -1))"
"$bin/tftpbench" "$@"
