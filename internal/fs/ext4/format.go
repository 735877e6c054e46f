package ext4

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
)

// FormatParams describe a new filesystem. The same parameters on a device
// of the same size always produce the same bytes.
type FormatParams struct {
	Label string // at most 16 bytes
	UUID  [16]byte
	// HashSeed seeds directory hashing; zero derives it from UUID.
	HashSeed [16]byte
	// Time stamps every inode and the superblock (zero: Unix epoch).
	Time time.Time
	// BlockSize is 1024, 2048 or 4096. Zero picks 4096, or 1024 for
	// devices under 16 MiB.
	BlockSize int
	// InodeRatio is bytes of space per inode (default 16384).
	InodeRatio int
	// InodeSize is 128 or 256 (default 256).
	InodeSize int
	// ReservedPercent of blocks is reserved for root (default 5; negative
	// for none).
	ReservedPercent int
	// Features lists mke2fs feature names. nil means DefaultFeatures.
	// "+name" adds to and "^name" removes from the default set; a list
	// with any plain name replaces the default set.
	Features []string
	// JournalBlocks overrides the journal size (default as mke2fs).
	JournalBlocks int
}

// DefaultFeatures is the feature set of Debian bookworm's and Raspberry Pi
// OS's mke2fs for ext4.
var DefaultFeatures = []string{
	"has_journal", "ext_attr", "resize_inode", "dir_index", "filetype", "extent", "64bit", "flex_bg",
	"sparse_super", "large_file", "huge_file", "dir_nlink", "extra_isize", "metadata_csum",
}

// formattable are the features Format can create.
var formattable = map[string]bool{
	"has_journal": true, "ext_attr": true, "resize_inode": true, "dir_index": true, "filetype": true,
	"extent": true, "extents": true, "64bit": true, "flex_bg": true, "sparse_super": true, "large_file": true,
	"huge_file": true, "dir_nlink": true, "extra_isize": true, "metadata_csum": true, "uninit_bg": true,
	"gdt_csum": true, "orphan_file": true, "metadata_csum_seed": true,
}

const (
	defaultInodeRatio = 16384
	lostFoundMinBytes = 16384
	flexLog           = 4
	orphanFileIno     = 12
	orphanBlockMagic  = 0x0b10ca04
	resizeIno         = 7
	journalIno        = 8
	defaultMountOpts  = 0x000C // user_xattr, acl
)

func resolveFeatures(list []string) (map[string]bool, error) {
	set := map[string]bool{}
	base := DefaultFeatures
	for _, f := range list {
		if !strings.HasPrefix(f, "^") && !strings.HasPrefix(f, "+") {
			base = nil
			break
		}
	}
	for _, f := range base {
		set[f] = true
	}
	for _, f := range list {
		name, remove := strings.CutPrefix(strings.TrimPrefix(f, "+"), "^")
		switch name {
		case "extents":
			name = "extent"
		case "gdt_csum":
			name = "uninit_bg"
		}
		if !formattable[name] {
			return nil, fmt.Errorf("ext4: format: feature %q is not supported", name)
		}
		if remove {
			delete(set, name)
		} else {
			set[name] = true
		}
	}
	switch {
	case set["metadata_csum"] && set["uninit_bg"]:
		delete(set, "uninit_bg")
	case set["64bit"] && !set["extent"]:
		return nil, fmt.Errorf("ext4: format: 64bit requires the extent feature")
	case set["metadata_csum_seed"] && !set["metadata_csum"]:
		return nil, fmt.Errorf("ext4: format: metadata_csum_seed requires metadata_csum")
	case set["orphan_file"] && !set["has_journal"]:
		return nil, fmt.Errorf("ext4: format: orphan_file requires has_journal")
	}
	return set, nil
}

func featureBits(set map[string]bool) (compat, incompat, roCompat uint32) {
	for _, fn := range featureNames {
		if !set[fn.name] {
			continue
		}
		switch fn.kind {
		case 0:
			compat |= fn.bit
		case 1:
			incompat |= fn.bit
		case 2:
			roCompat |= fn.bit
		}
	}
	return
}

