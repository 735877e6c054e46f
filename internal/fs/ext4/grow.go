package ext4

import (
	"errors"
	"fmt"
	"math/bits"
	"sort"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/units"
)

// GrowOptions tune Grow.
type GrowOptions struct {
	// Time, when non-zero, is recorded as the superblock's last write
	// time. Zero keeps the recorded time, so the same input always gives
	// the same bytes.
	Time time.Time
}

// Grow enlarges the filesystem on dev to newSize bytes (0: the whole
// device), offline, like resize2fs does for an unmounted filesystem. The
// caller enlarges the partition (and image file) first; dev is the enlarged
// region. The last group is extended, new groups are added with their
// descriptors, bitmaps, superblock and descriptor backups, reserved GDT
// blocks are consumed when the descriptor table needs more blocks, and the
// resize inode is rebuilt to match. Inode tables of new groups are not
// written: with group checksums they are flagged INODE_UNINIT without
// ITABLE_ZEROED (the kernel zeroes them lazily after mounting, as it does
// for mke2fs -E lazy_itable_init), so the cost follows the metadata
// written, and a sparse image stays sparse. Filesystems without group
// checksums get zeroed tables (zeros are written only where the device
// does not already read as zeros).
//
// Grow writes through dev.WriteAt; with a buffering device (disk.Region)
// nothing reaches the image before Commit, so a failed Grow is undone by
// discarding the buffer. It refuses, with an error naming the reason,
// shrinking, filesystems that are not clean (journal needing recovery,
// orphans, errors), bigalloc, sparse_super2, features the writer cannot
// maintain, meta_bg growth that needs new descriptor blocks, and growth
// past the descriptor blocks plus reserved GDT blocks.
func Grow(dev fs.Device, newSize int64, opts GrowOptions) error {
	devSize := dev.Size()
	if newSize == 0 {
		newSize = devSize
	}
	if newSize < 0 || newSize > devSize {
		return fmt.Errorf("ext4: grow: new size %d is outside the %d-byte device", newSize, devSize)
	}
	old, err := open(dev, fs.Options{ReadOnly: true}, true)
	if err != nil {
		return fmt.Errorf("ext4: grow: %w", err)
	}
	if err := old.growRefusal(); err != nil {
		return err
	}
	p, err := old.planGrow(uint64(newSize)/uint64(old.blockSize), opts)
	if err != nil || p == nil {
		return err
	}
	if err := p.build(); err != nil {
		return err
	}
	if err := p.write(); err != nil {
		return err
	}
	// Re-read what we wrote: a grown filesystem that our own reader
	// rejects must never be handed on.
	nf, err := open(dev, fs.Options{ReadOnly: true}, true)
	if err != nil {
		return fmt.Errorf("ext4: grow: the grown filesystem does not open: %w", err)
	}
	if nf.blocks != p.nf.blocks {
		return fmt.Errorf("ext4: grow: the grown filesystem reports %d blocks, want %d", nf.blocks, p.nf.blocks)
	}
	for g := uint32(0); g < nf.groups; g++ {
		if _, err := nf.desc(g); err != nil {
			return fmt.Errorf("ext4: grow: the grown filesystem: %w", err)
		}
	}
	return nil
}

func growRefused(format string, a ...any) error {
	return fmt.Errorf("ext4: grow: "+format+": %w", append(a, fs.ErrNotSupported)...)
}

