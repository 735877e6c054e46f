#!/bin/sh
# bench/engine.sh — the image engine against the I/O floor and against
# e2fsprogs' debugfs + mtools' mcopy doing the same edits.
#
# Injects ~200 MB in 20 large files plus 500 small config files into the ext4
# root, and 5 files into the FAT boot partition, of a sparse demo image; at
# 2 GiB and at 8 GiB to show cost follows the bytes changed, not the size.
#
#   floor   = cp --sparse=always of the image + writing the same bytes + sync
#   bakery  = cp --sparse=always + `bakery fs put -r` (root, boot)   + sync
#   debugfs = cp --sparse=always + a debugfs -w script + mcopy        + sync
#
# Usage: sh bench/engine.sh   (needs bin/bakery: make build)
set -eu
cd "$(dirname "$0")/.."
BAKERY=${BAKERY:-$PWD/bin/bakery}
[ -x "$BAKERY" ] || { echo "build bin/bakery first (make build)" >&2; exit 1; }
for tool in debugfs mcopy e2fsck fsck.fat sfdisk; do
	command -v $tool >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/var/tmp}/bakery-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
# best of $REPS runs: the machine may be shared, and the minimum is the
# least disturbed measurement of each contender.
REPS=${REPS:-3}
best() { printf '%s\n' "$@" | sort -n | head -1; }
elapsed() { echo "$2 - $1" | bc; }
ratio() { echo "scale=2; $1 / $2" | bc; }

# Payload: 20 x 10 MiB of random data, 500 small configs, 5 boot files.
mkdir -p "$work/tree/opt/bench" "$work/tree/etc/bench" "$work/boot/bench"
i=1
while [ $i -le 20 ]; do
	head -c 10485760 /dev/urandom >"$work/tree/opt/bench/blob$i.bin"
	i=$((i + 1))
done
i=1
while [ $i -le 500 ]; do
	printf 'setting_%d = %d\nenabled = true\n' $i $i >"$work/tree/etc/bench/conf$i.conf"
	i=$((i + 1))
done
for i in 1 2 3 4 5; do
	printf 'dtoverlay=bench%d\n' $i >"$work/boot/bench/extra$i.txt"
done
payload=$(du -sb "$work/tree" "$work/boot" | awk '{s+=$1} END {print s}')

run_size() {
	size=$1
	base="$work/base-$size.img"
	"$BAKERY" demo-base "$base" --size "$size" >/dev/null 2>&1
	starts=$(sfdisk --dump "$base" | sed -n 's/.*start= *\([0-9]*\).*/\1/p')
	boot_off=$(($(echo "$starts" | sed -n 1p) * 512))
	root_off=$(($(echo "$starts" | sed -n 2p) * 512))
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true

	script="$work/debugfs.cmds"
	{
		echo "mkdir /opt/bench"
		echo "mkdir /etc/bench"
		for f in "$work"/tree/opt/bench/*; do echo "write $f /opt/bench/$(basename "$f")"; done
		for f in "$work"/tree/etc/bench/*; do echo "write $f /etc/bench/$(basename "$f")"; done
	} >"$script"
	floors="" bakerys="" dbgs=""
	rep=1
	while [ $rep -le "$REPS" ]; do
		# floor
		t0=$(now)
		cp --sparse=always "$base" "$work/floor.img"
		cat "$work"/tree/opt/bench/* "$work"/tree/etc/bench/* "$work"/boot/bench/* >"$work/floor.bytes"
		sync
		t1=$(now)
		floors="$floors $(elapsed "$t0" "$t1")"
		rm -f "$work/floor.img" "$work/floor.bytes"
		sync
		echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true

		# bakery
		rm -f "$work/bakery.img"
		t0=$(now)
		cp --sparse=always "$base" "$work/bakery.img"
		"$BAKERY" fs put -r "$work/bakery.img" root "$work/tree" / 2>/dev/null
		"$BAKERY" fs put -r "$work/bakery.img" boot "$work/boot/bench" /bench 2>/dev/null
		sync
		t1=$(now)
		bakerys="$bakerys $(elapsed "$t0" "$t1")"
		sync
		echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true

		# debugfs + mcopy
		rm -f "$work/debugfs.img"
		t0=$(now)
		cp --sparse=always "$base" "$work/debugfs.img"
		debugfs -w -f "$script" "$work/debugfs.img?offset=$root_off" >/dev/null 2>&1
		mmd -i "$work/debugfs.img@@$boot_off" ::/bench
		mcopy -i "$work/debugfs.img@@$boot_off" "$work"/boot/bench/* ::/bench/
		sync
		t1=$(now)
		dbgs="$dbgs $(elapsed "$t0" "$t1")"
		sync
		echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
		rep=$((rep + 1))
	done
	floor=$(best $floors) bakery=$(best $bakerys) dbg=$(best $dbgs)

	# Both results must be clean and hold the same bytes.
	for img in bakery debugfs; do
		dd if="$work/$img.img" of="$work/root.part" bs=1M iflag=skip_bytes skip="$root_off" conv=sparse status=none
		e2fsck -fn "$work/root.part" >/dev/null 2>&1 || { echo "$img: e2fsck found errors" >&2; exit 1; }
		debugfs -R "cat /opt/bench/blob7.bin" "$work/root.part" 2>/dev/null | cmp -s - "$work/tree/opt/bench/blob7.bin" ||
			{ echo "$img: blob7.bin differs" >&2; exit 1; }
	done
	rm -f "$work/bakery.img" "$work/debugfs.img" "$work/root.part" "$base"

	printf '%-6s  floor %6.2fs  bakery %6.2fs  debugfs+mcopy %6.2fs  bakery/floor %5sx  bakery/debugfs %5sx\n' \
		"$size" "$floor" "$bakery" "$dbg" "$(ratio "$bakery" "$floor")" "$(ratio "$bakery" "$dbg")"
	eval "bakery_$2=$bakery"
}

echo "payload: $((payload / 1048576)) MiB in 525 files (20 large, 500 small into ext4 root, 5 into FAT boot)"
run_size 2GiB small
run_size 8GiB large
echo "growth 2 GiB -> 8 GiB image, same edits: $(ratio "$bakery_large" "$bakery_small")x (flat = 1.00x)"
