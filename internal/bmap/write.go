package bmap

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// header is bmaptool's _BMAP_START_TEMPLATE (BmapCreate.py, format 2.0),
// reproduced so our files read like theirs.
const header = `<?xml version="1.0" ?>
<!-- This file contains the block map for an image file, which is basically
     a list of useful (mapped) block numbers in the image file. In other words,
     it lists only those blocks which contain data (boot sector, partition
     table, file-system metadata, files, directories, extents, etc). These
     blocks have to be copied to the target device. The other blocks do not
     contain any useful data and do not have to be copied to the target
     device.

     The block map an optimization which allows to copy or flash the image to
     the image quicker than copying of flashing the entire image. This is
     because with bmap less data is copied: <MappedBlocksCount> blocks instead
     of <BlocksCount> blocks.

     Besides the machine-readable data, this file contains useful commentaries
     which contain human-readable information like image size, percentage of
     mapped data, etc.

     The 'version' attribute is the block map file format version in the
     'major.minor' format. The version major number is increased whenever an
     incompatible block map format change is made. The minor number changes
     in case of minor backward-compatible changes. -->

<bmap version="%s">
    <!-- Image size in bytes: %s -->
    <ImageSize> %d </ImageSize>

    <!-- Size of a block in bytes -->
    <BlockSize> %d </BlockSize>

    <!-- Count of blocks in the image file -->
    <BlocksCount> %d </BlocksCount>

`

// Marshal writes the map as a format 2.0 document with per-range checksums
// and the file checksum, following BmapCreate.py byte for byte: the same
// comments, the same padding left for the counts, and the checksum computed
// over the file with its own field set to ASCII zeros.
func (b *Bmap) Marshal() ([]byte, error) {
	if err := b.Validate(); err != nil {
		return nil, err
	}
	if b.ChecksumType == "" || !b.HasChecksums() {
		return nil, fmt.Errorf("bmap: every range needs a checksum before writing (use Generate or Hash)")
	}
	csLen := hexLen(b.ChecksumType)
	imageHuman := humanSize(b.ImageSize)

	var buf bytes.Buffer
	fmt.Fprintf(&buf, header, "2.0", imageHuman, b.ImageSize, b.BlockSize, b.BlocksCount)
	if b.Complete {
		buf.WriteString("    " + completeMarker + "\n\n")
	}
	buf.WriteString("    <!-- Count of mapped blocks: ")
	pos1 := buf.Len()
	fmt.Fprintf(&buf, "%s or %s   -->\n", strings.Repeat(" ", len(imageHuman)), strings.Repeat(" ", len("100.0%")))
	buf.WriteString("    <MappedBlocksCount> ")
	pos2 := buf.Len()
	fmt.Fprintf(&buf, "%s </MappedBlocksCount>\n\n", strings.Repeat(" ", len(fmt.Sprint(b.BlocksCount))))
	buf.WriteString("    <!-- Type of checksum used in this file -->\n")
	fmt.Fprintf(&buf, "    <ChecksumType> %s </ChecksumType>\n\n", b.ChecksumType)
	buf.WriteString("    <!-- The checksum of this bmap file. When it is calculated, the value of\n")
	buf.WriteString("         the checksum has be zero (all ASCII \"0\" symbols).  -->\n")
	buf.WriteString("    <BmapFileChecksum> ")
	csPos := buf.Len()
	buf.WriteString(strings.Repeat("0", csLen) + " </BmapFileChecksum>\n\n")
	buf.WriteString("    <!-- The block map which consists of elements which may either be a\n")
	buf.WriteString("         range of blocks or a single block. The 'chksum' attribute\n")
	buf.WriteString("         (if present) is the checksum of this blocks range. -->\n")
	buf.WriteString("    <BlockMap>\n")
	for _, r := range b.Ranges {
		if r.First != r.Last {
			fmt.Fprintf(&buf, "        <Range chksum=\"%s\"> %d-%d </Range>\n", r.Checksum, r.First, r.Last)
		} else {
			fmt.Fprintf(&buf, "        <Range chksum=\"%s\"> %d </Range>\n", r.Checksum, r.First)
		}
	}
	buf.WriteString("    </BlockMap>\n</bmap>\n")

	out := buf.Bytes()
	mappedSize := b.MappedBlocksCount * b.BlockSize
	percent := float64(b.MappedBlocksCount) * 100.0 / float64(b.BlocksCount)
	overwrite(out, pos1, fmt.Sprintf("%s or %.1f%%", humanSize(mappedSize), percent))
	overwrite(out, pos2, fmt.Sprint(b.MappedBlocksCount))

	h, err := NewHash(b.ChecksumType)
	if err != nil {
		return nil, err
	}
	h.Write(out)
	copy(out[csPos:], hex.EncodeToString(h.Sum(nil)))
	return out, nil
}

// WriteTo writes the marshalled map to w.
func (b *Bmap) WriteTo(w io.Writer) (int64, error) {
	data, err := b.Marshal()
	if err != nil {
		return 0, err
	}
	n, err := w.Write(data)
	return int64(n), err
}

// overwrite writes s over out at pos like a file write after a seek: it
// replaces bytes and, as in bmaptool, may run over what follows.
func overwrite(out []byte, pos int, s string) {
	copy(out[pos:], s)
}

// humanSize is BmapHelpers.human_size.
func humanSize(size int64) string {
	if size == 1 {
		return "1 byte"
	}
	if size < 512 {
		return fmt.Sprintf("%d bytes", size)
	}
	f := float64(size)
	for _, unit := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= 1024.0
		if f < 1024 {
			return fmt.Sprintf("%.1f %s", f, unit)
		}
	}
	return fmt.Sprintf("%.1f %s", f, "EiB")
}