// growRefusal says why this filesystem cannot be grown, or returns nil.
func (f *FS) growRefusal() error {
	s := f.sb
	switch {
	case s.hasIncompat(incompatRecover):
		return errors.New("ext4: grow: the journal needs recovery (the filesystem was not cleanly unmounted); run e2fsck on it or mount it once, then retry")
	case s.hasRoCompat(roCompatOrphanPresent) || s.lastOrphan != 0:
		return errors.New("ext4: grow: the filesystem has orphaned inodes pending cleanup; run e2fsck on it first")
	case s.state&stateErrors != 0:
		return errors.New("ext4: grow: the filesystem is marked as having errors; run e2fsck on it first")
	case s.state&stateValid == 0:
		return errors.New("ext4: grow: the filesystem was not cleanly unmounted; run e2fsck on it first")
	case s.hasRoCompat(roCompatBigalloc):
		return growRefused("growing a bigalloc filesystem is not supported")
	case s.hasCompat(compatSparseSuper2):
		return growRefused("growing a sparse_super2 filesystem is not supported (its backup superblock would have to move)")
	case s.revLevel < 1:
		return growRefused("growing a revision 0 (original ext2) filesystem is not supported")
	case f.blocks > uint64(f.devSize)/uint64(f.blockSize):
		return fmt.Errorf("ext4: grow: the filesystem (%d blocks) is larger than its %d-byte device; the image looks truncated", f.blocks, f.devSize)
	}
	if s.hasCompat(compatHasJournal) && s.journalInum != 0 {
		if err := f.checkJournalClean(); err != nil {
			return fmt.Errorf("ext4: grow: %v", err)
		}
	}
	if s.incompat&^incompatWritable != 0 {
		return growRefused("growing a filesystem with %s is not supported", describeFeatures(1, s.incompat&^incompatWritable))
	}
	if s.roCompat&^roCompatWritable != 0 {
		return growRefused("growing a filesystem with %s is not supported", describeFeatures(2, s.roCompat&^roCompatWritable))
	}
	return nil
}

// growPlan is the old filesystem, the geometry it grows to and everything
// to write.
type growPlan struct {
	old, nf   *FS
	oldGroups uint32
	descs     []groupDesc // every group's descriptor after growth
	oldGDT    [][]byte    // the old descriptor blocks as on disk
	layout    *formatLayout
	writes    map[uint64][]byte // whole blocks to write
	zero      []span            // inode tables to zero (no group checksums)
}