// defaultJournalBlocks follows mke2fs's table of journal sizes.
func defaultJournalBlocks(blocks uint64) int {
	switch {
	case blocks < 2048:
		return 0
	case blocks < 32768:
		return 1024
	case blocks < 256*1024:
		return 4096
	case blocks < 512*1024:
		return 8192
	case blocks < 4096*1024:
		return 16384
	case blocks < 8192*1024:
		return 32768
	case blocks < 16384*1024:
		return 65536
	case blocks < 32768*1024:
		return 131072
	}
	return 262144
}

type span struct{ start, end uint64 }

// formatLayout places group metadata and tracks used blocks while the
// skeleton is built.
type formatLayout struct {
	f    *FS
	meta []span // sorted
}

// freeRunAt returns the first block at or after p not taken by group
// metadata, and how many free blocks follow it.
func (l *formatLayout) freeRunAt(p uint64) (uint64, uint64) {
	f := l.f
	for p < f.blocks {
		if p < f.firstData {
			p = f.firstData
		}
		g := f.groupOf(p)
		if base := f.groupFirstBlock(g) + f.baseMetaBlocks(g); p < base {
			p = base
			continue
		}
		i := sort.Search(len(l.meta), func(i int) bool { return l.meta[i].end > p })
		if i < len(l.meta) && l.meta[i].start <= p {
			p = l.meta[i].end
			continue
		}
		limit := f.blocks
		if i < len(l.meta) {
			limit = min(limit, l.meta[i].start)
		}
		for h := g + 1; h < f.groups && f.groupFirstBlock(h) < limit; h++ {
			if f.baseMetaBlocks(h) > 0 {
				limit = f.groupFirstBlock(h)
				break
			}
		}
		return p, limit - p
	}
	return f.blocks, 0
}

// place reserves n contiguous blocks at or after cursor.
func (l *formatLayout) place(cursor, n uint64) (uint64, error) {
	for {
		p, run := l.freeRunAt(cursor)
		if run == 0 {
			return 0, fmt.Errorf("ext4: format: device too small for the group metadata: %w", fs.ErrNoSpace)
		}
		if run >= n {
			i := sort.Search(len(l.meta), func(i int) bool { return l.meta[i].start > p })
			switch {
			case i > 0 && l.meta[i-1].end == p:
				l.meta[i-1].end += n
			default:
				l.meta = slices.Insert(l.meta, i, span{p, p + n})
			}
			return p, nil
		}
		cursor = p + run
	}
}

// markGroup sets the bits of group g's blocks taken by the skeleton.
func (l *formatLayout) markGroup(g uint32, bm []byte) {
	f := l.f
	start, count := f.groupFirstBlock(g), f.groupBlockCount(g)
	setBits(bm, 0, min(f.baseMetaBlocks(g), count))
	i := sort.Search(len(l.meta), func(i int) bool { return l.meta[i].end > start })
	for ; i < len(l.meta) && l.meta[i].start < start+count; i++ {
		lo, hi := max(l.meta[i].start, start), min(l.meta[i].end, start+count)
		setBits(bm, lo-start, hi-start)
	}
}

