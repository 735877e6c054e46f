#!/bin/sh
# NFS roots: (1) provisioning a machine's root over images with a 1 GiB and
# a 4 GiB root filesystem (60% full of files of realistic sizes), against an
# rsync -a copy of the same root tree, the seed system's way (target: at
# least 100x faster, and flat in the image size); (2) reading a root over
# NFS through the copy-on-write layer against go-nfs serving a plain
# directory with the same files (go-nfs's own example server: osfs behind
# helpers.NewCachingHandler), same client (go-nfs-client), same run, on
# loopback: a 256 MiB file in 1 MiB reads, and 2000 files of 4 KiB
# (target: at least 0.9x).
#   sh bench/nfs.sh [extra nfsbench flags, e.g. -sizes 1 -machines 50]
# Needs sfdisk, mkfs.fat, mkfs.ext4 and rsync, and about 8 GiB of scratch
# space in $TMPDIR.
set -eu
cd "$(dirname "$0")/.."
PATH=$PATH:/usr/local/go/bin:/usr/sbin:/sbin
for t in sfdisk mkfs.fat mkfs.ext4 rsync; do
	command -v $t >/dev/null || { echo "bench/nfs.sh: $t not installed (scripts/ensure-deps.sh test)" >&2; exit 1; }
done
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/nfsbench" ./bench/nfsbench
echo "== bakery NFS roots ($(date -u +%Y-%m-%d), $(nproc) cores, $(rsync --version | head -1))"
"$bin/nfsbench" "$@"
