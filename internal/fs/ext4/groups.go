package ext4

// Block group geometry and group descriptors.

const (
	bgInodeUninit  = 0x1
	bgBlockUninit  = 0x2
	bgItableZeroed = 0x4

	descSize32 = 32
	descSize64 = 64

	// Group descriptor field offsets.
	gdBlockBitmapLo   = 0x0
	gdInodeBitmapLo   = 0x4
	gdInodeTableLo    = 0x8
	gdFreeBlocksLo    = 0xC
	gdFreeInodesLo    = 0xE
	gdUsedDirsLo      = 0x10
	gdFlags           = 0x12
	gdBlockBitmapCsLo = 0x18
	gdInodeBitmapCsLo = 0x1A
	gdItableUnusedLo  = 0x1C
	gdChecksum        = 0x1E
	gdBlockBitmapHi   = 0x20
	gdInodeBitmapHi   = 0x24
	gdInodeTableHi    = 0x28
	gdFreeBlocksHi    = 0x2C
	gdFreeInodesHi    = 0x2E
	gdUsedDirsHi      = 0x30
	gdItableUnusedHi  = 0x32
	gdBlockBitmapCsHi = 0x38
	gdInodeBitmapCsHi = 0x3A
)

type groupDesc struct {
	blockBitmap  uint64
	inodeBitmap  uint64
	inodeTable   uint64
	freeBlocks   uint32
	freeInodes   uint32
	usedDirs     uint32
	itableUnused uint32
	flags        uint16
	blockCsum    uint32
	inodeCsum    uint32
}

func (f *FS) parseDesc(b []byte) groupDesc {
	d := groupDesc{
		blockBitmap:  uint64(get32(b, gdBlockBitmapLo)),
		inodeBitmap:  uint64(get32(b, gdInodeBitmapLo)),
		inodeTable:   uint64(get32(b, gdInodeTableLo)),
		freeBlocks:   uint32(get16(b, gdFreeBlocksLo)),
		freeInodes:   uint32(get16(b, gdFreeInodesLo)),
		usedDirs:     uint32(get16(b, gdUsedDirsLo)),
		flags:        get16(b, gdFlags),
		blockCsum:    uint32(get16(b, gdBlockBitmapCsLo)),
		inodeCsum:    uint32(get16(b, gdInodeBitmapCsLo)),
		itableUnused: uint32(get16(b, gdItableUnusedLo)),
	}
	if f.descSize >= descSize64 {
		d.blockBitmap |= uint64(get32(b, gdBlockBitmapHi)) << 32
		d.inodeBitmap |= uint64(get32(b, gdInodeBitmapHi)) << 32
		d.inodeTable |= uint64(get32(b, gdInodeTableHi)) << 32
		d.freeBlocks |= uint32(get16(b, gdFreeBlocksHi)) << 16
		d.freeInodes |= uint32(get16(b, gdFreeInodesHi)) << 16
		d.usedDirs |= uint32(get16(b, gdUsedDirsHi)) << 16
		d.itableUnused |= uint32(get16(b, gdItableUnusedHi)) << 16
		d.blockCsum |= uint32(get16(b, gdBlockBitmapCsHi)) << 16
		d.inodeCsum |= uint32(get16(b, gdInodeBitmapCsHi)) << 16
	}
	return d
}

func (f *FS) encodeDesc(b []byte, d groupDesc) {
	put32(b, gdBlockBitmapLo, uint32(d.blockBitmap))
	put32(b, gdInodeBitmapLo, uint32(d.inodeBitmap))
	put32(b, gdInodeTableLo, uint32(d.inodeTable))
	put16(b, gdFreeBlocksLo, uint16(d.freeBlocks))
	put16(b, gdFreeInodesLo, uint16(d.freeInodes))
	put16(b, gdUsedDirsLo, uint16(d.usedDirs))
	put16(b, gdFlags, d.flags)
	put16(b, gdBlockBitmapCsLo, uint16(d.blockCsum))
	put16(b, gdInodeBitmapCsLo, uint16(d.inodeCsum))
	put16(b, gdItableUnusedLo, uint16(d.itableUnused))
	if f.descSize >= descSize64 {
		put32(b, gdBlockBitmapHi, uint32(d.blockBitmap>>32))
		put32(b, gdInodeBitmapHi, uint32(d.inodeBitmap>>32))
		put32(b, gdInodeTableHi, uint32(d.inodeTable>>32))
		put16(b, gdFreeBlocksHi, uint16(d.freeBlocks>>16))
		put16(b, gdFreeInodesHi, uint16(d.freeInodes>>16))
		put16(b, gdUsedDirsHi, uint16(d.usedDirs>>16))
		put16(b, gdItableUnusedHi, uint16(d.itableUnused>>16))
		put16(b, gdBlockBitmapCsHi, uint16(d.blockCsum>>16))
		put16(b, gdInodeBitmapCsHi, uint16(d.inodeCsum>>16))
	}
}

