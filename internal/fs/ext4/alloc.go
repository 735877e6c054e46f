package ext4

import (
	"fmt"
	"math/bits"

	"github.com/bakeryhq/bakery/internal/fs"
)

// Allocation. Bitmaps are loaded per group on first use; groups flagged
// BLOCK_UNINIT / INODE_UNINIT get their bitmaps computed the way the kernel
// initialises them. Blocks freed during a session are not reused before
// Close ("pending free"): data is written straight to the device, so it may
// only land in blocks the committed filesystem does not reference.

func bitSet(b []byte, i uint64) bool { return b[i>>3]&(1<<(i&7)) != 0 }
func setBit(b []byte, i uint64)      { b[i>>3] |= 1 << (i & 7) }
func clearBit(b []byte, i uint64)    { b[i>>3] &^= 1 << (i & 7) }

func setBits(b []byte, from, to uint64) {
	for i := from; i < to; i++ {
		if i&7 == 0 && to-i >= 8 {
			b[i>>3] = 0xFF
			i += 7
			continue
		}
		setBit(b, i)
	}
}

// findZero returns the first clear bit in [from, to), or to.
func findZero(b []byte, from, to uint64) uint64 {
	i := from
	for i < to {
		if i&63 == 0 && to-i >= 64 {
			w := le.Uint64(b[i>>3:])
			if w == ^uint64(0) {
				i += 64
				continue
			}
			return i + uint64(bits.TrailingZeros64(^w))
		}
		if !bitSet(b, i) {
			return i
		}
		i++
	}
	return to
}

// runOfZeros returns how many clear bits start at from, up to max, below to.
func runOfZeros(b []byte, from, to, max uint64) uint64 {
	i := from
	for i < to && i-from < max {
		if i&63 == 0 && to-i >= 64 && max-(i-from) >= 64 {
			w := le.Uint64(b[i>>3:])
			if w == 0 {
				i += 64
				continue
			}
			i += uint64(bits.TrailingZeros64(w))
			break
		}
		if bitSet(b, i) {
			break
		}
		i++
	}
	if i > to {
		i = to
	}
	if i-from > max {
		return max
	}
	return i - from
}

// fillUninitBlockBitmap computes the block bitmap of a BLOCK_UNINIT group:
// its superblock/descriptor copies, the reserved GDT blocks, every block or
// inode bitmap and inode table of its flex group that lies inside it, and
// padding past the group's end.
func (f *FS) fillUninitBlockBitmap(g uint32, bm []byte) error {
	clear(bm)
	setBits(bm, 0, min(f.baseMetaBlocks(g), f.groupBlockCount(g)))
	start, count := f.groupFirstBlock(g), f.groupBlockCount(g)
	mark := func(blk, n uint64) {
		lo, hi := max(blk, start), min(blk+n, start+count)
		if lo < hi {
			setBits(bm, lo-start, hi-start)
		}
	}
	first, last := g, g+1
	if f.sb.hasIncompat(incompatFlexBG) {
		first, last = f.flexGroupRange(g)
	}
	for h := first; h < last; h++ {
		d, err := f.desc(h)
		if err != nil {
			return err
		}
		mark(d.blockBitmap, 1)
		mark(d.inodeBitmap, 1)
		mark(d.inodeTable, f.itableBlocks)
	}
	setBits(bm, count, uint64(f.blockSize)*8)
	return nil
}

// blockBitmap returns group g's block bitmap for reading.
func (f *FS) blockBitmap(g uint32, d groupDesc) ([]byte, error) {
	if f.hasGroupCsum() && d.flags&bgBlockUninit != 0 {
		bm := make([]byte, f.blockSize)
		return bm, f.fillUninitBlockBitmap(g, bm)
	}
	if err := f.checkDescLayout(g, d); err != nil {
		return nil, err
	}
	bm, err := f.block(d.blockBitmap)
	if err != nil {
		return nil, err
	}
	if _, mine := f.dirty[d.blockBitmap]; f.csum && f.verifyChecksums && !mine && !f.bitmapVerified[d.blockBitmap] {
		if !f.bitmapCsumOK(bm, f.bpg/8, d.blockCsum) {
			return nil, corruptf("group %d block bitmap checksum mismatch", g)
		}
		f.bitmapVerified[d.blockBitmap] = true
	}
	return bm, nil
}

