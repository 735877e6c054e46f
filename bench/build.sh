#!/bin/sh
# bakery build against the I/O floor, and against base size.
#
# Builds a golden image from a 2 GiB demo base with 5 users, wifi, a static
# network, 200 MB of injected files (20 x 10 MB of random bytes via
# `source`) and golden cleanup, and compares the time with the I/O floor
# measured in the same run on the same filesystem: `cp --sparse=always` of
# the cached base plus writing the injected bytes, both fsynced (the build
# fsyncs what it publishes). Then builds the same spec from an 8 GiB base:
# the time should stay nearly flat.
#
# The pipeline (build.Run: copy, layout, steps, golden, commit, outputs,
# rename) is timed with `go test -bench BuildSpec`, the spec loaded once;
# the whole `bakery build` command, spec loading and checking included, is
# timed as well. Outputs are `formats = ["img"]` for the floor comparison:
# SHA256SUMS must hash every byte of the image, holes included, which no
# copy does; the default formats (img, bmap, sha256) are timed separately.
#
#   sh bench/build.sh            # RUNS=5 by default; each figure is the median
set -eu
cd "$(dirname "$0")/.."
PATH=$PATH:/usr/local/go/bin
runs=${RUNS:-5}
dir=$(mktemp -d "${BENCH_DIR:-/tmp}/bakery-build-bench.XXXXXX")
[ -n "${KEEP:-}" ] || trap 'rm -rf "$dir"' EXIT

go build -o "$dir/bakery" ./cmd/bakery
go test -c -o "$dir/build.test" ./internal/build
bk=$dir/bakery
"$bk" demo-base --size 2GiB "$dir/base-2g.img" 2>/dev/null
"$bk" demo-base --size 8GiB "$dir/base-8g.img" 2>/dev/null

mkdir -p "$dir/files"
i=1
while [ $i -le 20 ]; do
	head -c 10000000 /dev/urandom >"$dir/files/blob$i.bin"
	i=$((i + 1))
done

spec() { # base formats
	cat <<EOS
base { url = "$1" }
hostname = "dhcp"
EOS
	for u in alice bob carol dave erin; do
		cat <<EOS
user "$u" {
  groups              = ["sudo", "adm"]
  ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBCXaPwpZnwpU5R9XKILX5TrmmS3Jp9mmgCIFsKZWYOG $u@example"]
  sudo                = "nopasswd"
}
EOS
	done
	cat <<EOS
wifi {
  ssid    = "bench"
  psk     = "bench-passphrase"
  country = "IE"
}
network {
  interface "eth0" {
    address = "192.168.1.10/24"
    gateway = "192.168.1.1"
    dns     = ["192.168.1.1"]
  }
}
golden {}
output {
  name    = "bench"
  formats = $2
}
EOS
	i=1
	while [ $i -le 20 ]; do
		printf 'file "/opt/data/blob%d.bin" {\n  source = "files/blob%d.bin"\n}\n' $i $i
		i=$((i + 1))
	done
}
spec "$dir/base-2g.img" '["img"]' >"$dir/s2.hcl"
spec "$dir/base-8g.img" '["img"]' >"$dir/s8.hcl"
spec "$dir/base-2g.img" '["img", "bmap", "sha256"]' >"$dir/s2d.hcl"

ns_now() { date +%s%N; }
# median of stdin's numbers (one per line): robust to the odd run that
# meets another job's writeback on this shared disk
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# median of $runs runs, in nanoseconds
timed() {
	n=0
	while [ $n -lt "$runs" ]; do
		rm -rf "$dir/out" "$dir/floor"
		mkdir -p "$dir/out" "$dir/floor"
		t0=$(ns_now)
		"$@" >/dev/null 2>&1
		echo $(($(ns_now) - t0))
		n=$((n + 1))
	done | median
}

build() { "$bk" build "$1" --out "$dir/out" --cache "$dir/cache" --log-level error --source-date-epoch 1700000000; }
# Warm the cache (hash and cache each base once, as a first build does).
build "$dir/s2.hcl" >/dev/null 2>&1
build "$dir/s8.hcl" >/dev/null 2>&1
raw2=$(ls -S "$dir"/cache/raw/*.img | tail -n 1) # the 2 GiB one

floor() {
	cp --sparse=always "$raw2" "$dir/floor/base.img"
	cat "$dir"/files/*.bin >"$dir/floor/injected"
	sync "$dir/floor/base.img" "$dir/floor/injected"
}
pipeline() { # spec -> median ns of build.Run
	BAKERY_BENCH_SPEC=$1 BAKERY_BENCH_CACHE=$dir/cache TMPDIR=$dir "$dir/build.test" -test.run XXX \
		-test.bench 'BenchmarkBuildSpec$' -test.benchtime 1x -test.count "$runs" | awk '/^BenchmarkBuildSpec/ { print $3 }' | median
}

floor_ns=$(timed floor)
p2=$(pipeline "$dir/s2.hcl")
p8=$(pipeline "$dir/s8.hcl")
p2d=$(pipeline "$dir/s2d.hcl")
cli2=$(timed build "$dir/s2.hcl")
validate=$(timed "$bk" validate "$dir/s2.hcl")

ms() { awk "BEGIN { printf \"%.0f\", $1 / 1000000 }"; }
ratio() { awk "BEGIN { printf \"%.2f\", $1 / $2 }"; }
echo "I/O floor: cp --sparse=always of the 2 GiB base + 200 MB written, fsynced: $(ms "$floor_ns") ms"
echo "build pipeline, 2 GiB base, [img]:               $(ms "$p2") ms  ratio to the floor $(ratio "$p2" "$floor_ns")  (target <= 1.5)"
echo "build pipeline, 8 GiB base, [img]:               $(ms "$p8") ms  8 GiB / 2 GiB $(ratio "$p8" "$p2")  (target: nearly flat)"
echo "build pipeline, 2 GiB base, [img, bmap, sha256]: $(ms "$p2d") ms  ratio to the floor $(ratio "$p2d" "$floor_ns")"
echo "bakery build command, 2 GiB base, [img]:         $(ms "$cli2") ms  ratio to the floor $(ratio "$cli2" "$floor_ns")"
echo "  of which loading and checking the spec (bakery validate alone): $(ms "$validate") ms"
