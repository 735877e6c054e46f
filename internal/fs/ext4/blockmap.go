package ext4

// Classic ext2/ext3 block maps: 12 direct pointers, then single, double and
// triple indirect blocks of 32-bit block numbers.

const (
	directBlocks = 12
	indBlock     = 12
	dindBlock    = 13
	tindBlock    = 14
)

// readBlockMap walks the indirect tree. Every indirect block is visited at
// most once and the total is bounded by the filesystem size.
func (f *FS) readBlockMap(in *inode) (*fileMap, error) {
	m := &fileMap{}
	apb := uint64(f.blockSize / 4)
	visited := map[uint64]bool{}
	var total uint64
	add := func(logical, phys uint64) error {
		if !f.validDataBlock(phys) {
			return corruptf("inode %d: block pointer %d for logical block %d is outside the filesystem", in.ino, phys, logical)
		}
		total++
		if total > f.blocks {
			return corruptf("inode %d: block map covers more blocks than the filesystem has", in.ino)
		}
		if k := len(m.runs); k > 0 && m.runs[k-1].logical+m.runs[k-1].length == logical && m.runs[k-1].phys+m.runs[k-1].length == phys {
			m.runs[k-1].length++
		} else {
			if len(m.runs) >= maxRuns {
				return corruptf("inode %d: block map has more than %d fragments", in.ino, maxRuns)
			}
			m.runs = append(m.runs, run{logical: logical, phys: phys, length: 1})
		}
		return nil
	}
	var walk func(blk uint64, level int, base uint64) error
	walk = func(blk uint64, level int, base uint64) error {
		if !f.validDataBlock(blk) {
			return corruptf("inode %d: indirect block pointer %d is outside the filesystem", in.ino, blk)
		}
		if visited[blk] {
			return corruptf("inode %d: indirect block %d is referenced twice", in.ino, blk)
		}
		visited[blk] = true
		total++
		if total > f.blocks {
			return corruptf("inode %d: block map covers more blocks than the filesystem has", in.ino)
		}
		m.meta = append(m.meta, blk)
		b, err := f.block(blk)
		if err != nil {
			return err
		}
		span := uint64(1)
		for range level - 1 {
			span *= apb
		}
		for i := uint64(0); i < apb; i++ {
			p := uint64(get32(b, int(i*4)))
			if p == 0 {
				continue
			}
			if level == 1 {
				if err := add(base+i, p); err != nil {
					return err
				}
			} else if err := walk(p, level-1, base+i*span); err != nil {
				return err
			}
		}
		return nil
	}
	ib := in.iblock()
	for i := uint64(0); i < directBlocks; i++ {
		if p := uint64(get32(ib, int(i*4))); p != 0 {
			if err := add(i, p); err != nil {
				return nil, err
			}
		}
	}
	base := uint64(directBlocks)
	for level, slot := range []int{indBlock, dindBlock, tindBlock} {
		p := uint64(get32(ib, slot*4))
		if p != 0 {
			if err := walk(p, level+1, base); err != nil {
				return nil, err
			}
		}
		span := apb
		for range level {
			span *= apb
		}
		base += span
	}
	return m, nil
}

// indNode is an indirect block being built.
type indNode struct {
	ptrs [](uint32)
	kids []*indNode
	blk  uint64
}

// buildBlockMap writes i_block and the indirect blocks for runs.
func (f *FS) buildBlockMap(in *inode, runs []run, goal uint64) (uint64, error) {
	apb := uint64(f.blockSize / 4)
	ib := in.iblock()
	clear(ib)
	in.setFlags(in.flags() &^ flagExtents)
	var tops [3]*indNode
	var nodes []*indNode
	newNode := func(level int) *indNode {
		n := &indNode{ptrs: make([]uint32, apb)}
		if level > 1 {
			n.kids = make([]*indNode, apb)
		}
		nodes = append(nodes, n)
		return n
	}
	type slot struct {
		node *indNode
		idx  uint64
	}
	var slots []slot // data pointers to fill, parallel to phys
	var physs []uint64
	for _, r := range runs {
		for i := uint64(0); i < r.length; i++ {
			lb, pb := r.logical+i, r.phys+i
			if pb >= 1<<32 {
				return 0, unsupportedf("block %d is beyond the 32-bit range of a block-mapped file", pb)
			}
			if lb < directBlocks {
				put32(ib, int(lb*4), uint32(pb))
				continue
			}
			rel := lb - directBlocks
			level := 1
			span := apb
			for rel >= span {
				rel -= span
				level++
				if level > 3 {
					return 0, errFileTooLarge(lb + 1)
				}
				span *= apb
			}
			if tops[level-1] == nil {
				tops[level-1] = newNode(level)
			}
			n := tops[level-1]
			for l := level; l > 1; l-- {
				span /= apb
				idx := rel / span
				rel %= span
				if n.kids[idx] == nil {
					n.kids[idx] = newNode(l - 1)
				}
				n = n.kids[idx]
			}
			slots = append(slots, slot{n, rel})
			physs = append(physs, pb)
		}
	}
	for i, s := range slots {
		s.node.ptrs[s.idx] = uint32(physs[i])
	}
	if len(nodes) == 0 {
		return 0, nil
	}
	allocated, err := f.allocMeta(goal, uint64(len(nodes)))
	if err != nil {
		return 0, err
	}
	i := 0
	for _, r := range allocated {
		for j := uint64(0); j < r.length; j++ {
			if r.phys+j >= 1<<32 {
				return 0, unsupportedf("indirect block %d is beyond the 32-bit range", r.phys+j)
			}
			nodes[i].blk = r.phys + j
			i++
		}
	}
	for _, n := range nodes {
		for k, kid := range n.kids {
			if kid != nil {
				n.ptrs[k] = uint32(kid.blk)
			}
		}
		b := f.blockNew(n.blk)
		for k, p := range n.ptrs {
			put32(b, k*4, p)
		}
	}
	for level, t := range tops {
		if t != nil {
			put32(ib, (indBlock+level)*4, uint32(t.blk))
		}
	}
	return uint64(len(nodes)), nil
}
