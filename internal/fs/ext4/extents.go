package ext4

// Extent trees (docs.kernel.org/filesystems/ext4/dynamic.html#extent-tree).

const (
	extentMagic     = 0xF30A
	extentHdrSize   = 12
	extentEntrySize = 12
	maxExtentDepth  = 5
	maxExtentLen    = 32768 // initialised extents; longer lengths mean unwritten
	rootExtents     = 4
)

type extentHeader struct {
	entries, max, depth uint16
}

func parseExtentHeader(b []byte) (extentHeader, bool) {
	if get16(b, 0) != extentMagic {
		return extentHeader{}, false
	}
	return extentHeader{entries: get16(b, 2), max: get16(b, 4), depth: get16(b, 6)}, true
}

func (f *FS) extentBlockCapacity() int { return (f.blockSize - extentHdrSize) / extentEntrySize }

// readExtents walks an extent tree with strict bounds: depth at most 5,
// entries within eh_max within the node, every block visited once, runs in
// ascending order, total size bounded by the filesystem.
func (f *FS) readExtents(in *inode) (*fileMap, error) {
	m := &fileMap{}
	visited := map[uint64]bool{}
	var total uint64
	var nextLogical uint64
	var walk func(node []byte, capacity int, depth int, where string) error
	walk = func(node []byte, capacity int, depth int, where string) error {
		h, ok := parseExtentHeader(node)
		if !ok {
			return corruptf("inode %d: bad extent header magic in %s", in.ino, where)
		}
		if int(h.max) > capacity || h.entries > h.max {
			return corruptf("inode %d: extent node %s claims %d/%d entries (room for %d)", in.ino, where, h.entries, h.max, capacity)
		}
		if depth >= 0 && int(h.depth) != depth {
			return corruptf("inode %d: extent node %s has depth %d, want %d", in.ino, where, h.depth, depth)
		}
		if h.depth > maxExtentDepth {
			return corruptf("inode %d: extent tree depth %d exceeds %d", in.ino, h.depth, maxExtentDepth)
		}
		for i := 0; i < int(h.entries); i++ {
			e := node[extentHdrSize+i*extentEntrySize:]
			logical := uint64(get32(e, 0))
			if h.depth == 0 {
				length := uint64(get16(e, 4))
				uninit := false
				if length > maxExtentLen {
					length -= maxExtentLen
					uninit = true
				}
				phys := uint64(get16(e, 6))<<32 | uint64(get32(e, 8))
				if length == 0 {
					return corruptf("inode %d: zero-length extent in %s", in.ino, where)
				}
				if !f.validDataBlock(phys) || phys+length > f.blocks {
					return corruptf("inode %d: extent %d+%d in %s points outside the filesystem", in.ino, phys, length, where)
				}
				if logical < nextLogical || logical+length > 1<<32 {
					return corruptf("inode %d: extents out of order or overlapping at logical block %d", in.ino, logical)
				}
				nextLogical = logical + length
				total += length
				if total > f.blocks {
					return corruptf("inode %d: extents map more blocks than the filesystem has", in.ino)
				}
				if k := len(m.runs); k > 0 && m.runs[k-1].logical+m.runs[k-1].length == logical &&
					m.runs[k-1].phys+m.runs[k-1].length == phys && m.runs[k-1].uninit == uninit {
					m.runs[k-1].length += length
				} else {
					if len(m.runs) >= maxRuns {
						return corruptf("inode %d: more than %d extents", in.ino, maxRuns)
					}
					m.runs = append(m.runs, run{logical: logical, phys: phys, length: length, uninit: uninit})
				}
				continue
			}
			child := uint64(get16(e, 8))<<32 | uint64(get32(e, 4))
			if !f.validDataBlock(child) {
				return corruptf("inode %d: extent index in %s points to block %d outside the filesystem", in.ino, where, child)
			}
			if visited[child] {
				return corruptf("inode %d: extent tree visits block %d twice", in.ino, child)
			}
			visited[child] = true
			if len(visited) > int(min(f.blocks, 1<<24)) {
				return corruptf("inode %d: extent tree too large", in.ino)
			}
			m.meta = append(m.meta, child)
			b, err := f.block(child)
			if err != nil {
				return err
			}
			if err := f.checkExtentTail(in, b, child); err != nil {
				return err
			}
			if err := walk(b, f.extentBlockCapacity(), int(h.depth)-1, "block "+itoa(child)); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(in.iblock(), rootExtents, -1, "i_block"); err != nil {
		return nil, err
	}
	return m, nil
}

func (f *FS) checkExtentTail(in *inode, b []byte, blk uint64) error {
	if !f.csum || !f.verifyChecksums {
		return nil
	}
	h, ok := parseExtentHeader(b)
	if !ok {
		return corruptf("inode %d: bad extent header magic in block %d", in.ino, blk)
	}
	off := extentHdrSize + int(h.max)*extentEntrySize
	if off+4 > len(b) {
		return corruptf("inode %d: extent block %d has no room for its checksum", in.ino, blk)
	}
	if get32(b, off) != crc32c(f.inodeSeed(in.ino, in.generation()), b[:off]) {
		return corruptf("inode %d: extent block %d checksum mismatch", in.ino, blk)
	}
	return nil
}

// splitRuns cuts runs into pieces an extent can describe.
func splitRuns(runs []run, maxLen uint64) []run {
	out := make([]run, 0, len(runs))
	for _, r := range runs {
		for r.length > maxLen {
			out = append(out, run{logical: r.logical, phys: r.phys, length: maxLen, uninit: r.uninit})
			r.logical += maxLen
			r.phys += maxLen
			r.length -= maxLen
		}
		out = append(out, r)
	}
	return out
}

// buildExtents writes a minimal-depth, fully packed extent tree for runs.
func (f *FS) buildExtents(in *inode, runs []run, goal uint64) (uint64, error) {
	runs = splitRuns(runs, maxExtentLen)
	type entry struct {
		logical uint64
		a, b    uint64 // leaf: phys, length|uninit; index: child block
	}
	entries := make([]entry, len(runs))
	for i, r := range runs {
		l := r.length
		if r.uninit {
			l += maxExtentLen
		}
		entries[i] = entry{logical: r.logical, a: r.phys, b: l}
	}
	perBlock := f.extentBlockCapacity()
	depth := 0
	var metaBlocks uint64
	seed := f.inodeSeed(in.ino, in.generation())
	writeEntries := func(node []byte, es []entry, depth int, max int) {
		put16(node, 0, extentMagic)
		put16(node, 2, uint16(len(es)))
		put16(node, 4, uint16(max))
		put16(node, 6, uint16(depth))
		put32(node, 8, 0)
		for i, e := range es {
			p := node[extentHdrSize+i*extentEntrySize:]
			put32(p, 0, uint32(e.logical))
			if depth == 0 {
				put16(p, 4, uint16(e.b))
				put16(p, 6, uint16(e.a>>32))
				put32(p, 8, uint32(e.a))
			} else {
				put32(p, 4, uint32(e.a))
				put16(p, 8, uint16(e.a>>32))
				put16(p, 10, 0)
			}
		}
	}
	for len(entries) > rootExtents {
		if depth >= maxExtentDepth {
			return 0, errFileTooLarge(uint64(len(runs)))
		}
		nodes := (len(entries) + perBlock - 1) / perBlock
		allocated, err := f.allocMeta(goal, uint64(nodes))
		if err != nil {
			return 0, err
		}
		var blocks []uint64
		for _, r := range allocated {
			for i := uint64(0); i < r.length; i++ {
				blocks = append(blocks, r.phys+i)
			}
		}
		goal = blocks[len(blocks)-1] + 1
		metaBlocks += uint64(nodes)
		up := make([]entry, 0, nodes)
		for i := 0; i < nodes; i++ {
			es := entries[i*perBlock : min(len(entries), (i+1)*perBlock)]
			b := f.blockNew(blocks[i])
			writeEntries(b, es, depth, perBlock)
			if f.csum {
				off := extentHdrSize + perBlock*extentEntrySize
				put32(b, off, crc32c(seed, b[:off]))
			}
			up = append(up, entry{logical: es[0].logical, a: blocks[i]})
		}
		entries = up
		depth++
	}
	root := in.iblock()
	clear(root)
	writeEntries(root, entries, depth, rootExtents)
	in.setFlags(in.flags() | flagExtents)
	return metaBlocks, nil
}

func itoa(v uint64) string {
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}