// planGrow works out the new geometry. It returns nil when there is
// nothing to do.
func (f *FS) planGrow(newBlocks uint64, opts GrowOptions) (*growPlan, error) {
	if !f.is64 && newBlocks > 1<<32-1 {
		return nil, growRefused("%d blocks do not fit a filesystem without the 64bit feature (at most %d)", newBlocks, uint64(1<<32-1))
	}
	if newBlocks < f.blocks {
		return nil, growRefused("the new size (%d blocks) is smaller than the filesystem (%d blocks); shrinking is not supported", newBlocks, f.blocks)
	}
	newGroups := divCeil(newBlocks-f.firstData, f.bpg)
	if newGroups > uint64(f.groups) {
		// Like resize2fs: a last group too small for its own metadata
		// plus a little data is not worth having.
		if rem := (newBlocks - f.firstData) % f.bpg; rem != 0 {
			overhead := f.baseMetaBlocks(uint32(newGroups-1)) + 2 + f.itableBlocks
			if rem < overhead+50 {
				newBlocks -= rem
				newGroups--
			}
		}
	}
	if newBlocks == f.blocks {
		return nil, nil
	}
	if newGroups*uint64(f.ipg) > 1<<32-1 {
		return nil, growRefused("%d groups of %d inodes exceed the 2^32 inode limit", newGroups, f.ipg)
	}
	rsv := uint64(f.sb.reservedGDT)
	newDescBlocks := divCeil(newGroups, uint64(f.descPerBlock))
	if newDescBlocks > f.descBlocks {
		extra := newDescBlocks - f.descBlocks
		switch {
		case f.sb.hasIncompat(incompatMetaBG):
			return nil, growRefused("growing a meta_bg filesystem to %d groups needs %d more descriptor blocks; only growth within the existing %d blocks (%d groups) is supported",
				newGroups, extra, f.descBlocks, f.descBlocks*uint64(f.descPerBlock))
		case !f.sb.hasCompat(compatResizeInode) || extra > rsv:
			room := (f.descBlocks + rsv) * uint64(f.descPerBlock)
			return nil, growRefused("%d groups need %d group descriptor blocks, but the table has %d plus %d reserved GDT blocks, room for %d groups (%s); growing further would need meta_bg conversion",
				newGroups, newDescBlocks, f.descBlocks, rsv, room, units.Format(int64(room*f.bpg)*int64(f.blockSize)))
		}
		rsv -= extra
	}
	if f.sb.hasCompat(compatResizeInode) && newBlocks > 1<<32-1 {
		return nil, growRefused("the resize inode cannot describe a filesystem of more than 2^32 blocks")
	}

	// The new superblock: everything else is kept byte for byte.
	raw := f.sb.raw
	r := raw[:]
	put32(r, sbBlocksCountLo, uint32(newBlocks))
	if f.is64 {
		put32(r, sbBlocksCountHi, uint32(newBlocks>>32))
	}
	put32(r, sbInodesCount, uint32(newGroups*uint64(f.ipg)))
	oldR := uint64(get32(r, sbRBlocksCountLo))
	if f.is64 {
		oldR |= uint64(get32(r, sbRBlocksCountHi)) << 32
	}
	newR := scale(oldR, newBlocks, f.blocks)
	put32(r, sbRBlocksCountLo, uint32(newR))
	if f.is64 {
		put32(r, sbRBlocksCountHi, uint32(newR>>32))
	}
	put16(r, sbReservedGDT, uint16(rsv))
	// The kernel computes the overhead itself when this is 0 (resize2fs
	// clears it too).
	put32(r, sbOverheadClusters, 0)
	if !opts.Time.IsZero() {
		putTime32(r, sbWtime, sbWtimeHi, opts.Time)
	}
	if f.csum {
		put32(r, sbChecksum, crc32c(^uint32(0), r[:sbChecksum]))
	}
	sb, err := parseSuperblock(r)
	if err != nil {
		return nil, err
	}
	nf := &FS{dev: f.dev, devSize: f.devSize, sb: sb, verifyChecksums: true,
		cleanGDT: map[uint64][]byte{}, dirty: map[uint64][]byte{}, dirs: map[uint32]*dirModel{},
		pendingFree: map[uint32][]byte{}, bitmapDirty: map[uint32]bool{}, bitmapVerified: map[uint64]bool{}}
	if err := nf.initGeometry(); err != nil {
		return nil, fmt.Errorf("ext4: grow: new geometry: %w", err)
	}
	if nf.groups != uint32(newGroups) || nf.descBlocks != newDescBlocks {
		return nil, fmt.Errorf("ext4: grow: internal error: geometry %d groups/%d descriptor blocks, want %d/%d", nf.groups, nf.descBlocks, newGroups, newDescBlocks)
	}
	return &growPlan{old: f, nf: nf, oldGroups: f.groups, layout: &formatLayout{f: nf}, writes: map[uint64][]byte{}}, nil
}

// scale returns v*num/den without overflowing (v <= den).
func scale(v, num, den uint64) uint64 {
	hi, lo := bits.Mul64(v, num)
	if hi >= den {
		return v
	}
	q, _ := bits.Div64(hi, lo, den)
	return q
}

