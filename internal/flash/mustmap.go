package flash

import (
	"os"

	"github.com/bakeryhq/bakery/internal/bmap"
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
// mapped whole: we cannot know which of its zeros matter. The image engine
// knows the layout (image.UsedRangesWithData); this adds the file's holes.
func MustMapRanges(imagePath string) ([]bmap.Range, error) {
	im, err := image.Open(imagePath, image.Options{})
	if err != nil {
		return nil, err
	}
	defer im.Close()
	var data []fs.Extent
	if f, err := os.Open(imagePath); err == nil {
		ranges, _ := bmap.DataRanges(f, im.Disk.Size())
		f.Close()
		for _, r := range ranges {
			data = append(data, fs.Extent{Off: r.Off, Len: r.Len})
		}
	}
	used, err := im.UsedRangesWithData(data)
	if err != nil {
		return nil, err
	}
	out := make([]bmap.Range, len(used))
	for i, e := range used {
		out[i] = bmap.Range{Off: e.Off, Len: e.Len}
	}
	return out, nil
}
