#!/bin/sh
# Benchmark `bakery flash` against bmaptool copy and dd on a 2 GiB Pi-like
# image with about 30 % data, written to an image file and to loop devices.
# Prints wall-time ratios; record results in docs/BENCHMARKS.md.
#
#   make build && sudo sh bench/flash.sh
#
# Needs root (loop devices, dropping caches), bmaptool, sfdisk, mkfs.fat,
# mkfs.ext4, mcopy, zstd, xz, losetup and about 14 GiB free in $BENCH_DIR
# (default: a fresh directory under /var/tmp).
set -eu

BAKERY=${BAKERY:-$(pwd)/bin/bakery}
[ -x "$BAKERY" ] || { echo "flash.sh: $BAKERY missing; run make build" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "flash.sh: needs root (loop devices, drop_caches)" >&2; exit 1; }
for tool in bmaptool sfdisk mkfs.fat mkfs.ext4 mcopy zstd xz losetup dd; do
	command -v "$tool" >/dev/null || { echo "flash.sh: $tool missing (scripts/ensure-deps.sh test)" >&2; exit 1; }
done

W=${BENCH_DIR:-$(mktemp -d /var/tmp/bakery-flash-bench.XXXXXX)}
mkdir -p "$W"
LOOPS=""
cleanup() {
	for l in $LOOPS; do losetup -d "$l" 2>/dev/null || true; done
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT INT TERM

IMG=$W/bench.img
SIZE_MIB=2048
BOOT_MIB=256
ROOT_MIB=$((SIZE_MIB - 4 - BOOT_MIB - 1))

echo "== building a ${SIZE_MIB} MiB image with ~30 % data in $W"
mkdir -p "$W/rootfs/usr/lib" "$W/rootfs/etc" "$W/boot"
echo "ID=debian" > "$W/rootfs/etc/os-release"
i=0
while [ $i -lt 6 ]; do
	# Half random, half compressible: like binaries and text in a real root.
	head -c 50M /dev/urandom > "$W/rootfs/usr/lib/blob$i"
	base64 -w 0 "$W/rootfs/usr/lib/blob$i" | head -c 50M > "$W/rootfs/usr/lib/text$i"
	i=$((i + 1))
done
head -c 20M /dev/urandom > "$W/boot/kernel8.img"
echo "arm_64bit=1" > "$W/boot/config.txt"
truncate -s ${SIZE_MIB}M "$IMG"
printf 'label: dos\nstart=8192, size=%d, type=c\nsize=%d, type=83\n' $((BOOT_MIB * 2048)) $((ROOT_MIB * 2048)) |
	sfdisk -q --no-reread --no-tell-kernel "$IMG"
mkfs.fat -F 32 -n BOOTFS -C "$W/boot.fat" $((BOOT_MIB * 1024)) >/dev/null
mcopy -s -i "$W/boot.fat" "$W/boot/kernel8.img" "$W/boot/config.txt" ::/
mkfs.ext4 -q -F -L rootfs -d "$W/rootfs" "$W/root.ext4" ${ROOT_MIB}M
dd if="$W/boot.fat" of="$IMG" bs=1M seek=4 conv=notrunc,sparse status=none
dd if="$W/root.ext4" of="$IMG" bs=1M seek=$((4 + BOOT_MIB)) conv=notrunc,sparse status=none
rm -rf "$W/rootfs" "$W/boot" "$W/boot.fat" "$W/root.ext4"
BMAP=$W/bench.img.bmaptool.bmap
bmaptool create -o "$BMAP" "$IMG" 2>/dev/null
zstd -q -T0 -k "$IMG" -o "$IMG.zst"
xz -T0 -k "$IMG"
mapped=$(sed -n 's/.*<MappedBlocksCount> *\([0-9]*\) *<.*/\1/p' "$BMAP")
echo "   data: $((mapped * 4096 / 1048576)) MiB of ${SIZE_MIB} MiB mapped (bmaptool create)"

drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
now() { date +%s.%N; }
REPEAT=${REPEAT:-3}
RUNS=$REPEAT
# rounds NAME...: run the commands c_NAME in rounds, each command once per
# round (after $PREP, with cold caches), REPEAT rounds, and keep each
# command's median wall time in $T_NAME and its times in $times_NAME. The
# machine may be shared and its disk's speed drifts: interleaving gives
# every tool the same conditions, and medians, not means, resist outliers.
rounds() {
	for name in "$@"; do eval "times_$name="; done
	k=0
	while [ $k -lt "$REPEAT" ]; do
		for name in "$@"; do
			[ -z "${PREP:-}" ] || eval "$PREP"
			drop
			t0=$(now)
			"c_$name" >"$W/out.$name.$k" 2>"$W/err.$name" || { echo "flash.sh: $name failed:" >&2; cat "$W/err.$name" >&2; exit 1; }
			t1=$(now)
			eval "times_$name=\"\$times_$name $(echo "$t1 $t0" | awk '{printf "%.3f", $1 - $2}')\""
		done
		k=$((k + 1))
	done
	for name in "$@"; do
		eval "times=\$times_$name"
		secs=$(echo $times | tr ' ' '\n' | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
		eval "T_$name=$secs"
		printf '   %-28s %7ss   (runs:%s)\n' "$name" "$secs" "$times"
	done
}
ratio() { echo "$1 $2" | awk '{ if ($2 > 0) printf "%.2f", $1 / $2; else print "n/a" }'; }
# paired A B: the median over rounds of A's time / B's time in the same
# round (the ratio least disturbed by the disk's drift between rounds).
paired() {
	eval "a=\$times_$1; b=\$times_$2"
	echo "$a|$b" | awk -F'|' '{n = split($1, x, " "); split($2, y, " "); for (i = 1; i <= n; i++) r[i] = (y[i] > 0 ? x[i] / y[i] : 0)
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
		printf "%.2f", r[int((n + 1) / 2)] }'
}
# json_sum NAME FIELD: FIELD summed over the runs of NAME (one target each).
json_sum() { cat "$W"/out."$1".* | sed -n "s/.*\"$2\": \([0-9.]*\).*/\1/p" | awk '{s += $1} END {printf "%.3f", s}'; }
# newloop FILE: attach a fresh all-zero card to a loop device, in $LOOP
# (not echoed: a command substitution's subshell would lose $LOOPS).
newloop() {
	truncate -s 0 "$1"; truncate -s ${SIZE_MIB}M "$1"
	LOOP=$(losetup -f --show "$1"); LOOPS="$LOOPS $LOOP"
}

echo "== image file target"
F=$W/target.img
rm -f "$F"
"$BAKERY" flash --json --bmap "$BMAP" "$IMG" "$F" >/dev/null 2>"$W/err.check" || { cat "$W/err.check" >&2; exit 1; }
cmp "$IMG" "$F" || { echo "flash.sh: target differs from image" >&2; exit 1; }
c_bmaptool_file() { bmaptool -q copy --bmap "$BMAP" "$IMG" "$F"; }
c_bakery_file_noverify() { "$BAKERY" flash --json --no-verify --bmap "$BMAP" "$IMG" "$F"; }
c_bakery_file() { "$BAKERY" flash --json --bmap "$BMAP" "$IMG" "$F"; }
c_dd_file() { dd if="$IMG" of="$F" bs=4M conv=fsync status=none; }
PREP='rm -f "$F"'
rounds bmaptool_file bakery_file_noverify bakery_file dd_file
write_file=$(json_sum bakery_file write_seconds)
verify_file=$(json_sum bakery_file verify_seconds)
rm -f "$F"
PREP=""

echo "== loop device target"
newloop "$W/card1"; L1=$LOOP
c_bmaptool_loop() { bmaptool -q copy --bmap "$BMAP" "$IMG" "$L1"; }
c_bakery_loop_noverify() { "$BAKERY" flash --json --yes --no-verify --bmap "$BMAP" "$IMG" "$L1"; }
c_bakery_loop() { "$BAKERY" flash --json --yes --bmap "$BMAP" "$IMG" "$L1"; }
c_bakery_loop_ownmap() { "$BAKERY" flash --json --yes "$IMG" "$L1"; }
c_dd_loop() { dd if="$IMG" of="$L1" bs=4M conv=fsync status=none; }
rounds bmaptool_loop bakery_loop_noverify bakery_loop bakery_loop_ownmap dd_loop
write_loop=$(json_sum bakery_loop write_seconds)
verify_loop=$(json_sum bakery_loop verify_seconds)

echo "== compressed sources to a loop device"
c_bmaptool_zst() { bmaptool -q copy --bmap "$BMAP" "$IMG.zst" "$L1"; }
c_bakery_zst_noverify() { "$BAKERY" flash --json --yes --no-verify --bmap "$BMAP" "$IMG.zst" "$L1"; }
c_bakery_zst() { "$BAKERY" flash --json --yes --bmap "$BMAP" "$IMG.zst" "$L1"; }
c_bmaptool_xz() { bmaptool -q copy --bmap "$BMAP" "$IMG.xz" "$L1"; }
c_bakery_xz_noverify() { "$BAKERY" flash --json --yes --no-verify --bmap "$BMAP" "$IMG.xz" "$L1"; }
c_bakery_xz() { "$BAKERY" flash --json --yes --bmap "$BMAP" "$IMG.xz" "$L1"; }
rounds bmaptool_zst bakery_zst_noverify bakery_zst bmaptool_xz bakery_xz_noverify bakery_xz

echo "== four loop devices at once"
newloop "$W/card2"; L2=$LOOP
newloop "$W/card3"; L3=$LOOP
newloop "$W/card4"; L4=$LOOP
c_bakery_four() { "$BAKERY" flash --json --yes --bmap "$BMAP" "$IMG.zst" "$L1" "$L2" "$L3" "$L4"; }
c_bmaptool_four_serial() {
	for l in $L1 $L2 $L3 $L4; do bmaptool -q copy --bmap "$BMAP" "$IMG.zst" "$l" || return 1; done
}
rounds bakery_four
REPEAT=1 rounds bmaptool_four_serial

echo
echo "== ratios (wall time; lower is better for bakery)"
printf '   %-52s %s\n' "bakery/bmaptool, file, no verify (target <= 1.0)" "$(ratio "$T_bakery_file_noverify" "$T_bmaptool_file")"
printf '   %-52s %s\n' "bakery/bmaptool, file, with read-back verify" "$(ratio "$T_bakery_file" "$T_bmaptool_file")"
printf '   %-52s %s\n' "bakery/bmaptool, loop, no verify (target <= 1.0)" "$(ratio "$T_bakery_loop_noverify" "$T_bmaptool_loop")"
printf '   %-52s %s\n' "bakery/bmaptool, loop, with read-back verify" "$(ratio "$T_bakery_loop" "$T_bmaptool_loop")"
printf '   %-52s %s\n' "dd/bakery, file, no verify, speed-up (target >= 3)" "$(ratio "$T_dd_file" "$T_bakery_file_noverify")"
printf '   %-52s %s\n' "  same, median of per-round ratios" "$(paired dd_file bakery_file_noverify)"
printf '   %-52s %s\n' "dd/bakery, file, with verify, speed-up" "$(ratio "$T_dd_file" "$T_bakery_file")"
printf '   %-52s %s\n' "dd/bakery, loop, no verify, speed-up (target >= 3)" "$(ratio "$T_dd_loop" "$T_bakery_loop_noverify")"
printf '   %-52s %s\n' "  same, median of per-round ratios" "$(paired dd_loop bakery_loop_noverify)"
printf '   %-52s %s\n' "dd/bakery, loop, with verify, speed-up" "$(ratio "$T_dd_loop" "$T_bakery_loop")"
printf '   %-52s %s\n' "bytes written, dd/bakery (the I/O-bound limit)" "$(ratio "$SIZE_MIB" "$((mapped * 4096 / 1048576))")"
printf '   %-52s %s\n' "verify/write, file (target <= 1.2)" "$(ratio "$verify_file" "$write_file")"
printf '   %-52s %s\n' "verify/write, loop (target <= 1.2)" "$(ratio "$verify_loop" "$write_loop")"
printf '   %-52s %s\n' "bakery own map/bmaptool map, loop" "$(ratio "$T_bakery_loop_ownmap" "$T_bakery_loop")"
printf '   %-52s %s\n' "bakery/bmaptool, zst source, no verify" "$(ratio "$T_bakery_zst_noverify" "$T_bmaptool_zst")"
printf '   %-52s %s\n' "bakery/bmaptool, zst source, with verify" "$(ratio "$T_bakery_zst" "$T_bmaptool_zst")"
printf '   %-52s %s\n' "bakery/bmaptool, xz source, no verify" "$(ratio "$T_bakery_xz_noverify" "$T_bmaptool_xz")"
printf '   %-52s %s\n' "bakery/bmaptool, xz source, with verify" "$(ratio "$T_bakery_xz" "$T_bmaptool_xz")"
printf '   %-52s %s\n' "bakery four targets / one target (zst)" "$(ratio "$T_bakery_four" "$T_bakery_zst")"
printf '   %-52s %s\n' "bakery four at once / bmaptool four in a row (zst)" "$(ratio "$T_bakery_four" "$T_bmaptool_four_serial")"
echo "   ($(nproc) CPUs, $(uname -r), median of $RUNS runs, $(date -u +%Y-%m-%d); load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
