package flash

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/bakeryhq/bakery/internal/bmap"
	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/image"
)

// MustMapRanges lists the byte ranges of an image that a block map has to
// include even where the image file has holes: the partition tables (MBR,
// GPT primary and backup) and everything each filesystem uses (metadata
// and allocated data, from fs.UsedMapper). bmaptool maps holes out, so a
// FAT table or an inode table that is all zeros in the image is left as
// whatever the card held before — garbage on a reused card.
//
// A partition whose filesystem we cannot list but that holds data is
// mapped whole: we cannot know which of its zeros matter.
func MustMapRanges(imagePath string) ([]bmap.Range, error) {
	im, err := image.Open(imagePath, image.Options{})
	if err != nil {
		return nil, err
	}
	defer im.Close()
	size := im.Disk.Size()
	out := tableRanges(im.Disk, im.Table)

	var data []bmap.Range
	if f, err := os.Open(imagePath); err == nil {
		data, _ = bmap.DataRanges(f, size)
		f.Close()
	}
	for _, p := range im.Partitions {
		start, end := max(p.Start, 0), min(p.End(), size)
		if end <= start {
			continue
		}
		whole := bmap.Range{Off: start, Len: end - start}
		extents, err := usedExtents(im, p.Index)
		if err != nil {
			if overlaps(data, whole) {
				out = append(out, whole)
			}
			continue
		}
		for _, e := range extents {
			off, eend := max(start+e.Off, start), min(start+e.Off+e.Len, end)
			if eend > off {
				out = append(out, bmap.Range{Off: off, Len: eend - off})
			}
		}
	}
	return out, nil
}

func usedExtents(im *image.Image, index int) ([]fs.Extent, error) {
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

func overlaps(ranges []bmap.Range, r bmap.Range) bool {
	for _, x := range ranges {
		if x.Off < r.End() && r.Off < x.End() {
			return true
		}
	}
	return false
}

// tableRanges maps the partition table structures: sector 0 for MBR; for
// GPT also the primary header and entry array and the backup array and
// header (read from the headers, bounded by the image).
func tableRanges(d *disk.Disk, t *disk.Table) []bmap.Range {
	ss := int64(t.SectorSize)
	size := d.Size()
	clip := func(off, n int64) []bmap.Range {
		if off < 0 || n <= 0 || off >= size {
			return nil
		}
		return []bmap.Range{{Off: off, Len: min(n, size-off)}}
	}
	switch t.Type {
	case disk.TableMBR:
		return clip(0, ss)
	case disk.TableGPT:
	default:
		return nil
	}
	out := clip(0, 2*ss) // protective MBR and primary header
	hdr := make([]byte, 92)
	if _, err := d.ReadAt(hdr, ss); err != nil {
		return append(out, clip(0, 34*ss)...)
	}
	backupLBA := int64(binary.LittleEndian.Uint64(hdr[32:]))
	entriesLBA := int64(binary.LittleEndian.Uint64(hdr[72:]))
	arrayLen := int64(binary.LittleEndian.Uint32(hdr[80:])) * int64(binary.LittleEndian.Uint32(hdr[84:]))
	arrayLen = min(arrayLen, 4096*4096) // the disk package's own bounds
	if entriesLBA > 0 && entriesLBA < size/ss {
		out = append(out, clip(entriesLBA*ss, arrayLen)...)
	}
	if backupLBA > 0 && backupLBA < size/ss {
		out = append(out, clip(backupLBA*ss, ss)...)
		bhdr := make([]byte, 92)
		if _, err := d.ReadAt(bhdr, backupLBA*ss); err == nil && string(bhdr[:8]) == "EFI PART" {
			bentries := int64(binary.LittleEndian.Uint64(bhdr[72:]))
			if bentries > 0 && bentries < size/ss {
				out = append(out, clip(bentries*ss, arrayLen)...)
			}
		}
	}
	// Where the backup belongs for this image size, even if the header
	// points elsewhere: the last 33 sectors.
	out = append(out, clip(size-33*ss, 33*ss)...)
	return out
}