// descChecksum computes bg_checksum for the descriptor bytes b of group g
// (crc32c low 16 bits with metadata_csum, crc16 with uninit_bg).
func (f *FS) descChecksum(g uint32, b []byte) uint16 {
	var grp [4]byte
	put32(grp[:], 0, g)
	if f.csum {
		c := crc32c(f.csumSeed, grp[:])
		c = crc32c(c, b[:gdChecksum])
		c = crc32c(c, []byte{0, 0})
		if f.descSize > gdChecksum+2 {
			c = crc32c(c, b[gdChecksum+2:f.descSize])
		}
		return uint16(c)
	}
	c := crc16(0xFFFF, f.sb.uuid[:])
	c = crc16(c, grp[:])
	c = crc16(c, b[:gdChecksum])
	if f.is64 && f.descSize > gdChecksum+2 {
		c = crc16(c, b[gdChecksum+2:f.descSize])
	}
	return c
}

// hasGroupCsum reports whether descriptors carry checksums, which is also
// what makes the *_UNINIT flags meaningful.
func (f *FS) hasGroupCsum() bool { return f.csum || f.gdtCsum }

// groupFirstBlock is the first block of group g.
func (f *FS) groupFirstBlock(g uint32) uint64 { return f.firstData + uint64(g)*f.bpg }

// groupBlockCount is the number of blocks in group g (the last may be short).
func (f *FS) groupBlockCount(g uint32) uint64 {
	if g == f.groups-1 {
		return f.blocks - f.groupFirstBlock(g)
	}
	return f.bpg
}

// groupOf returns the group holding block blk.
func (f *FS) groupOf(blk uint64) uint32 { return uint32((blk - f.firstData) / f.bpg) }

func isPowerOf(n, base uint32) bool {
	for n > 1 {
		if n%base != 0 {
			return false
		}
		n /= base
	}
	return n == 1
}

// hasSuper reports whether group g holds a superblock backup.
func (f *FS) hasSuper(g uint32) bool {
	if g == 0 {
		return true
	}
	if f.sb.hasCompat(compatSparseSuper2) {
		return g == f.sb.backupBGs[0] || g == f.sb.backupBGs[1]
	}
	if g <= 1 || !f.sb.hasRoCompat(roCompatSparseSuper) {
		return true
	}
	if g&1 == 0 {
		return false
	}
	return isPowerOf(g, 3) || isPowerOf(g, 5) || isPowerOf(g, 7)
}

// baseMetaBlocks is the number of blocks at the start of group g taken by
// the superblock copy, group descriptor copies and reserved GDT blocks.
func (f *FS) baseMetaBlocks(g uint32) uint64 {
	var n uint64
	super := f.hasSuper(g)
	if super {
		n = 1
	}
	if !f.sb.hasIncompat(incompatMetaBG) || uint64(g) < uint64(f.sb.firstMetaBG)*uint64(f.descPerBlock) {
		if super {
			if f.sb.hasIncompat(incompatMetaBG) {
				n += uint64(f.sb.firstMetaBG)
			} else {
				n += f.descBlocks
			}
			n += uint64(f.sb.reservedGDT)
		}
	} else {
		r := g % f.descPerBlock
		if r == 0 || r == 1 || r == f.descPerBlock-1 {
			n++
		}
	}
	if g == 0 && f.firstData == 0 && f.blockSize == 1024 {
		n++ // boot block precedes the superblock (only with bigalloc)
	}
	return n
}

