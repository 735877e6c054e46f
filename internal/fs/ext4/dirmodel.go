package ext4

import (
	"fmt"
	"slices"
	"sort"

	"github.com/bakeryhq/bakery/internal/fs"
)

// A directory that is changed during a session is held as a dirModel: its
// entries grouped per leaf block, exactly as they will be laid out, plus
// (for hash-indexed directories) each leaf's starting hash. Entry changes
// only touch the model; block accounting (allocating a block for a split
// leaf or a new index node, updating the inode's size and mapping) happens at
// once, so Close never needs to allocate. Close serialises each model into
// its blocks: packed entries, checksum tails, and for indexed directories a
// freshly generated dx root and index nodes.
//
// An indexed directory is rebuilt (entries hash-sorted and packed) when it
// is first changed in a session, the way e2fsck -D does; afterwards inserts
// go to the leaf covering the name's hash and a full leaf is split in two.

type dirLeaf struct {
	logical uint64 // logical block within the directory
	hash    uint32 // indexed: hash in the parent index entry (bit 0: continues previous leaf)
	entries []dirEntry
	used    int // bytes the entries occupy (plus "." and ".." in linear block 0)
	txn     uint64
}

type dirModel struct {
	ino, gen uint32
	parent   uint32 // target of ".."
	indexed  bool
	hashVer  uint8    // as stored in the dx root (0 legacy, 1 half_md4, 2 tea)
	blocks   []uint64 // physical block of each logical block
	leaves   []*dirLeaf
	nodes    []uint64 // indexed: logical blocks used for index nodes
	levels   int      // indexed: indirect levels below the root
	txn      uint64
}

func (f *FS) txnID() uint64 {
	if f.txn == nil {
		return 0
	}
	return f.txn.id
}

// leafCap is the room for entries in one directory block.
func (f *FS) leafCap() int {
	if f.csum {
		return f.blockSize - dirTailSize
	}
	return f.blockSize
}

func (f *FS) dxLimits() (root, node int) {
	tail := 0
	if f.csum {
		tail = dxTailSize
	}
	return (f.blockSize - dxRootEntries - tail) / dxEntrySize, (f.blockSize - dxNodeEntries - tail) / dxEntrySize
}

// dxShape returns the indirect levels and index node count needed for
// leaves leaf blocks.
func (f *FS) dxShape(leaves int) (levels, nodes int, err error) {
	rootLimit, nodeLimit := f.dxLimits()
	if leaves <= rootLimit {
		return 0, 0, nil
	}
	n2 := (leaves + nodeLimit - 1) / nodeLimit
	if n2 <= rootLimit {
		return 1, n2, nil
	}
	if f.sb.hasIncompat(incompatLargeDir) {
		n1 := (n2 + nodeLimit - 1) / nodeLimit
		if n1 <= rootLimit {
			return 2, n1 + n2, nil
		}
	}
	return 0, 0, fmt.Errorf("ext4: directory index is full (%d leaf blocks): %w", leaves, fs.ErrNoSpace)
}

func (f *FS) effectiveHashVersion(stored uint8) uint8 {
	if stored <= hashTea && f.unsignedHash {
		return stored + 3
	}
	return stored
}

func (f *FS) nameHash(d *dirModel, name string) (uint32, uint32) {
	h, m, _ := dxHash([]byte(name), f.effectiveHashVersion(d.hashVer), f.sb.hashSeed)
	return h, m
}

// touchDir records d's state for rollback before its first change in the
// current transaction.
func (f *FS) touchDir(d *dirModel) {
	id := f.txnID()
	if id == 0 || d.txn == id {
		return
	}
	saved := *d
	saved.leaves = slices.Clone(d.leaves)
	saved.blocks = slices.Clone(d.blocks)
	saved.nodes = slices.Clone(d.nodes)
	d.txn = id
	f.onUndo(func() { *d = saved })
}