// build computes every block to write.
func (p *growPlan) build() error {
	old, nf := p.old, p.nf
	bs := uint64(nf.blockSize)
	p.descs = make([]groupDesc, nf.groups)
	for g := uint32(0); g < p.oldGroups; g++ {
		d, err := old.desc(g)
		if err != nil {
			return fmt.Errorf("ext4: grow: %w", err)
		}
		p.descs[g] = d
	}
	for k := uint64(0); k < old.descBlocks; k++ {
		first := uint32(k) * old.descPerBlock
		blk, _ := old.descLocation(first)
		b, err := old.gdtBlock(blk, first)
		if err != nil {
			return fmt.Errorf("ext4: grow: %w", err)
		}
		p.oldGDT = append(p.oldGDT, b)
	}
	if err := p.extendLastGroup(); err != nil {
		return err
	}
	if err := p.placeNewGroups(); err != nil {
		return err
	}

	// New groups' descriptors and bitmaps.
	hosts := p.hostingGroups()
	csum := nf.hasGroupCsum()
	last := nf.groups - 1
	for g := p.oldGroups; g < nf.groups; g++ {
		d := &p.descs[g]
		bm := make([]byte, bs)
		p.layout.markGroup(g, bm)
		count := nf.groupBlockCount(g)
		used := countOnes(bm, count)
		setBits(bm, count, bs*8)
		d.freeBlocks = uint32(count - used)
		d.freeInodes = nf.ipg
		if csum {
			d.flags = bgInodeUninit
			d.itableUnused = nf.ipg
			if !hosts[g] && g != last {
				d.flags |= bgBlockUninit
			}
		}
		if d.flags&bgBlockUninit == 0 {
			p.writes[d.blockBitmap] = bm
			if nf.csum {
				d.blockCsum = crc32c(nf.csumSeed, bm[:nf.bpg/8])
			}
		}
		if !csum {
			im := make([]byte, bs)
			setBits(im, uint64(nf.ipg), bs*8)
			p.writes[d.inodeBitmap] = im
			p.zero = append(p.zero, span{d.inodeTable, d.inodeTable + nf.itableBlocks})
		}
	}

	// Descriptor table: the old blocks with the changed descriptors
	// re-encoded, then the new ones.
	gdt := make([][]byte, nf.descBlocks)
	for k := range gdt {
		gdt[k] = make([]byte, bs)
		if k < len(p.oldGDT) {
			copy(gdt[k], p.oldGDT[k])
		}
	}
	for g := p.oldGroups - 1; g < nf.groups; g++ {
		k, off := g/nf.descPerBlock, int(g%nf.descPerBlock)*nf.descSize
		raw := gdt[k][off : off+nf.descSize]
		if g >= p.oldGroups {
			clear(raw)
		}
		nf.encodeDesc(raw, p.descs[g])
		if csum {
			put16(raw, gdChecksum, nf.descChecksum(g, raw))
		}
	}
	for k := range gdt {
		for _, blk := range nf.descCopies(uint64(k)) {
			p.writes[blk] = gdt[k]
		}
	}

	if nf.sb.hasCompat(compatResizeInode) {
		if err := p.rebuildResizeInode(); err != nil {
			return err
		}
	}

	var freeBlocks, freeInodes uint64
	for _, d := range p.descs {
		freeBlocks += uint64(d.freeBlocks)
		freeInodes += uint64(d.freeInodes)
	}
	nf.sb.freeBlocks = freeBlocks
	nf.sb.freeInodes = uint32(freeInodes)
	return nil
}

// extendLastGroup gives the old last group its new block count.
func (p *growPlan) extendLastGroup() error {
	old, nf := p.old, p.nf
	g := p.oldGroups - 1
	oldCount, newCount := old.groupBlockCount(g), nf.groupBlockCount(g)
	if newCount == oldCount {
		return nil
	}
	d := &p.descs[g]
	d.freeBlocks += uint32(newCount - oldCount)
	if old.hasGroupCsum() && d.flags&bgBlockUninit != 0 {
		return nil // computed from the geometry, which now says newCount
	}
	bm, err := old.blockBitmap(g, *d)
	if err != nil {
		return fmt.Errorf("ext4: grow: %w", err)
	}
	bm = append([]byte(nil), bm...)
	for i := oldCount; i < newCount; i++ {
		if !bitSet(bm, i) {
			return corruptf("group %d block bitmap padding bit %d is clear", g, i)
		}
		clearBit(bm, i)
	}
	if nf.csum {
		d.blockCsum = crc32c(nf.csumSeed, bm[:nf.bpg/8])
	}
	p.writes[d.blockBitmap] = bm
	return nil
}