// Format writes a new, empty filesystem to dev.
func Format(dev fs.Device, p FormatParams) error {
	feats, err := resolveFeatures(p.Features)
	if err != nil {
		return err
	}
	if len(p.Label) > 16 {
		return fmt.Errorf("ext4: format: label %q is longer than 16 bytes", p.Label)
	}
	devSize := dev.Size()
	bs := p.BlockSize
	if bs == 0 {
		bs = 4096
		if devSize < 16<<20 {
			bs = 1024
		}
	}
	if bs != 1024 && bs != 2048 && bs != 4096 {
		return fmt.Errorf("ext4: format: block size %d is not 1024, 2048 or 4096", bs)
	}
	isz := p.InodeSize
	if isz == 0 {
		isz = 256
	}
	if isz != 128 && isz != 256 && isz != 512 && isz != 1024 || isz > bs {
		return fmt.Errorf("ext4: format: inode size %d is invalid", isz)
	}
	if isz == 128 {
		delete(feats, "extra_isize")
	}
	ratio := p.InodeRatio
	if ratio == 0 {
		ratio = defaultInodeRatio
	}
	if ratio < bs && ratio < 1024 || ratio > 64<<20 {
		return fmt.Errorf("ext4: format: inode ratio %d is invalid", ratio)
	}
	blocks := uint64(devSize) / uint64(bs)
	if !feats["64bit"] && blocks > 1<<32-1 {
		blocks = 1<<32 - 1
	}
	if feats["resize_inode"] && blocks >= 1<<32 {
		delete(feats, "resize_inode")
	}
	if blocks < 64 {
		return fmt.Errorf("ext4: format: a %d-byte device is too small: %w", devSize, fs.ErrNoSpace)
	}
	if feats["has_journal"] && p.JournalBlocks == 0 && defaultJournalBlocks(blocks) == 0 {
		delete(feats, "has_journal")
		delete(feats, "orphan_file")
	}
	wantJournal := feats["has_journal"]
	wantOrphan := feats["orphan_file"]
	// The journal and orphan file are created by the writer once the
	// skeleton exists; the skeleton advertises neither yet.
	skelFeats := map[string]bool{}
	for k, v := range feats {
		skelFeats[k] = v
	}
	delete(skelFeats, "has_journal")
	delete(skelFeats, "orphan_file")
	compat, incompat, roCompat := featureBits(skelFeats)

	var f *FS
	var l *formatLayout
	for attempt := 0; ; attempt++ {
		f, l, err = planLayout(dev, p, bs, isz, ratio, blocks, compat, incompat, roCompat)
		if err == nil || attempt > 2 {
			break
		}
		if err != errShrink {
			return err
		}
		// The last group is too small to be worth having: drop it.
		blocks = f.groupFirstBlock(f.groups - 1)
	}
	if err != nil {
		return err
	}
	if err := writeSkeleton(f, l, p); err != nil {
		return err
	}
	return finishFormat(dev, p, wantJournal, wantOrphan)
}

var errShrink = fmt.Errorf("shrink")