// leafRW returns leaf li for modification, copying it first if it is shared
// with a rollback snapshot.
func (f *FS) leafRW(d *dirModel, li int) *dirLeaf {
	l := d.leaves[li]
	id := f.txnID()
	if l.txn == id {
		return l
	}
	c := &dirLeaf{logical: l.logical, hash: l.hash, entries: slices.Clone(l.entries), used: l.used, txn: id}
	d.leaves[li] = c
	return c
}

// leafFor returns the index of the leaf an entry with hash h belongs in.
func (d *dirModel) leafFor(h uint32) int {
	i := sort.Search(len(d.leaves), func(i int) bool { return d.leaves[i].hash > h })
	return max(i-1, 0)
}

// find locates name; it returns leaf and entry indexes or -1, -1.
func (d *dirModel) find(f *FS, name string) (int, int) {
	scan := func(li int) int {
		for ei, e := range d.leaves[li].entries {
			if e.name == name {
				return ei
			}
		}
		return -1
	}
	if !d.indexed {
		for li := range d.leaves {
			if ei := scan(li); ei >= 0 {
				return li, ei
			}
		}
		return -1, -1
	}
	h, _ := f.nameHash(d, name)
	for li := d.leafFor(h); li < len(d.leaves); li++ {
		if ei := scan(li); ei >= 0 {
			return li, ei
		}
		if li+1 < len(d.leaves) && d.leaves[li+1].hash != h|1 {
			break
		}
	}
	return -1, -1
}