func (f *FS) bitmapCsumOK(bm []byte, n uint64, stored uint32) bool {
	c := crc32c(f.csumSeed, bm[:n])
	if f.descSize < descSize64 {
		return uint16(c) == uint16(stored)
	}
	return c == stored
}

// blockBitmapRW returns group g's block bitmap for modification. If the
// group was BLOCK_UNINIT the flag is cleared in d (the caller stores d).
func (f *FS) blockBitmapRW(g uint32, d *groupDesc) ([]byte, error) {
	if _, err := f.blockBitmap(g, *d); err != nil {
		return nil, err
	}
	f.bitmapDirty[g] = true
	if f.hasGroupCsum() && d.flags&bgBlockUninit != 0 {
		bm := f.blockNew(d.blockBitmap)
		if err := f.fillUninitBlockBitmap(g, bm); err != nil {
			return nil, err
		}
		d.flags &^= bgBlockUninit
		// The descriptor's count for an uninitialised group must agree with
		// what the bitmap now says; keep the superblock total consistent.
		free := uint32(f.groupBlockCount(g)) - uint32(countOnes(bm, f.groupBlockCount(g)))
		if free != d.freeBlocks {
			f.touchSuper()
			f.sb.freeBlocks = f.sb.freeBlocks - uint64(d.freeBlocks) + uint64(free)
			d.freeBlocks = free
		}
		return bm, nil
	}
	return f.blockRW(d.blockBitmap)
}

func countOnes(b []byte, nbits uint64) uint64 {
	var n uint64
	full := nbits / 8
	for _, c := range b[:full] {
		n += uint64(bits.OnesCount8(c))
	}
	for i := full * 8; i < nbits; i++ {
		if bitSet(b, i) {
			n++
		}
	}
	return n
}

// forbiddenPrefix guards against allocating a group's superblock/GDT area
// even if a corrupt bitmap claims it is free.
func (f *FS) forbiddenPrefix(g uint32) uint64 { return f.baseMetaBlocks(g) }

// allocRun allocates one run of up to n free blocks, first fit at or after
// goal, wrapping around the filesystem.
func (f *FS) allocRun(goal, n uint64) (uint64, uint64, error) {
	if goal <= f.firstData || goal >= f.blocks {
		goal = f.firstData
	}
	g0 := f.groupOf(goal)
	for i := uint32(0); i <= f.groups; i++ {
		g := (g0 + i) % f.groups
		d, err := f.desc(g)
		if err != nil {
			return 0, 0, err
		}
		if d.freeBlocks == 0 {
			continue
		}
		from, to := f.forbiddenPrefix(g), f.groupBlockCount(g)
		if i == 0 {
			from = max(from, goal-f.groupFirstBlock(g))
		} else if i == f.groups {
			to = min(to, goal-f.groupFirstBlock(g))
		}
		if from >= to {
			continue
		}
		bm, err := f.blockBitmap(g, d)
		if err != nil {
			return 0, 0, err
		}
		at := findZero(bm, from, to)
		if at >= to {
			continue
		}
		cnt := runOfZeros(bm, at, to, n)
		if uint64(d.freeBlocks) < cnt {
			return 0, 0, corruptf("group %d free block count %d disagrees with its bitmap", g, d.freeBlocks)
		}
		bm, err = f.blockBitmapRW(g, &d)
		if err != nil {
			return 0, 0, err
		}
		setBits(bm, at, at+cnt)
		d.freeBlocks -= uint32(cnt)
		if err := f.putDesc(g, d); err != nil {
			return 0, 0, err
		}
		f.touchSuper()
		f.sb.freeBlocks -= min(cnt, f.sb.freeBlocks)
		return f.groupFirstBlock(g) + at, cnt, nil
	}
	return 0, 0, fmt.Errorf("ext4: allocating %d blocks: %w", n, fs.ErrNoSpace)
}

// allocBlocks allocates n blocks near goal in as few runs as possible.
func (f *FS) allocBlocks(goal, n uint64) ([]run, error) {
	var out []run
	for n > 0 {
		start, cnt, err := f.allocRun(goal, n)
		if err != nil {
			return nil, err
		}
		if k := len(out); k > 0 && out[k-1].phys+out[k-1].length == start {
			out[k-1].length += cnt
		} else {
			out = append(out, run{phys: start, length: cnt})
		}
		n -= cnt
		goal = start + cnt
	}
	return out, nil
}