// planLayout fills in the superblock geometry and places every group's
// bitmaps and inode table.
func planLayout(dev fs.Device, p FormatParams, bs, isz, ratio int, blocks uint64, compat, incompat, roCompat uint32) (*FS, *formatLayout, error) {
	firstData := uint64(0)
	if bs == 1024 {
		firstData = 1
	}
	bpg := uint64(8 * bs)
	groups := divCeil(blocks-firstData, bpg)
	ipb := uint64(bs / isz)
	unit := ipb
	for unit%8 != 0 {
		unit += ipb
	}
	inodes := blocks * uint64(bs) / uint64(ratio)
	// At least 16 inodes per group so the reserved inodes and lost+found
	// all live in group 0.
	ipg := max(divCeil(inodes, groups), 16)
	ipg = divCeil(ipg, unit) * unit
	if maxIpg := uint64(8*bs) / unit * unit; ipg > maxIpg {
		ipg = maxIpg
	}
	if ipg*groups > 1<<32-1 {
		ipg = (1<<32 - 1) / groups / unit * unit
	}
	descSize := descSize32
	if incompat&incompat64Bit != 0 {
		descSize = descSize64
	}
	descPerBlock := uint64(bs / descSize)
	descBlocks := divCeil(groups, descPerBlock)
	var rsvGDT uint64
	if compat&compatResizeInode != 0 {
		maxBlocks := min(uint64(1<<32-1), blocks*1024)
		rsvGroups := divCeil(maxBlocks-firstData, bpg)
		rsv := divCeil(rsvGroups, descPerBlock)
		if rsv > descBlocks {
			rsvGDT = min(rsv-descBlocks, uint64(bs/4))
		}
	}
	t := p.Time
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	raw := make([]byte, superblockSize)
	put32(raw, sbInodesCount, uint32(ipg*groups))
	put32(raw, sbBlocksCountLo, uint32(blocks))
	put32(raw, sbBlocksCountHi, uint32(blocks>>32))
	pct := p.ReservedPercent
	if pct == 0 {
		pct = 5
	}
	if pct > 0 {
		r := blocks * uint64(min(pct, 50)) / 100
		put32(raw, sbRBlocksCountLo, uint32(r))
		put32(raw, sbRBlocksCountHi, uint32(r>>32))
	}
	put32(raw, sbFirstDataBlock, uint32(firstData))
	logBS := uint32(0)
	for 1024<<logBS < bs {
		logBS++
	}
	put32(raw, sbLogBlockSize, logBS)
	put32(raw, sbLogClusterSize, logBS)
	put32(raw, sbBlocksPerGroup, uint32(bpg))
	put32(raw, sbClustersPerGroup, uint32(bpg))
	put32(raw, sbInodesPerGroup, uint32(ipg))
	putTime32(raw, sbWtime, sbWtimeHi, t)
	put16(raw, sbMaxMntCount, 0xFFFF)
	put16(raw, sbMagic, superMagic)
	put16(raw, sbState, stateValid)
	put16(raw, sbErrors, 1)
	putTime32(raw, sbLastCheck, sbLastCheckHi, t)
	put32(raw, sbRevLevel, 1)
	put32(raw, sbFirstIno, 11)
	put16(raw, sbInodeSize, uint16(isz))
	put32(raw, sbFeatureCompat, compat)
	put32(raw, sbFeatureIncompat, incompat)
	put32(raw, sbFeatureRoCompat, roCompat)
	copy(raw[sbUUID:], p.UUID[:])
	copy(raw[sbVolumeName:sbVolumeName+16], p.Label)
	put16(raw, sbReservedGDT, uint16(rsvGDT))
	seed := p.HashSeed
	if seed == [16]byte{} {
		h := sha256.Sum256(append([]byte("ext4 hash seed "), p.UUID[:]...))
		copy(seed[:], h[:16])
	}
	copy(raw[sbHashSeed:], seed[:])
	raw[sbDefHashVersion] = hashHalfMD4
	if incompat&incompat64Bit != 0 {
		put16(raw, sbDescSize, descSize64)
	}
	put32(raw, sbDefaultMountOpts, defaultMountOpts)
	putTime32(raw, sbMkfsTime, sbMkfsTimeHi, t)
	if roCompat&roCompatExtraIsize != 0 {
		put16(raw, sbMinExtraIsize, 32)
		put16(raw, sbWantExtraIsize, 32)
	}
	put32(raw, sbFlags, flagsSignedHash)
	if incompat&incompatFlexBG != 0 {
		raw[sbLogGroupsPerFlex] = flexLog
	}
	if roCompat&roCompatMetadataCsum != 0 {
		raw[sbChecksumType] = crcTypeCrc32c
		if incompat&incompatCsumSeed != 0 {
			put32(raw, sbChecksumSeed, crc32c(^uint32(0), p.UUID[:]))
		}
	}
	put32(raw, sbChecksum, crc32c(^uint32(0), raw[:sbChecksum]))
	sb, err := parseSuperblock(raw)
	if err != nil {
		return nil, nil, err
	}
	f := &FS{dev: dev, devSize: dev.Size(), sb: sb, verifyChecksums: true,
		cleanGDT: map[uint64][]byte{}, dirty: map[uint64][]byte{}, dirs: map[uint32]*dirModel{},
		pendingFree: map[uint32][]byte{}, bitmapDirty: map[uint32]bool{}, bitmapVerified: map[uint64]bool{}}
	if err := f.initGeometry(); err != nil {
		return nil, nil, err
	}
	// The last group must hold its own metadata plus some data.
	last := f.groups - 1
	need := f.baseMetaBlocks(last) + 50
	if f.flexSize == 1 {
		need += 2 + f.itableBlocks
	}
	if f.groups > 1 && f.groupBlockCount(last) < need {
		return f, nil, errShrink
	}
	l := &formatLayout{f: f}
	bb := make([]uint64, f.groups)
	ib := make([]uint64, f.groups)
	it := make([]uint64, f.groups)
	var cursor uint64
	for first := uint32(0); first < f.groups; first += f.flexSize {
		n := min(f.flexSize, f.groups-first)
		cursor = max(cursor, f.groupFirstBlock(first))
		for i := uint32(0); i < n; i++ {
			if bb[first+i], err = l.place(cursor, 1); err != nil {
				return nil, nil, err
			}
			cursor = bb[first+i] + 1
		}
		for i := uint32(0); i < n; i++ {
			if ib[first+i], err = l.place(cursor, 1); err != nil {
				return nil, nil, err
			}
			cursor = ib[first+i] + 1
		}
		for i := uint32(0); i < n; i++ {
			if it[first+i], err = l.place(cursor, f.itableBlocks); err != nil {
				return nil, nil, err
			}
			cursor = it[first+i] + f.itableBlocks
		}
	}
	f.formatLocs = &formatLocs{bb: bb, ib: ib, it: it}
	return f, l, nil
}

