// Package bmap reads and writes bmaptool block maps (.bmap files): the list
// of block ranges of a sparse image that carry data, each with a checksum,
// so that flashing writes only those ranges and can verify them.
//
// Reading accepts every format bmaptool accepts (1.0–1.3 with optional SHA1,
// 1.4 and 2.x with ChecksumType) and verifies the file's own checksum exactly
// as bmaptool does. Writing produces format 2.0 with SHA256, laid out like
// `bmaptool create` output so that `bmaptool copy` accepts it.
package bmap

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"sort"
)

// Checksum types we can compute. bmaptool accepts any hashlib name; real
// files use sha256 (2.0) or sha1 (1.3).
const (
	SHA1   = "sha1"
	SHA256 = "sha256"
	SHA512 = "sha512"
)

// Bounds on untrusted input.
const (
	// MaxFileSize bounds the .bmap file we read. A heavily fragmented 64 GiB
	// image has well under 100k ranges (~12 MiB of XML).
	MaxFileSize = 32 << 20
	// MaxRanges bounds the number of <Range> elements.
	MaxRanges = 1 << 20
	// MaxImageSize bounds ImageSize (1 PiB).
	MaxImageSize = 1 << 50
	// MinBlockSize and MaxBlockSize bound BlockSize.
	MinBlockSize = 512
	MaxBlockSize = 64 << 20
)

// DefaultBlockSize is the block size Generate uses when given 0, the block
// size of every common Linux filesystem and what bmaptool reports there.
const DefaultBlockSize = 4096

// ErrInvalid marks a .bmap that is malformed or inconsistent.
var ErrInvalid = errors.New("invalid bmap")

// ErrChecksum marks a .bmap whose file checksum does not match its bytes.
var ErrChecksum = errors.New("bmap file checksum mismatch")

// Range is a byte range [Off, Off+Len) of an image.
type Range struct {
	Off int64
	Len int64
}

// End is the first byte after the range.
func (r Range) End() int64 { return r.Off + r.Len }

// BlockRange is an inclusive range of mapped blocks with its checksum.
type BlockRange struct {
	First    int64
	Last     int64
	Checksum string // lower-case hex of the range's bytes; "" when absent
}

// Blocks is the number of blocks in the range.
func (r BlockRange) Blocks() int64 { return r.Last - r.First + 1 }

// Bmap is a parsed or generated block map.
type Bmap struct {
	// Version is the format version as written ("2.0", "1.4", "1.3", ...).
	Version   string
	ImageSize int64
	BlockSize int64
	// BlocksCount is ceil(ImageSize / BlockSize).
	BlocksCount int64
	// MappedBlocksCount is the sum of the ranges' lengths.
	MappedBlocksCount int64
	// ChecksumType names the hash of the range checksums ("" for formats
	// without checksums).
	ChecksumType string
	// FileChecksum is the checksum of the .bmap file as read ("" if none).
	FileChecksum string
	// Ranges are sorted and do not overlap.
	Ranges []BlockRange
	// Complete says the map also covers the image's zero-filled
	// filesystem metadata (bakery build's maps), so that it is safe for
	// used cards; bmaptool's maps list data only. Marshal records it as
	// a comment (completeMarker) that Parse recognises.
	Complete bool
}

// completeMarker is the comment that marks a Complete map.
const completeMarker = "<!-- bakery: the map includes zero-filled filesystem metadata (safe for used cards) -->"

// ByteRange is the byte range a block range covers, clipped to the image
// size (the last block of an image may be partial).
func (b *Bmap) ByteRange(r BlockRange) Range {
	off := r.First * b.BlockSize
	end := (r.Last + 1) * b.BlockSize
	if end > b.ImageSize {
		end = b.ImageSize
	}
	return Range{Off: off, Len: end - off}
}

// MappedBytes is the number of image bytes the map covers.
func (b *Bmap) MappedBytes() int64 {
	var n int64
	for _, r := range b.Ranges {
		n += b.ByteRange(r).Len
	}
	return n
}

// HasChecksums reports whether every range carries a checksum.
func (b *Bmap) HasChecksums() bool {
	if b.ChecksumType == "" {
		return false
	}
	for _, r := range b.Ranges {
		if r.Checksum == "" {
			return false
		}
	}
	return true
}