// freeLater releases blocks [start, start+n) at Close. It checks that they
// are allocated and not already released, so corrupt images with shared
// blocks cannot make Close free a block twice.
func (f *FS) freeLater(start, n uint64) error {
	if start <= f.firstData || start >= f.blocks || n > f.blocks-start {
		return corruptf("freeing blocks %d+%d outside the filesystem", start, n)
	}
	for n > 0 {
		g := f.groupOf(start)
		off := start - f.groupFirstBlock(g)
		cnt := min(n, f.groupBlockCount(g)-off)
		d, err := f.desc(g)
		if err != nil {
			return err
		}
		bm, err := f.blockBitmap(g, d)
		if err != nil {
			return err
		}
		pend := f.pendingFree[g]
		if pend == nil {
			pend = make([]byte, f.blockSize)
			f.pendingFree[g] = pend
			f.onUndo(func() { delete(f.pendingFree, g) })
		}
		for i := off; i < off+cnt; i++ {
			if !bitSet(bm, i) || bitSet(pend, i) {
				return corruptf("block %d is freed but not in use (shared or already freed)", f.groupFirstBlock(g)+i)
			}
		}
		setBits(pend, off, off+cnt)
		lo, hi := off, off+cnt
		f.onUndo(func() {
			for i := lo; i < hi; i++ {
				clearBit(pend, i)
			}
		})
		if len(f.dirty) > 0 {
			for b := start; b < start+cnt; b++ {
				f.forget(b)
			}
		}
		start += cnt
		n -= cnt
	}
	return nil
}

// applyPendingFrees clears the bits of every block freed this session.
func (f *FS) applyPendingFrees() error {
	groups := make([]uint32, 0, len(f.pendingFree))
	for g := range f.pendingFree {
		groups = append(groups, g)
	}
	sortUint32(groups)
	for _, g := range groups {
		pend := f.pendingFree[g]
		d, err := f.desc(g)
		if err != nil {
			return err
		}
		bm, err := f.blockBitmapRW(g, &d)
		if err != nil {
			return err
		}
		var freed uint64
		for i := range pend {
			if pend[i] == 0 {
				continue
			}
			freed += uint64(bits.OnesCount8(pend[i] & bm[i]))
			bm[i] &^= pend[i]
		}
		d.freeBlocks += uint32(freed)
		if err := f.putDesc(g, d); err != nil {
			return err
		}
		f.sb.freeBlocks += freed
	}
	f.pendingFree = map[uint32][]byte{}
	return nil
}

func sortUint32(s []uint32) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// inodeBitmap returns group g's inode bitmap for reading.
func (f *FS) inodeBitmap(g uint32, d groupDesc) ([]byte, error) {
	if f.hasGroupCsum() && d.flags&bgInodeUninit != 0 {
		bm := make([]byte, f.blockSize)
		setBits(bm, uint64(f.ipg), uint64(f.blockSize)*8)
		return bm, nil
	}
	if err := f.checkDescLayout(g, d); err != nil {
		return nil, err
	}
	bm, err := f.block(d.inodeBitmap)
	if err != nil {
		return nil, err
	}
	if _, mine := f.dirty[d.inodeBitmap]; f.csum && f.verifyChecksums && !mine && !f.bitmapVerified[d.inodeBitmap] {
		if !f.bitmapCsumOK(bm, uint64(f.ipg)/8, d.inodeCsum) {
			return nil, corruptf("group %d inode bitmap checksum mismatch", g)
		}
		f.bitmapVerified[d.inodeBitmap] = true
	}
	return bm, nil
}

func (f *FS) inodeBitmapRW(g uint32, d *groupDesc) ([]byte, error) {
	if _, err := f.inodeBitmap(g, *d); err != nil {
		return nil, err
	}
	f.bitmapDirty[g] = true
	if f.hasGroupCsum() && d.flags&bgInodeUninit != 0 {
		bm := f.blockNew(d.inodeBitmap)
		setBits(bm, uint64(f.ipg), uint64(f.blockSize)*8)
		d.flags &^= bgInodeUninit
		return bm, nil
	}
	return f.blockRW(d.inodeBitmap)
}