// placeNewGroups puts the bitmaps and inode tables of the new groups in
// the new space: in each group itself without flex_bg, else packed at the
// start of the first new group of each flex group, as mke2fs packs them.
func (p *growPlan) placeNewGroups() error {
	nf, l := p.nf, p.layout
	place := func(cursor, n uint64) (uint64, error) {
		at, err := l.place(cursor, n)
		if err != nil {
			return 0, fmt.Errorf("ext4: grow: no room for the new groups' bitmaps and inode tables: %w", fs.ErrNoSpace)
		}
		return at, nil
	}
	flex := nf.flexSize
	if !nf.sb.hasIncompat(incompatFlexBG) {
		flex = 1
	}
	for first := p.oldGroups; first < nf.groups; {
		end := min(first-first%flex+flex, nf.groups)
		if end <= first { // flex arithmetic overflow near 2^32 groups
			end = nf.groups
		}
		cursor := nf.groupFirstBlock(first)
		var err error
		for g := first; g < end; g++ {
			if p.descs[g].blockBitmap, err = place(cursor, 1); err != nil {
				return err
			}
			cursor = p.descs[g].blockBitmap + 1
		}
		for g := first; g < end; g++ {
			if p.descs[g].inodeBitmap, err = place(cursor, 1); err != nil {
				return err
			}
			cursor = p.descs[g].inodeBitmap + 1
		}
		for g := first; g < end; g++ {
			if p.descs[g].inodeTable, err = place(cursor, nf.itableBlocks); err != nil {
				return err
			}
			cursor = p.descs[g].inodeTable + nf.itableBlocks
		}
		if flex == 1 {
			// e2fsck wants a group's own metadata inside it.
			d := p.descs[first]
			lo, hi := nf.groupFirstBlock(first), nf.groupFirstBlock(first)+nf.groupBlockCount(first)
			if d.blockBitmap < lo || d.inodeTable+nf.itableBlocks > hi {
				return fmt.Errorf("ext4: grow: group %d is too small for its bitmaps and inode table: %w", first, fs.ErrNoSpace)
			}
		}
		first = end
	}
	return nil
}

// hostingGroups marks the new groups holding another group's bitmaps or
// inode table. Their block bitmaps must be written: both the kernel and
// e2fsprogs initialise a BLOCK_UNINIT group's bitmap with its own metadata
// only.
func (p *growPlan) hostingGroups() map[uint32]bool {
	nf := p.nf
	hosts := map[uint32]bool{}
	mark := func(owner uint32, start, n uint64) {
		for g := nf.groupOf(start); g <= nf.groupOf(start+n-1); g++ {
			if g != owner {
				hosts[g] = true
			}
		}
	}
	for g := p.oldGroups; g < nf.groups; g++ {
		d := p.descs[g]
		mark(g, d.blockBitmap, 1)
		mark(g, d.inodeBitmap, 1)
		mark(g, d.inodeTable, nf.itableBlocks)
	}
	return hosts
}

// descCopies lists the blocks holding descriptor block k: the primary and
// every backup.
func (f *FS) descCopies(k uint64) []uint64 {
	var out []uint64
	if !f.sb.hasIncompat(incompatMetaBG) || k < uint64(f.sb.firstMetaBG) {
		out = append(out, f.gdtStart()+k)
		for g := uint32(1); g < f.groups; g++ {
			if f.hasSuper(g) {
				out = append(out, f.groupFirstBlock(g)+1+k)
			}
		}
		return out
	}
	first := k * uint64(f.descPerBlock)
	for _, g := range []uint64{first, first + 1, first + uint64(f.descPerBlock) - 1} {
		if g >= uint64(f.groups) {
			continue
		}
		blk := f.groupFirstBlock(uint32(g))
		if f.hasSuper(uint32(g)) {
			blk++
		}
		out = append(out, blk)
	}
	return out
}