// loadDir returns the model of directory in, building it on first use.
func (f *FS) loadDir(in *inode) (*dirModel, error) {
	if d := f.dirs[in.ino]; d != nil {
		return d, nil
	}
	if err := f.writableDir(in); err != nil {
		return nil, err
	}
	if in.flags()&flagInlineData != 0 {
		return f.convertInlineDir(in)
	}
	n, err := f.dirBlockCount(in)
	if err != nil {
		return nil, err
	}
	if n == 0 || in.size()%uint64(f.blockSize) != 0 {
		return nil, corruptf("directory inode %d has size %d, not a whole number of blocks", in.ino, in.size())
	}
	m, err := f.readMap(in)
	if err != nil {
		return nil, err
	}
	if m.dataBlocks() != n {
		return nil, unsupportedf("directory inode %d maps %d blocks for a size of %d blocks; run e2fsck -fD", in.ino, m.dataBlocks(), n)
	}
	d := &dirModel{ino: in.ino, gen: in.generation(), blocks: make([]uint64, n)}
	for _, r := range m.runs {
		if r.uninit {
			return nil, corruptf("directory inode %d has an unwritten extent", in.ino)
		}
		for i := uint64(0); i < r.length; i++ {
			if lb := r.logical + i; lb < n {
				d.blocks[lb] = r.phys + i
			} else {
				return nil, corruptf("directory inode %d maps block %d beyond its size", in.ino, lb)
			}
		}
	}
	for lb, p := range d.blocks {
		if p == 0 {
			return nil, unsupportedf("directory inode %d has a hole at block %d; run e2fsck -fD", in.ino, lb)
		}
	}
	indexed := in.flags()&flagIndex != 0 && f.sb.hasCompat(compatDirIndex)
	var all []dirEntry
	for lb, p := range d.blocks {
		b, err := f.block(p)
		if err != nil {
			return nil, err
		}
		leaf := &dirLeaf{logical: uint64(lb)}
		i := 0
		err = f.parseDirBlock(in, uint64(lb), b, func(e dirEntry) error {
			defer func() { i++ }()
			if lb == 0 && i == 0 {
				if e.name != "." || e.ino != in.ino {
					return corruptf("directory inode %d does not start with \".\"", in.ino)
				}
				return nil
			}
			if lb == 0 && i == 1 {
				if e.name != ".." {
					return corruptf("directory inode %d has no \"..\" entry", in.ino)
				}
				d.parent = e.ino
				return nil
			}
			if e.name == "." || e.name == ".." {
				return corruptf("directory inode %d has a stray %q entry", in.ino, e.name)
			}
			leaf.entries = append(leaf.entries, e)
			leaf.used += direntSize(len(e.name))
			return nil
		})
		if err != nil {
			return nil, err
		}
		if lb == 0 {
			if i < 2 {
				return nil, corruptf("directory inode %d lacks \".\" and \"..\"", in.ino)
			}
			leaf.used += 2 * dotEntrySize
		}
		if indexed {
			all = append(all, leaf.entries...)
			continue
		}
		if leaf.used > f.leafCap() {
			return nil, unsupportedf("directory inode %d block %d has no room for a checksum tail; run e2fsck -fD", in.ino, lb)
		}
		d.leaves = append(d.leaves, leaf)
	}
	f.dirs[in.ino] = d
	f.onUndo(func() { delete(f.dirs, in.ino) })
	if indexed {
		b, err := f.block(d.blocks[0])
		if err != nil {
			return nil, err
		}
		d.hashVer = b[dxRootInfoOff+4]
		if d.hashVer > hashTea {
			return nil, unsupportedf("directory inode %d uses hash version %d", in.ino, d.hashVer)
		}
		d.indexed = true
		if err := f.rebuildIndexed(d, in, all); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// rebuildIndexed lays out entries as a fresh hash-sorted htree in d.
func (f *FS) rebuildIndexed(d *dirModel, in *inode, entries []dirEntry) error {
	f.touchDir(d)
	for i := range entries {
		entries[i].hash, entries[i].minor = f.nameHash(d, entries[i].name)
	}
	sortByHash(entries)
	cap := f.leafCap()
	leaves := []*dirLeaf{{txn: f.txnID()}}
	for _, e := range entries {
		cur := leaves[len(leaves)-1]
		sz := direntSize(len(e.name))
		if cur.used+sz > cap {
			h := e.hash
			if prev := cur.entries[len(cur.entries)-1]; prev.hash == e.hash {
				h |= 1
			}
			cur = &dirLeaf{hash: h, txn: f.txnID()}
			leaves = append(leaves, cur)
		}
		cur.entries = append(cur.entries, e)
		cur.used += sz
	}
	levels, nodes, err := f.dxShape(len(leaves))
	if err != nil {
		return err
	}
	for i, l := range leaves {
		l.logical = uint64(1 + i)
	}
	d.leaves = leaves
	d.levels = levels
	d.nodes = d.nodes[:0]
	for i := 0; i < nodes; i++ {
		d.nodes = append(d.nodes, uint64(1+len(leaves)+i))
	}
	d.indexed = true
	return f.setDirBlocks(d, in, 1+len(leaves)+nodes)
}

func sortByHash(es []dirEntry) {
	sort.Slice(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if a.hash != b.hash {
			return a.hash < b.hash
		}
		if a.minor != b.minor {
			return a.minor < b.minor
		}
		return a.name < b.name
	})
}

// setDirBlocks makes d span exactly n blocks, allocating new blocks after
// its last one or releasing surplus ones, and rewrites the inode's size,
// mapping and block count.
func (f *FS) setDirBlocks(d *dirModel, in *inode, n int) error {
	f.touchDir(d)
	if n > maxDirBlocks {
		return fmt.Errorf("ext4: directory inode %d would exceed %d blocks: %w", d.ino, maxDirBlocks, fs.ErrNoSpace)
	}
	changed := n != len(d.blocks)
	if n > len(d.blocks) {
		goal := d.blocks[len(d.blocks)-1] + 1
		runs, err := f.allocBlocks(goal, uint64(n-len(d.blocks)))
		if err != nil {
			return err
		}
		for _, r := range runs {
			for i := uint64(0); i < r.length; i++ {
				d.blocks = append(d.blocks, r.phys+i)
			}
		}
	} else if n < len(d.blocks) {
		for _, p := range d.blocks[n:] {
			if err := f.freeLater(p, 1); err != nil {
				return err
			}
		}
		d.blocks = d.blocks[:n]
	}
	if !changed {
		flags := in.flags() &^ flagIndex
		if d.indexed {
			flags |= flagIndex
		}
		if flags == in.flags() {
			return nil
		}
		in.setFlags(flags)
		return f.writeInode(in)
	}
	old, err := f.readMap(in)
	if err != nil {
		return err
	}
	var runs []run
	for lb, p := range d.blocks {
		if k := len(runs); k > 0 && runs[k-1].phys+runs[k-1].length == p {
			runs[k-1].length++
			continue
		}
		runs = append(runs, run{logical: uint64(lb), phys: p, length: 1})
	}
	// The old mapping blocks are rewritten for the new mapping where
	// possible; only leftovers are freed.
	f.metaReuse = old.meta
	meta, err := f.buildMap(in, runs, d.blocks[len(d.blocks)-1]+1)
	leftover := f.metaReuse
	f.metaReuse = nil
	if err != nil {
		return err
	}
	for _, b := range leftover {
		if err := f.freeLater(b, 1); err != nil {
			return err
		}
	}
	total := uint64(n) + meta
	if f.fileACL(in) != 0 {
		total++
	}
	if err := f.setBlockCount(in, total); err != nil {
		return err
	}
	in.setSize(uint64(n) * uint64(f.blockSize))
	if d.indexed {
		in.setFlags(in.flags() | flagIndex)
	} else {
		in.setFlags(in.flags() &^ flagIndex)
	}
	return f.writeInode(in)
}

// dirAdd inserts an entry; the name must not exist yet.
func (f *FS) dirAdd(d *dirModel, e dirEntry) error {
	if !f.sb.hasIncompat(incompatFiletype) {
		e.ftype = 0
	}
	f.touchDir(d)
	sz := direntSize(len(e.name))
	cap := f.leafCap()
	if !d.indexed {
		for li, l := range d.leaves {
			if l.used+sz <= cap {
				l = f.leafRW(d, li)
				l.entries = append(l.entries, e)
				l.used += sz
				return nil
			}
		}
		in, err := f.readInode(d.ino)
		if err != nil {
			return err
		}
		if len(d.leaves) == 1 && f.sb.hasCompat(compatDirIndex) {
			// Like the kernel, index a directory once it outgrows one block.
			all := append(slices.Clone(d.leaves[0].entries), e)
			d.hashVer = f.sb.defHashVersion
			if d.hashVer > hashTea {
				d.hashVer = hashHalfMD4
			}
			return f.rebuildIndexed(d, in, all)
		}
		leaf := &dirLeaf{logical: uint64(len(d.blocks)), entries: []dirEntry{e}, used: sz, txn: f.txnID()}
		d.leaves = append(d.leaves, leaf)
		return f.setDirBlocks(d, in, len(d.blocks)+1)
	}
	e.hash, e.minor = f.nameHash(d, e.name)
	li := d.leafFor(e.hash)
	if d.leaves[li].used+sz <= cap {
		l := f.leafRW(d, li)
		l.entries = append(l.entries, e)
		l.used += sz
		return nil
	}
	return f.splitLeaf(d, li, e)
}

// splitLeaf splits full leaf li into two, adding e, and grows the index.
func (f *FS) splitLeaf(d *dirModel, li int, e dirEntry) error {
	in, err := f.readInode(d.ino)
	if err != nil {
		return err
	}
	old := d.leaves[li]
	all := append(slices.Clone(old.entries), e)
	sortByHash(all)
	total := 0
	for _, x := range all {
		total += direntSize(len(x.name))
	}
	cap := f.leafCap()
	best, bestDist, bestSplit := -1, 0, false
	left := 0
	for k := 1; k < len(all); k++ {
		left += direntSize(len(all[k-1].name))
		if left > cap || total-left > cap {
			continue
		}
		dist := left - total/2
		if dist < 0 {
			dist = -dist
		}
		clean := all[k-1].hash != all[k].hash
		if best < 0 || clean && !bestSplit || clean == bestSplit && dist < bestDist {
			best, bestDist, bestSplit = k, dist, clean
		}
	}
	if best < 0 {
		return corruptf("directory inode %d: cannot split leaf", d.ino)
	}
	levels, nodes, err := f.dxShape(len(d.leaves) + 1)
	if err != nil {
		return err
	}
	lhs := &dirLeaf{logical: old.logical, hash: old.hash, entries: all[:best:best], txn: f.txnID()}
	rhs := &dirLeaf{logical: uint64(len(d.blocks)), hash: all[best].hash, entries: slices.Clone(all[best:]), txn: f.txnID()}
	if !bestSplit {
		rhs.hash |= 1
	}
	for _, x := range lhs.entries {
		lhs.used += direntSize(len(x.name))
	}
	rhs.used = total - lhs.used
	d.leaves[li] = lhs
	d.leaves = slices.Insert(d.leaves, li+1, rhs)
	want := len(d.blocks) + 1
	for len(d.nodes) < nodes {
		d.nodes = append(d.nodes, uint64(want))
		want++
	}
	d.levels = levels
	return f.setDirBlocks(d, in, want)
}

// dirRemove deletes name from d.
func (f *FS) dirRemove(d *dirModel, name string) error {
	li, ei := d.find(f, name)
	if li < 0 {
		return fs.ErrNotExist
	}
	f.touchDir(d)
	l := f.leafRW(d, li)
	l.used -= direntSize(len(l.entries[ei].name))
	l.entries = slices.Delete(l.entries, ei, ei+1)
	return nil
}

// dirRetarget points an existing entry at another inode.
func (f *FS) dirRetarget(d *dirModel, name string, ino uint32, ftype uint8) error {
	li, ei := d.find(f, name)
	if li < 0 {
		return fs.ErrNotExist
	}
	if !f.sb.hasIncompat(incompatFiletype) {
		ftype = 0
	}
	f.touchDir(d)
	l := f.leafRW(d, li)
	l.entries[ei].ino = ino
	l.entries[ei].ftype = ftype
	return nil
}

func (f *FS) dirSetParent(d *dirModel, parent uint32) {
	f.touchDir(d)
	d.parent = parent
}

// newDirModel registers the model of a directory created in this session.
func (f *FS) newDirModel(ino, gen, parent uint32, blk uint64) *dirModel {
	d := &dirModel{ino: ino, gen: gen, parent: parent, blocks: []uint64{blk},
		leaves: []*dirLeaf{{used: 2 * dotEntrySize, txn: f.txnID()}}, txn: f.txnID()}
	f.dirs[ino] = d
	f.onUndo(func() { delete(f.dirs, ino) })
	return d
}

// dropDirModel forgets the model of a removed directory.
func (f *FS) dropDirModel(ino uint32) {
	if d, ok := f.dirs[ino]; ok {
		delete(f.dirs, ino)
		f.onUndo(func() { f.dirs[ino] = d })
	}
}

// flushDir serialises d into its blocks (called by Close).
func (f *FS) flushDir(d *dirModel) error {
	ft := uint8(0)
	if f.sb.hasIncompat(incompatFiletype) {
		ft = ftDir
	}
	if !d.indexed {
		for i, l := range d.leaves {
			b := f.blockNew(d.blocks[l.logical])
			off := 0
			if i == 0 {
				off = f.putDots(b, d, ft, len(l.entries) == 0)
			}
			f.putLeaf(b, off, l.entries, d)
		}
		return nil
	}
	for _, l := range d.leaves {
		f.putLeaf(f.blockNew(d.blocks[l.logical]), 0, l.entries, d)
	}
	return f.putIndex(d, ft)
}

// putDots writes "." and ".." at the start of block 0 and returns the
// offset after them. With last set, ".." extends to the end of the block.
func (f *FS) putDots(b []byte, d *dirModel, ft uint8, last bool) int {
	put32(b, 0, d.ino)
	put16(b, 4, dotEntrySize)
	b[6], b[7], b[8] = 1, ft, '.'
	put32(b, 12, d.parent)
	rl, end := dotEntrySize, 2*dotEntrySize
	if last {
		rl, end = f.leafCap()-dotEntrySize, f.leafCap()
	}
	put16(b, 16, f.encodeRecLen(rl))
	b[18], b[19], b[20], b[21] = 2, ft, '.', '.'
	return end
}

// putLeaf packs entries from off, the last one absorbing the free space,
// and adds the checksum tail.
func (f *FS) putLeaf(b []byte, off int, entries []dirEntry, d *dirModel) {
	end := f.leafCap()
	if off < end {
		if len(entries) == 0 {
			put32(b, off, 0)
			put16(b, off+4, f.encodeRecLen(end-off))
		}
		for i, e := range entries {
			sz := direntSize(len(e.name))
			if i == len(entries)-1 {
				sz = end - off
			}
			put32(b, off, e.ino)
			put16(b, off+4, f.encodeRecLen(sz))
			b[off+6] = uint8(len(e.name))
			b[off+7] = e.ftype
			copy(b[off+direntHeader:], e.name)
			off += sz
		}
	}
	if f.csum {
		t := b[f.blockSize-dirTailSize:]
		clear(t)
		put16(t, 4, dirTailSize)
		t[7] = dirTailFT
		put32(t, 8, f.dirBlockCsum(d.ino, d.gen, b))
	}
}

// convertInlineDir moves a directory stored as inline data into a regular
// directory block (as the kernel does when an inline directory grows), so
// it can be changed like any other.
func (f *FS) convertInlineDir(in *inode) (*dirModel, error) {
	leaf := &dirLeaf{used: 2 * dotEntrySize, txn: f.txnID()}
	d := &dirModel{ino: in.ino, gen: in.generation(), leaves: []*dirLeaf{leaf}, txn: f.txnID()}
	err := f.iterInlineDir(in, func(e dirEntry) error {
		switch e.name {
		case ".":
		case "..":
			d.parent = e.ino
		default:
			if !f.sb.hasIncompat(incompatFiletype) {
				e.ftype = 0
			}
			leaf.entries = append(leaf.entries, e)
			leaf.used += direntSize(len(e.name))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if leaf.used > f.leafCap() {
		return nil, unsupportedf("inline directory inode %d does not fit one block", in.ino)
	}
	runs, err := f.allocBlocks(f.inodeGoal(in.ino), 1)
	if err != nil {
		return nil, err
	}
	blk := runs[0].phys
	d.blocks = []uint64{blk}
	out := &inode{ino: in.ino, raw: append([]byte(nil), in.raw...)}
	if err := f.removeInodeXattr(out, xattrIndexSystem, "data"); err != nil {
		return nil, err
	}
	out.setFlags(out.flags() &^ flagInlineData)
	clear(out.iblock())
	meta, err := f.buildMap(out, []run{{logical: 0, phys: blk, length: 1}}, blk+1)
	if err != nil {
		return nil, err
	}
	total := 1 + meta
	if f.fileACL(out) != 0 {
		total++
	}
	if err := f.setBlockCount(out, total); err != nil {
		return nil, err
	}
	out.setSize(uint64(f.blockSize))
	if err := f.writeInode(out); err != nil {
		return nil, err
	}
	f.dirs[in.ino] = d
	f.onUndo(func() { delete(f.dirs, in.ino) })
	return d, nil
}