// NewHash returns a hash for a checksum type name.
func NewHash(checksumType string) (hash.Hash, error) {
	switch checksumType {
	case SHA1:
		return sha1.New(), nil
	case SHA256:
		return sha256.New(), nil
	case SHA512:
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("%w: unsupported checksum type %q (want sha1, sha256 or sha512)", ErrInvalid, checksumType)
}

// hexLen is the length of a hex digest of the given type.
func hexLen(checksumType string) int {
	h, err := NewHash(checksumType)
	if err != nil {
		return 0
	}
	return 2 * h.Size()
}

// Validate checks the internal consistency every reader relies on: sizes in
// bounds, block count matching the image size, ranges sorted, disjoint and
// inside the image, mapped count equal to the ranges' sum, and checksums of
// the right shape.
func (b *Bmap) Validate() error {
	if b.BlockSize < MinBlockSize || b.BlockSize > MaxBlockSize || b.BlockSize%512 != 0 {
		return fmt.Errorf("%w: block size %d (want a multiple of 512 between %d and %d)", ErrInvalid, b.BlockSize, MinBlockSize, MaxBlockSize)
	}
	if b.ImageSize <= 0 || b.ImageSize > MaxImageSize {
		return fmt.Errorf("%w: image size %d out of range", ErrInvalid, b.ImageSize)
	}
	if want := (b.ImageSize + b.BlockSize - 1) / b.BlockSize; b.BlocksCount != want {
		return fmt.Errorf("%w: blocks count %d does not match image size %d with %d-byte blocks (want %d)", ErrInvalid, b.BlocksCount, b.ImageSize, b.BlockSize, want)
	}
	if len(b.Ranges) > MaxRanges {
		return fmt.Errorf("%w: %d ranges (at most %d)", ErrInvalid, len(b.Ranges), MaxRanges)
	}
	n := 0
	if b.ChecksumType != "" {
		if n = hexLen(b.ChecksumType); n == 0 {
			return fmt.Errorf("%w: unsupported checksum type %q (want sha1, sha256 or sha512)", ErrInvalid, b.ChecksumType)
		}
	}
	var mapped int64
	next := int64(0)
	for i, r := range b.Ranges {
		if r.First < next || r.Last < r.First || r.Last >= b.BlocksCount {
			return fmt.Errorf("%w: range %d (blocks %d-%d) is out of order, overlapping or beyond the %d blocks of the image", ErrInvalid, i+1, r.First, r.Last, b.BlocksCount)
		}
		if r.Checksum != "" && (n == 0 || len(r.Checksum) != n || !isLowerHex(r.Checksum)) {
			return fmt.Errorf("%w: range %d (blocks %d-%d) has checksum %q, want %d lower-case hex digits of %s", ErrInvalid, i+1, r.First, r.Last, r.Checksum, n, b.ChecksumType)
		}
		mapped += r.Blocks()
		next = r.Last + 1
	}
	if mapped != b.MappedBlocksCount {
		return fmt.Errorf("%w: MappedBlocksCount is %d but the ranges hold %d blocks", ErrInvalid, b.MappedBlocksCount, mapped)
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Add maps the blocks that byte ranges touch and the map leaves out, as
// ranges without a checksum, and returns how many blocks it added. A map
// made by bmaptool lists only an image's data; a used card also needs the
// zero-filled filesystem metadata written.
func (b *Bmap) Add(ranges []Range) (int64, error) {
	extra, err := FromRanges(b.ImageSize, b.BlockSize, ranges)
	if err != nil {
		return 0, err
	}
	var merged []BlockRange
	var added int64
	i := 0
	for _, r := range extra.Ranges {
		// Keep the map's own ranges (and their checksums); add only the
		// gaps between them that r covers.
		for first := r.First; first <= r.Last; {
			for i < len(b.Ranges) && b.Ranges[i].Last < first {
				merged = append(merged, b.Ranges[i])
				i++
			}
			if i < len(b.Ranges) && b.Ranges[i].First <= first {
				first = b.Ranges[i].Last + 1
				continue
			}
			last := r.Last
			if i < len(b.Ranges) && b.Ranges[i].First <= last {
				last = b.Ranges[i].First - 1
			}
			merged = append(merged, BlockRange{First: first, Last: last})
			added += last - first + 1
			first = last + 1
		}
	}
	merged = append(merged, b.Ranges[i:]...)
	b.Ranges = merged
	b.MappedBlocksCount += added
	return added, nil
}

// FromRanges builds an unhashed map of the blocks touched by byte ranges.
// Ranges are rounded outwards to whole blocks, clipped to the image and
// merged.
func FromRanges(imageSize, blockSize int64, ranges []Range) (*Bmap, error) {
	if blockSize == 0 {
		blockSize = DefaultBlockSize
	}
	b := &Bmap{Version: "2.0", ImageSize: imageSize, BlockSize: blockSize}
	if blockSize < MinBlockSize || blockSize > MaxBlockSize || blockSize%512 != 0 {
		return nil, fmt.Errorf("block size %d: want a multiple of 512 between %d and %d", blockSize, MinBlockSize, MaxBlockSize)
	}
	if imageSize <= 0 || imageSize > MaxImageSize {
		return nil, fmt.Errorf("image size %d out of range", imageSize)
	}
	b.BlocksCount = (imageSize + blockSize - 1) / blockSize
	blocks := make([]BlockRange, 0, len(ranges))
	for _, r := range ranges {
		if r.Len <= 0 || r.Off >= imageSize || r.End() <= 0 {
			continue
		}
		off, end := max(r.Off, 0), min(r.End(), imageSize)
		blocks = append(blocks, BlockRange{First: off / blockSize, Last: (end - 1) / blockSize})
	}
	sort.Slice(blocks, func(i, j int) bool { return blocks[i].First < blocks[j].First })
	for _, r := range blocks {
		if n := len(b.Ranges); n > 0 && r.First <= b.Ranges[n-1].Last+1 {
			b.Ranges[n-1].Last = max(b.Ranges[n-1].Last, r.Last)
			continue
		}
		b.Ranges = append(b.Ranges, r)
	}
	for _, r := range b.Ranges {
		b.MappedBlocksCount += r.Blocks()
	}
	return b, nil
}
