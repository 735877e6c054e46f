#!/bin/sh
# Copying a cached base image must cost what its data costs, not its size.
# Compares fetch.CopySparse (the copy every build starts with) against
# `cp --sparse=always` on a 2 GiB image holding 1 MiB of data, and on an
# 8 GiB one with the same data (the time should stay flat).
set -eu
cd "$(dirname "$0")/.."
PATH=$PATH:/usr/local/go/bin
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
runs=20

ns_now() { date +%s%N; }

for size in 2G 8G; do
	src=$dir/src-$size.img
	truncate -s "$size" "$src"
	for off in 0 700 1100 1900; do
		head -c 262144 /dev/urandom | dd of="$src" bs=1M seek="$off" conv=notrunc status=none
	done
	sync
	t0=$(ns_now)
	i=0
	while [ $i -lt $runs ]; do
		cp --sparse=always "$src" "$dir/cp.img"
		rm -f "$dir/cp.img"
		i=$((i + 1))
	done
	cp_ns=$(( ($(ns_now) - t0) / runs ))
	bakery_ns=$(BENCH_SRC=$src go test -run XXX -bench 'BenchmarkCopySparseFile$' -benchtime ${runs}x ./internal/fetch |
		awk '/^BenchmarkCopySparseFile/ { print int($3) }')
	echo "copy $size image with 1 MiB of data: bakery $((bakery_ns / 1000)) us, cp --sparse=always $((cp_ns / 1000)) us, ratio $(awk "BEGIN { printf \"%.2f\", $bakery_ns / $cp_ns }")"
done