// allocInode allocates the lowest free inode, searching from goalGroup.
func (f *FS) allocInode(goalGroup uint32, dir bool) (uint32, error) {
	if goalGroup >= f.groups {
		goalGroup = 0
	}
	for i := uint32(0); i < f.groups; i++ {
		g := (goalGroup + i) % f.groups
		d, err := f.desc(g)
		if err != nil {
			return 0, err
		}
		if d.freeInodes == 0 {
			continue
		}
		bm, err := f.inodeBitmap(g, d)
		if err != nil {
			return 0, err
		}
		from := uint64(0)
		firstInGroup := uint64(g)*uint64(f.ipg) + 1
		if uint64(f.sb.firstIno) > firstInGroup {
			from = uint64(f.sb.firstIno) - firstInGroup
		}
		idx := findZero(bm, from, uint64(f.ipg))
		if idx >= uint64(f.ipg) {
			continue
		}
		bm, err = f.inodeBitmapRW(g, &d)
		if err != nil {
			return 0, err
		}
		setBit(bm, idx)
		d.freeInodes--
		if dir {
			d.usedDirs++
		}
		if f.hasGroupCsum() {
			if d.flags&bgBlockUninit != 0 {
				if _, err := f.blockBitmapRW(g, &d); err != nil {
					return 0, err
				}
			}
			unused := min(d.itableUnused, f.ipg)
			used := uint64(f.ipg - unused)
			if idx >= used {
				if d.flags&bgItableZeroed == 0 {
					// Inodes below the new high-water mark get checked by
					// e2fsck; make sure stale table contents read as unused.
					for j := used; j < idx; j++ {
						if err := f.zeroInode(uint32(firstInGroup + j)); err != nil {
							return 0, err
						}
					}
				}
				d.itableUnused = f.ipg - uint32(idx) - 1
			}
		}
		if err := f.putDesc(g, d); err != nil {
			return 0, err
		}
		f.touchSuper()
		if f.sb.freeInodes > 0 {
			f.sb.freeInodes--
		}
		return uint32(firstInGroup + idx), nil
	}
	return 0, fmt.Errorf("ext4: no free inodes: %w", fs.ErrNoSpace)
}

func (f *FS) zeroInode(ino uint32) error {
	blk, off, err := f.inodeLocation(ino)
	if err != nil {
		return err
	}
	b, err := f.blockRW(blk)
	if err != nil {
		return err
	}
	clear(b[off : off+f.inodeSize])
	return nil
}

// freeInode releases inode ino and clears its table entry.
func (f *FS) freeInode(ino uint32, dir bool) error {
	g := (ino - 1) / f.ipg
	idx := uint64((ino - 1) % f.ipg)
	d, err := f.desc(g)
	if err != nil {
		return err
	}
	bm, err := f.inodeBitmap(g, d)
	if err != nil {
		return err
	}
	if !bitSet(bm, idx) {
		return corruptf("inode %d is freed but its bitmap bit is clear", ino)
	}
	bm, err = f.inodeBitmapRW(g, &d)
	if err != nil {
		return err
	}
	clearBit(bm, idx)
	d.freeInodes++
	if dir && d.usedDirs > 0 {
		d.usedDirs--
	}
	if err := f.putDesc(g, d); err != nil {
		return err
	}
	f.touchSuper()
	f.sb.freeInodes++
	return f.zeroInode(ino)
}

// updateBitmapChecksums refreshes the bitmap checksums of every group whose
// bitmaps changed (called by Close).
func (f *FS) updateBitmapChecksums() error {
	if !f.csum {
		return nil
	}
	groups := make([]uint32, 0, len(f.bitmapDirty))
	for g := range f.bitmapDirty {
		groups = append(groups, g)
	}
	sortUint32(groups)
	for _, g := range groups {
		d, err := f.desc(g)
		if err != nil {
			return err
		}
		if d.flags&bgBlockUninit == 0 {
			bm, err := f.block(d.blockBitmap)
			if err != nil {
				return err
			}
			d.blockCsum = crc32c(f.csumSeed, bm[:f.bpg/8])
		}
		if d.flags&bgInodeUninit == 0 {
			bm, err := f.block(d.inodeBitmap)
			if err != nil {
				return err
			}
			d.inodeCsum = crc32c(f.csumSeed, bm[:f.ipg/8])
		}
		if err := f.putDesc(g, d); err != nil {
			return err
		}
	}
	return nil
}