type formatLocs struct{ bb, ib, it []uint64 }

func putTime32(raw []byte, lo, hi int, t time.Time) {
	s := t.Unix()
	if s < 0 {
		s = 0
	}
	put32(raw, lo, uint32(s))
	raw[hi] = uint8(s >> 32)
}

// writeSkeleton writes the superblock, descriptors, bitmaps, zeroed inode
// tables and the root directory.
func writeSkeleton(f *FS, l *formatLayout, p FormatParams) error {
	locs := f.formatLocs
	bs := uint64(f.blockSize)
	// Root directory: inode 2 with one block.
	rootBlk, err := l.place(0, 1)
	if err != nil {
		return err
	}
	// Zero what must read as zero: boot area, inode tables, reserved GDT.
	if err := zeroRange(f.dev, 0, superblockOffset); err != nil {
		return err
	}
	csumGroups := f.hasGroupCsum()
	for g := uint32(0); g < f.groups; g++ {
		// With group checksums, unused groups are flagged INODE_UNINIT and
		// their tables are never read (the kernel zeroes them lazily), as
		// mke2fs does; only group 0 holds inodes.
		if !csumGroups || g == 0 {
			if err := zeroRange(f.dev, int64(locs.it[g]*bs), int64(f.itableBlocks*bs)); err != nil {
				return err
			}
		}
		if f.hasSuper(g) && f.sb.reservedGDT > 0 {
			start := f.groupFirstBlock(g) + 1 + f.descBlocks
			if err := zeroRange(f.dev, int64(start*bs), int64(uint64(f.sb.reservedGDT)*bs)); err != nil {
				return err
			}
		}
	}
	var freeBlocks uint64
	var freeInodes uint64
	descs := make([]groupDesc, f.groups)
	for g := uint32(0); g < f.groups; g++ {
		bm := f.blockNew(locs.bb[g])
		count := f.groupBlockCount(g)
		l.markGroup(g, bm)
		usedCount := countOnes(bm, count)
		setBits(bm, count, bs*8)
		im := f.blockNew(locs.ib[g])
		usedInodes := uint64(0)
		if g == 0 {
			usedInodes = uint64(f.sb.firstIno - 1)
			setBits(im, 0, usedInodes)
		}
		setBits(im, uint64(f.ipg), bs*8)
		d := groupDesc{blockBitmap: locs.bb[g], inodeBitmap: locs.ib[g], inodeTable: locs.it[g],
			freeBlocks: uint32(count - usedCount), freeInodes: f.ipg - uint32(usedInodes)}
		if g == 0 {
			d.usedDirs = 1
		}
		if csumGroups {
			d.itableUnused = f.ipg - uint32(usedInodes)
			if g == 0 {
				d.flags = bgItableZeroed
			} else {
				d.flags = bgInodeUninit
			}
		}
		if f.csum {
			d.blockCsum = crc32c(f.csumSeed, bm[:f.bpg/8])
			d.inodeCsum = crc32c(f.csumSeed, im[:f.ipg/8])
		}
		descs[g] = d
		freeBlocks += count - usedCount
		freeInodes += uint64(f.ipg) - usedInodes
	}
	for i := uint64(0); i < f.descBlocks; i++ {
		b := f.blockNew(f.gdtStart() + i)
		for j := uint64(0); j < uint64(f.descPerBlock); j++ {
			g := i*uint64(f.descPerBlock) + j
			if g >= uint64(f.groups) {
				break
			}
			raw := b[j*uint64(f.descSize) : (j+1)*uint64(f.descSize)]
			f.encodeDesc(raw, descs[g])
			if csumGroups {
				put16(raw, gdChecksum, f.descChecksum(uint32(g), raw))
			}
		}
	}
	f.sb.freeBlocks = freeBlocks
	f.sb.freeInodes = uint32(freeInodes)
	// Root directory inode and block.
	root := f.newInodeRaw(rootIno)
	put16(root.raw, inMode, sIFDIR|0o755)
	root.setTimes(formatTime(p), true)
	root.setLinks(2)
	root.setSize(bs)
	d := &dirModel{ino: rootIno, parent: rootIno, blocks: []uint64{rootBlk}, leaves: []*dirLeaf{{used: 2 * dotEntrySize}}}
	if _, err := f.buildMap(root, []run{{logical: 0, phys: rootBlk, length: 1}}, rootBlk+1); err != nil {
		return err
	}
	if err := f.setBlockCount(root, 1); err != nil {
		return err
	}
	if err := f.flushDir(d); err != nil {
		return err
	}
	if err := f.writeInode(root); err != nil {
		return err
	}
	f.closed.Store(true)
	return f.flush()
}

