package ext4

import (
	"fmt"
	"sort"

	"github.com/bakeryhq/bakery/internal/fs"
)

// maxRuns bounds how fragmented a file may be before we call its mapping
// corrupt, so a hostile image cannot make us allocate without limit.
const maxRuns = 1 << 22

// run maps length logical blocks starting at logical to the physical blocks
// starting at phys.
type run struct {
	logical uint64
	phys    uint64
	length  uint64
	uninit  bool // unwritten extent: reads as zeros
}

// fileMap describes where an inode's data lives.
type fileMap struct {
	runs []run    // sorted by logical, non-overlapping
	meta []uint64 // extent tree or indirect blocks
}

// lookup returns the run containing logical block lb, or nil for a hole.
func (m *fileMap) lookup(lb uint64) *run {
	i := sort.Search(len(m.runs), func(i int) bool { return m.runs[i].logical+m.runs[i].length > lb })
	if i < len(m.runs) && m.runs[i].logical <= lb {
		return &m.runs[i]
	}
	return nil
}

func (m *fileMap) dataBlocks() uint64 {
	var n uint64
	for _, r := range m.runs {
		n += r.length
	}
	return n
}

// hasBlockMapping reports whether an inode's i_block holds a block mapping
// (as opposed to a fast symlink, device number or inline data).
func (f *FS) hasBlockMapping(in *inode) bool {
	if in.flags()&flagInlineData != 0 {
		return false
	}
	switch in.fileType() {
	case sIFREG, sIFDIR:
		return true
	case sIFLNK:
		return !f.isFastSymlink(in)
	}
	return false
}

// isFastSymlink decides like the kernel: a symlink whose i_blocks accounts
// for nothing but an xattr block keeps its target in i_block.
func (f *FS) isFastSymlink(in *inode) bool {
	if !in.isSymlink() || in.flags()&flagInlineData != 0 {
		return false
	}
	if in.flags()&flagExtents != 0 {
		return false
	}
	blocks := f.blocks512(in)
	if f.fileACL(in) != 0 {
		ea := uint64(f.blockSize / 512)
		if blocks >= ea {
			blocks -= ea
		}
	}
	return blocks == 0
}

// readMap loads the block mapping of in.
func (f *FS) readMap(in *inode) (*fileMap, error) {
	if !f.hasBlockMapping(in) {
		return &fileMap{}, nil
	}
	if in.flags()&flagExtents != 0 {
		return f.readExtents(in)
	}
	return f.readBlockMap(in)
}

// buildMap stores runs (sorted, contiguous logical ranges may be split) as
// in's mapping, allocating extent-tree or indirect blocks near goal. It does
// not free the previous mapping. It returns the number of mapping blocks.
func (f *FS) buildMap(in *inode, runs []run, goal uint64) (uint64, error) {
	if f.sb.hasIncompat(incompatExtents) {
		return f.buildExtents(in, runs, goal)
	}
	return f.buildBlockMap(in, runs, goal)
}

// allocMeta allocates blocks for extent-tree or indirect blocks, taking
// them first from f.metaReuse (the mapping blocks of a mapping being
// rebuilt, which are rewritten through the metadata cache and so may be
// reused at once).
func (f *FS) allocMeta(goal, n uint64) ([]run, error) {
	var out []run
	for n > 0 && len(f.metaReuse) > 0 {
		b := f.metaReuse[0]
		f.metaReuse = f.metaReuse[1:]
		out = append(out, run{phys: b, length: 1})
		n--
	}
	if n == 0 {
		return out, nil
	}
	more, err := f.allocBlocks(goal, n)
	if err != nil {
		return nil, err
	}
	return append(out, more...), nil
}

// freeMap releases every data and mapping block of m (pending until Close).
func (f *FS) freeMap(m *fileMap) error {
	for _, r := range m.runs {
		if err := f.freeLater(r.phys, r.length); err != nil {
			return err
		}
	}
	for _, b := range m.meta {
		if err := f.freeLater(b, 1); err != nil {
			return err
		}
	}
	return nil
}

// maxFileBlocks is the largest logical block count the mapping can address.
func (f *FS) maxFileBlocks() uint64 {
	if f.sb.hasIncompat(incompatExtents) {
		return 1 << 32
	}
	apb := uint64(f.blockSize / 4)
	return 12 + apb + apb*apb + apb*apb*apb
}

func errFileTooLarge(blocks uint64) error {
	return fmt.Errorf("ext4: file of %d blocks exceeds the format's limit: %w", blocks, fs.ErrNoSpace)
}
