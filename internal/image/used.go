package image

import (
	"encoding/binary"
	"fmt"

	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fs"
)

// Bounds on a GPT partition array we map, as the disk package enforces
// when reading one.
const maxGPTArrayBytes = 4096 * 4096

// UsedRanges lists the absolute byte ranges of the disk that must be
// written when the image goes onto media that may hold old data, even
// where the image file has holes: the partition table (MBR sector 0; for
// GPT the protective MBR, both headers and both entry arrays, located from
// the headers) and, for every partition, the ranges its filesystem uses
// (fs.UsedMapper) offset by the partition's start. A partition whose
// filesystem cannot be opened or listed (unknown type, corrupt) is listed
// whole, since nothing tells which of its bytes matter. Ranges are clipped
// to the disk, sorted and merged.
//
// Callers flashing an image write these ranges plus the file's data
// ranges (SEEK_DATA); bytes in neither are don't-care.
func (im *Image) UsedRanges() ([]fs.Extent, error) { return im.usedRanges(nil) }

// UsedRangesWithData is UsedRanges for an image whose data ranges (the
// file's non-holes) are known: a partition that cannot be listed is mapped
// whole only when it holds data, since a partition of nothing but holes
// (never formatted) needs nothing written.
func (im *Image) UsedRangesWithData(data []fs.Extent) ([]fs.Extent, error) {
	return im.usedRanges(func(e fs.Extent) bool {
		for _, d := range data {
			if d.Off < e.End() && e.Off < d.End() {
				return true
			}
		}
		return false
	})
}

func (im *Image) usedRanges(holdsData func(fs.Extent) bool) ([]fs.Extent, error) {
	size := im.Disk.Size()
	out, err := im.tableRanges()
	if err != nil {
		return nil, err
	}
	for _, p := range im.Partitions {
		start, end := max(p.Start, 0), min(p.End(), size)
		if end <= start {
			continue
		}
		ext, err := im.usedExtents(p.Index)
		if err != nil {
			if whole := (fs.Extent{Off: start, Len: end - start}); holdsData == nil || holdsData(whole) {
				out = append(out, whole)
			}
			continue
		}
		for _, e := range ext {
			lo, hi := max(start+e.Off, start), min(start+e.End(), end)
			if hi > lo {
				out = append(out, fs.Extent{Off: lo, Len: hi - lo})
			}
		}
	}
	return fs.MergeExtents(out), nil
}

func (im *Image) usedExtents(index int) ([]fs.Extent, error) {
	f, err := im.Filesystem(index)
	if err != nil {
		return nil, err
	}
	um, ok := f.(fs.UsedMapper)
	if !ok {
		return nil, fmt.Errorf("partition %d: %s cannot list its used blocks", index, f.Type())
	}
	return um.UsedExtents()
}

// tableRanges maps the partition table structures.
func (im *Image) tableRanges() ([]fs.Extent, error) {
	size := im.Disk.Size()
	ss := int64(im.Table.SectorSize)
	var out []fs.Extent
	add := func(off, n int64) {
		if off >= 0 && n > 0 && off < size {
			out = append(out, fs.Extent{Off: off, Len: min(n, size-off)})
		}
	}
	switch im.Table.Type {
	case disk.TableMBR:
		add(0, ss)
		return out, nil
	case disk.TableGPT:
	default:
		return nil, nil
	}
	add(0, 2*ss) // protective MBR and primary header
	hdr := make([]byte, 92)
	if _, err := im.Disk.ReadAt(hdr, ss); err != nil {
		return nil, fmt.Errorf("%s: read GPT header: %w", im.Disk.Path(), err)
	}
	arrayBytes := func(h []byte) int64 {
		n := int64(binary.LittleEndian.Uint32(h[80:])) * int64(binary.LittleEndian.Uint32(h[84:]))
		n = min(n, maxGPTArrayBytes)
		return (n + ss - 1) / ss * ss
	}
	lba := func(h []byte, off int) int64 {
		v := binary.LittleEndian.Uint64(h[off:])
		if v > uint64(size/ss) {
			return -1
		}
		return int64(v) * ss
	}
	primaryArray := arrayBytes(hdr)
	add(lba(hdr, 72), primaryArray)
	// The backup header where the primary says it is, and its array; also
	// the standard place at the end of the disk (an image that was
	// enlarged keeps its old backup until the table is rewritten).
	if alt := lba(hdr, 32); alt > 0 {
		add(alt, ss)
		bhdr := make([]byte, 92)
		if _, err := im.Disk.ReadAt(bhdr, alt); err == nil && string(bhdr[:8]) == "EFI PART" {
			add(lba(bhdr, 72), arrayBytes(bhdr))
		}
	}
	add(size-ss-primaryArray, primaryArray+ss)
	return out, nil
}