func formatTime(p FormatParams) time.Time {
	if p.Time.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return p.Time
}

// zeroRange makes [off, off+n) read as zeros, writing only where it does
// not already (so sparse image files stay sparse).
func zeroRange(dev fs.Device, off, n int64) error {
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	var zero []byte
	for n > 0 {
		c := min(n, chunk)
		p := buf[:c]
		if n, err := dev.ReadAt(p, off); err != nil && !(errors.Is(err, io.EOF) && n == len(p)) {
			return fmt.Errorf("ext4: format: read at %d: %w", off, err)
		}
		if !isZero(p) {
			if zero == nil {
				zero = make([]byte, chunk)
			}
			if _, err := dev.WriteAt(zero[:c], off); err != nil {
				return fmt.Errorf("ext4: format: write at %d: %w", off, err)
			}
		}
		off += c
		n -= c
	}
	return nil
}

// finishFormat opens the skeleton with the writer and adds the resize
// inode, journal, lost+found and orphan file, then copies the superblock
// and descriptors to the backup groups.
func finishFormat(dev fs.Device, p FormatParams, journal, orphan bool) error {
	t := formatTime(p)
	f, err := open(dev, fs.Options{DefaultTime: t}, true)
	if err != nil {
		return fmt.Errorf("ext4: format: reopen: %w", err)
	}
	if f.writeErr != nil {
		return fmt.Errorf("ext4: format: %w", f.writeErr)
	}
	if f.sb.hasCompat(compatResizeInode) {
		if err := f.createResizeInode(t); err != nil {
			return err
		}
	}
	if journal {
		if err := f.createJournal(p, t); err != nil {
			return err
		}
	}
	root, err := f.readInode(rootIno)
	if err != nil {
		return err
	}
	lpf, err := f.mkdir(root, "lost+found", fs.Attr{Mode: 0o700, ModTime: t})
	if err != nil {
		return fmt.Errorf("ext4: format: lost+found: %w", err)
	}
	d := f.dirs[lpf]
	want := max(2, lostFoundMinBytes/f.blockSize)
	want = min(want, directBlocks)
	for len(d.leaves) < want {
		d.leaves = append(d.leaves, &dirLeaf{logical: uint64(len(d.leaves))})
	}
	lin, err := f.readInode(lpf)
	if err != nil {
		return err
	}
	if err := f.setDirBlocks(d, lin, want); err != nil {
		return fmt.Errorf("ext4: format: lost+found: %w", err)
	}
	if orphan {
		if err := f.createOrphanFile(t); err != nil {
			return err
		}
	}
	f.sbChanged = true
	if err := f.Close(); err != nil {
		return err
	}
	return copyBackups(dev, f)
}

