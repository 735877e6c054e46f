package fat

import "github.com/bakeryhq/bakery/internal/fs"

var _ fs.UsedMapper = (*FS)(nil)

// UsedExtents lists the byte ranges of the device the filesystem uses, for
// flashing media that may hold old data: the reserved sectors (boot
// sector, FSInfo, backup boot sector), every FAT copy and the FAT12/16
// root directory, all of which lie before the data region, plus every
// cluster whose FAT entry is not 0 (allocated, end of chain or bad). A FAT
// is mostly zeros and an image file often has holes there; left out, a
// reused card's old bytes would read as a corrupt FAT. The result reflects
// this session's changes, is sorted and merged.
func (f *FS) UsedExtents() ([]fs.Extent, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return nil, errClosed
	}
	g, t := f.g, f.t
	out := []fs.Extent{{Off: 0, Len: g.dataOffset}}
	for c := uint32(2); c <= t.last; {
		if t.get(c) == 0 {
			c++
			continue
		}
		first := c
		for c <= t.last && t.get(c) != 0 {
			c++
		}
		out = append(out, fs.Extent{Off: g.clusterOffset(first), Len: int64(c-first) * g.bytesPerCluster})
	}
	return fs.MergeExtents(out), nil
}