// rebuildResizeInode regenerates inode 7 for the new geometry the way
// e2fsck checks it: its double-indirect block lists every remaining
// primary reserved GDT block (at index (descBlocks+i) mod addresses per
// block), and each of those, used as an indirect block, lists its copies
// in every backup group.
func (p *growPlan) rebuildResizeInode() error {
	old, nf := p.old, p.nf
	bs := uint64(nf.blockSize)
	apb := bs / 4
	in, err := old.readInode(resizeIno)
	if err != nil {
		return fmt.Errorf("ext4: grow: resize inode: %w", err)
	}
	dind := uint64(get32(in.iblock(), dindBlock*4))
	if dind <= old.firstData || dind >= old.blocks {
		return corruptf("resize inode's double-indirect block %d is invalid", dind)
	}
	var backups []uint64
	for g := uint32(1); g < nf.groups; g++ {
		if nf.hasSuper(g) {
			backups = append(backups, uint64(g))
		}
	}
	if uint64(len(backups)) > apb {
		backups = backups[:apb]
	}
	db := make([]byte, bs)
	rsv := uint64(nf.sb.reservedGDT)
	for i := uint64(0); i < rsv; i++ {
		pblk := nf.gdtStart() + nf.descBlocks + i
		put32(db, int(((nf.descBlocks+i)%apb)*4), uint32(pblk))
		ib := make([]byte, bs)
		for j, g := range backups {
			put32(ib, j*4, uint32(pblk+g*nf.bpg))
		}
		p.writes[pblk] = ib
	}
	p.writes[dind] = db
	if err := nf.setBlockCount(in, 1+rsv*(1+uint64(len(backups)))); err != nil {
		return err
	}
	if nf.csum {
		c := nf.inodeChecksum(in.ino, in.raw)
		put16(in.raw, inChecksumLo, uint16(c))
		if nf.inodeSize > goodOldInodeSize && goodOldInodeSize+int(get16(in.raw, inExtraIsize)) >= inChecksumHi+2 {
			put16(in.raw, inChecksumHi, uint16(c>>16))
		}
	}
	blk, off, err := old.inodeLocation(resizeIno)
	if err != nil {
		return err
	}
	b, err := old.block(blk)
	if err != nil {
		return err
	}
	b = append([]byte(nil), b...)
	copy(b[off:off+nf.inodeSize], in.raw)
	p.writes[blk] = b
	return nil
}

// write puts everything on the device: the new space first, then the
// changed blocks of the old filesystem, the backup superblocks and last the
// primary superblock, so that an unbuffered device interrupted midway
// still holds the old filesystem's superblock.
func (p *growPlan) write() error {
	nf := p.nf
	bs := int64(nf.blockSize)
	for _, z := range p.zero {
		if err := zeroRange(nf.dev, int64(z.start)*bs, int64(z.end-z.start)*bs); err != nil {
			return fmt.Errorf("ext4: grow: zero inode table: %w", err)
		}
	}
	blks := make([]uint64, 0, len(p.writes))
	for b := range p.writes {
		blks = append(blks, b)
	}
	oldEnd := p.old.blocks
	sort.Slice(blks, func(i, j int) bool {
		ni, nj := blks[i] >= oldEnd, blks[j] >= oldEnd
		if ni != nj {
			return ni
		}
		return blks[i] < blks[j]
	})
	for _, b := range blks {
		if _, err := nf.dev.WriteAt(p.writes[b], int64(b)*bs); err != nil {
			return fmt.Errorf("ext4: grow: write block %d: %w", b, err)
		}
	}
	primary := nf.sb.encode()
	backup := make([]byte, superblockSize)
	for g := nf.groups - 1; g >= 1; g-- {
		if !nf.hasSuper(g) {
			continue
		}
		copy(backup, primary)
		put16(backup, sbBlockGroupNr, uint16(g))
		if nf.csum {
			put32(backup, sbChecksum, crc32c(^uint32(0), backup[:sbChecksum]))
		}
		if _, err := nf.dev.WriteAt(backup, int64(nf.groupFirstBlock(g))*bs); err != nil {
			return fmt.Errorf("ext4: grow: write backup superblock of group %d: %w", g, err)
		}
	}
	if _, err := nf.dev.WriteAt(primary, superblockOffset); err != nil {
		return fmt.Errorf("ext4: grow: write superblock: %w", err)
	}
	return nil
}