// createResizeInode builds inode 7, which reserves the GDT blocks set
// aside for online growth: a double-indirect block whose entries are the
// primary reserved GDT blocks, each of which lists its backup copies.
func (f *FS) createResizeInode(t time.Time) error {
	bs := uint64(f.blockSize)
	apb := bs / 4
	runs, err := f.allocBlocks(f.firstData, 1)
	if err != nil {
		return err
	}
	dind := runs[0].phys
	db := f.blockNew(dind)
	var backups []uint32
	for g := uint32(1); g < f.groups; g++ {
		if f.hasSuper(g) {
			backups = append(backups, g)
		}
	}
	rsv := uint64(f.sb.reservedGDT)
	for i := uint64(0); i < rsv; i++ {
		pblk := f.gdtStart() + f.descBlocks + i
		put32(db, int(((f.descBlocks+i)%apb)*4), uint32(pblk))
		ib := f.blockNew(pblk)
		for j, g := range backups {
			if uint64(j) >= apb {
				break
			}
			put32(ib, j*4, uint32(pblk+uint64(g)*f.bpg))
		}
	}
	in := f.newInodeRaw(resizeIno)
	put16(in.raw, inMode, sIFREG|0o600)
	in.setLinks(1)
	in.setTimes(t, true)
	in.setSize((apb*apb + apb + directBlocks) * bs)
	put32(in.iblock(), dindBlock*4, uint32(dind))
	if err := f.setBlockCount(in, 1+rsv*uint64(1+len(backups))); err != nil {
		return err
	}
	return f.writeInode(in)
}

// createJournal builds inode 8 as an empty JBD2 journal and records it in
// the superblock.
func (f *FS) createJournal(p FormatParams, t time.Time) error {
	n := p.JournalBlocks
	if n == 0 {
		n = defaultJournalBlocks(f.blocks)
	}
	if n < 1024 || uint64(n) > f.blocks/2 {
		return fmt.Errorf("ext4: format: journal of %d blocks does not fit a %d-block filesystem: %w", n, f.blocks, fs.ErrNoSpace)
	}
	goal := f.groupFirstBlock(f.groups / 2)
	if f.flexSize > 1 {
		goal = f.groupFirstBlock((f.groups / 2) &^ (f.flexSize - 1))
	}
	runs, err := f.allocBlocks(goal, uint64(n))
	if err != nil {
		return err
	}
	var logical uint64
	for i := range runs {
		runs[i].logical = logical
		logical += runs[i].length
	}
	in := f.newInodeRaw(journalIno)
	put16(in.raw, inMode, sIFREG|0o600)
	in.setLinks(1)
	in.setTimes(t, true)
	if err := f.setContent(in, runs, uint64(n)*uint64(f.blockSize)); err != nil {
		return err
	}
	if err := f.writeInode(in); err != nil {
		return err
	}
	bs := int64(f.blockSize)
	for _, r := range runs {
		if err := zeroRange(f.dev, int64(r.phys)*bs, int64(r.length)*bs); err != nil {
			return err
		}
	}
	jsb := newJournalSuperblock(f.blockSize, uint32(n), f.sb.uuid)
	if _, err := f.dev.WriteAt(jsb, int64(runs[0].phys)*bs); err != nil {
		return fmt.Errorf("ext4: format: write journal superblock: %w", err)
	}
	f.sb.compat |= compatHasJournal
	raw := f.sb.raw[:]
	put32(raw, sbJournalInum, journalIno)
	raw[sbJnlBackupType] = 1 // EXT3_JNL_BACKUP_BLOCKS
	for i := 0; i < 15; i++ {
		put32(raw, sbJnlBlocks+4*i, get32(in.iblock(), 4*i))
	}
	put32(raw, sbJnlBlocks+15*4, get32(in.raw, inSizeHi))
	put32(raw, sbJnlBlocks+16*4, get32(in.raw, inSizeLo))
	f.sb.journalInum = journalIno
	return nil
}