// gdtStart is the first block of the primary descriptor table: the one
// after the superblock's block (block 1 or 2 depending on block size).
func (f *FS) gdtStart() uint64 { return uint64(superblockOffset/f.blockSize) + 1 }

// descLocation returns the block and byte offset of group g's primary
// descriptor.
func (f *FS) descLocation(g uint32) (uint64, int) {
	idx := g / f.descPerBlock
	off := int(g%f.descPerBlock) * f.descSize
	if f.sb.hasIncompat(incompatMetaBG) && idx >= f.sb.firstMetaBG {
		first := idx * f.descPerBlock
		blk := f.groupFirstBlock(first)
		if f.hasSuper(first) {
			blk++
		}
		return blk, off
	}
	return f.gdtStart() + uint64(idx), off
}

// gdtBlock returns descriptor block blk for reading: the dirty copy if any,
// else a cached copy whose descriptors were verified once.
func (f *FS) gdtBlock(blk uint64, firstGroup uint32) ([]byte, error) {
	if b, ok := f.dirty[blk]; ok {
		return b, nil
	}
	f.cleanMu.Lock()
	defer f.cleanMu.Unlock()
	if b, ok := f.cleanGDT[blk]; ok {
		return b, nil
	}
	b := make([]byte, f.blockSize)
	if err := f.readBlockInto(b, blk); err != nil {
		return nil, err
	}
	if f.hasGroupCsum() && f.verifyChecksums {
		for i := uint32(0); i < f.descPerBlock; i++ {
			g := firstGroup + i
			if g >= f.groups {
				break
			}
			d := b[int(i)*f.descSize : int(i+1)*f.descSize]
			if get16(d, gdChecksum) != f.descChecksum(g, d) {
				return nil, corruptf("group descriptor %d checksum mismatch", g)
			}
		}
	}
	f.cleanGDT[blk] = b
	return b, nil
}

// desc returns group g's descriptor.
func (f *FS) desc(g uint32) (groupDesc, error) {
	if g >= f.groups {
		return groupDesc{}, corruptf("group %d out of range (%d groups)", g, f.groups)
	}
	blk, off := f.descLocation(g)
	b, err := f.gdtBlock(blk, g-g%f.descPerBlock)
	if err != nil {
		return groupDesc{}, err
	}
	return f.parseDesc(b[off : off+f.descSize]), nil
}

// putDesc stores group g's descriptor (in the dirty cache) with a fresh
// checksum.
func (f *FS) putDesc(g uint32, d groupDesc) error {
	blk, off := f.descLocation(g)
	if _, err := f.gdtBlock(blk, g-g%f.descPerBlock); err != nil {
		return err
	}
	b, err := f.blockRW(blk)
	if err != nil {
		return err
	}
	raw := b[off : off+f.descSize]
	f.encodeDesc(raw, d)
	if f.hasGroupCsum() {
		put16(raw, gdChecksum, f.descChecksum(g, raw))
	}
	return nil
}

// checkDescLayout validates the metadata locations of a descriptor before
// they are used to address the disk.
func (f *FS) checkDescLayout(g uint32, d groupDesc) error {
	if d.blockBitmap < f.firstData || d.blockBitmap >= f.blocks {
		return corruptf("group %d block bitmap at block %d is outside the filesystem", g, d.blockBitmap)
	}
	if d.inodeBitmap < f.firstData || d.inodeBitmap >= f.blocks {
		return corruptf("group %d inode bitmap at block %d is outside the filesystem", g, d.inodeBitmap)
	}
	if d.inodeTable < f.firstData || d.inodeTable >= f.blocks || f.blocks-d.inodeTable < f.itableBlocks {
		return corruptf("group %d inode table at block %d is outside the filesystem", g, d.inodeTable)
	}
	return nil
}

// flexGroupRange returns the groups sharing g's flex group.
func (f *FS) flexGroupRange(g uint32) (uint32, uint32) {
	first := g - g%f.flexSize
	last := first + f.flexSize
	if last > f.groups || last < first {
		last = f.groups
	}
	return first, last
}
