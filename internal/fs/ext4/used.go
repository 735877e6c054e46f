package ext4

import (
	"fmt"
	"math/bits"
	"sort"

	"github.com/bakeryhq/bakery/internal/fs"
)

// UsedExtents lists the byte ranges of the device the filesystem uses, for
// flashing media that may hold old data: the boot area and superblock,
// then every block the block bitmaps mark as used (bitmaps of BLOCK_UNINIT
// groups are computed from the group's metadata, as e2fsck does), which
// covers superblock and descriptor backups, reserved GDT blocks, bitmaps,
// inode tables, the journal and all file and directory data.
//
// Inode table blocks nothing may read are left out: with group checksums,
// a group without ITABLE_ZEROED has its table zeroed lazily by the kernel
// and e2fsck and the kernel read only its first ipg - itable_unused inodes
// (none with INODE_UNINIT), so only the blocks holding those are listed.
// With ITABLE_ZEROED set the whole table must read as zeros and is listed,
// as is every table of a filesystem without group checksums.
//
// The result describes the filesystem as it is in this session, including
// uncommitted changes; blocks freed in the session are still listed. It is
// sorted and merged.
func (f *FS) UsedExtents() ([]fs.Extent, error) {
	// The exclusive lock: reading bitmaps records verified checksums.
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed.Load() {
		return nil, errClosed
	}
	var used, skip []span
	add := func(list *[]span, start, end uint64) {
		if n := len(*list); n > 0 && (*list)[n-1].end == start {
			(*list)[n-1].end = end
			return
		}
		*list = append(*list, span{start, end})
	}
	csum := f.hasGroupCsum()
	for g := uint32(0); g < f.groups; g++ {
		d, err := f.desc(g)
		if err != nil {
			return nil, fmt.Errorf("ext4: used extents: %w", err)
		}
		bm, err := f.blockBitmap(g, d)
		if err != nil {
			return nil, fmt.Errorf("ext4: used extents: %w", err)
		}
		start, count := f.groupFirstBlock(g), f.groupBlockCount(g)
		for i := uint64(0); i < count; {
			i = findOne(bm, i, count)
			if i >= count {
				break
			}
			j := findZero(bm, i, count)
			add(&used, start+i, start+j)
			i = j
		}
		if csum && d.flags&bgItableZeroed == 0 {
			live := uint64(0)
			if d.flags&bgInodeUninit == 0 {
				live = uint64(f.ipg - min(d.itableUnused, f.ipg))
			}
			liveBlocks := divCeil(live*uint64(f.inodeSize), uint64(f.blockSize))
			if liveBlocks < f.itableBlocks && d.inodeTable+f.itableBlocks <= f.blocks {
				skip = append(skip, span{d.inodeTable + liveBlocks, d.inodeTable + f.itableBlocks})
			}
		}
	}
	sort.Slice(skip, func(i, j int) bool { return skip[i].start < skip[j].start })
	bs := int64(f.blockSize)
	out := []fs.Extent{{Off: 0, Len: superblockOffset + superblockSize}}
	k := 0
	for _, u := range used {
		for u.start < u.end {
			for k < len(skip) && skip[k].end <= u.start {
				k++
			}
			end := u.end
			if k < len(skip) && skip[k].start < end {
				end = max(skip[k].start, u.start)
			}
			// A damaged or truncated image may claim blocks past the
			// device's end: there is nothing there to copy.
			if off := int64(u.start) * bs; end > u.start && off < f.devSize {
				out = append(out, fs.Extent{Off: off, Len: min(int64(end-u.start)*bs, f.devSize-off)})
			}
			if k < len(skip) && skip[k].start <= end && end < u.end {
				end = min(skip[k].end, u.end)
			}
			u.start = end
		}
	}
	return fs.MergeExtents(out), nil
}

// findOne returns the first set bit in [from, to), or to.
func findOne(b []byte, from, to uint64) uint64 {
	i := from
	for i < to {
		if i&63 == 0 && to-i >= 64 {
			w := le.Uint64(b[i>>3:])
			if w == 0 {
				i += 64
				continue
			}
			return i + uint64(bits.TrailingZeros64(w))
		}
		if bitSet(b, i) {
			return i
		}
		i++
	}
	return to
}