// createOrphanFile builds the orphan file (inode 12): empty blocks, each
// ending in a magic number and checksum.
func (f *FS) createOrphanFile(t time.Time) error {
	n := uint64(32)
	switch {
	case f.blocks >= 2<<20:
		n = 512
	case f.blocks >= 128<<10:
		n = f.blocks / 4096
	}
	root, err := f.readInode(rootIno)
	if err != nil {
		return err
	}
	in, err := f.createInode(root, sIFREG|0o600, fs.Attr{ModTime: t})
	if err != nil {
		return err
	}
	if in.ino != orphanFileIno {
		return fmt.Errorf("ext4: format: orphan file got inode %d, want %d", in.ino, orphanFileIno)
	}
	runs, err := f.allocBlocks(f.inodeGoal(in.ino), n)
	if err != nil {
		return err
	}
	var logical uint64
	seed := f.inodeSeed(in.ino, in.generation())
	for i := range runs {
		runs[i].logical = logical
		for j := uint64(0); j < runs[i].length; j++ {
			b := f.blockNew(runs[i].phys + j)
			tail := f.blockSize - 8
			put32(b, tail, orphanBlockMagic)
			var lb [8]byte
			put64(lb[:], 0, runs[i].phys+j) // the checksum covers the physical block number
			c := crc32c(seed, lb[:])
			put32(b, tail+4, crc32c(c, b[:tail]))
		}
		logical += runs[i].length
	}
	if err := f.setContent(in, runs, n*uint64(f.blockSize)); err != nil {
		return err
	}
	in.setLinks(1)
	if err := f.writeInode(in); err != nil {
		return err
	}
	f.sb.compat |= compatOrphanFile
	put32(f.sb.raw[:], sbOrphanFileInum, orphanFileIno)
	f.sb.orphanFileInum = orphanFileIno
	return nil
}

// copyBackups writes the final superblock and descriptor table to every
// backup group.
func copyBackups(dev fs.Device, f *FS) error {
	bs := int64(f.blockSize)
	sb := make([]byte, superblockSize)
	if _, err := dev.ReadAt(sb, superblockOffset); err != nil {
		return fmt.Errorf("ext4: format: read superblock: %w", err)
	}
	gdt := make([]byte, int64(f.descBlocks)*bs)
	if _, err := dev.ReadAt(gdt, int64(f.gdtStart())*bs); err != nil {
		return fmt.Errorf("ext4: format: read descriptors: %w", err)
	}
	for g := uint32(1); g < f.groups; g++ {
		if !f.hasSuper(g) {
			continue
		}
		start := int64(f.groupFirstBlock(g)) * bs
		put16(sb, sbBlockGroupNr, uint16(g))
		if f.csum {
			put32(sb, sbChecksum, crc32c(^uint32(0), sb[:sbChecksum]))
		}
		if _, err := dev.WriteAt(sb, start); err != nil {
			return fmt.Errorf("ext4: format: write backup superblock: %w", err)
		}
		if _, err := dev.WriteAt(gdt, start+bs); err != nil {
			return fmt.Errorf("ext4: format: write backup descriptors: %w", err)
		}
	}
	return nil
}
