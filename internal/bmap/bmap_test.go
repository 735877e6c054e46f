package bmap

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/testimage"
)

// smallRegions are the data regions of smallImage; testdata/make.py writes
// the same image with bmaptool's Python code.
var smallRegions = []Range{{0, 4096}, {16384, 30000 - 16384}, {65536, 1}, {196608, 200000 - 196608}}

const smallSize = 200000

// smallImage writes the deterministic sparse test image: a partial last
// block, a one-byte region and holes between.
func smallImage(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "small.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(smallSize); err != nil {
		t.Fatal(err)
	}
	for _, r := range smallRegions {
		b := make([]byte, r.Len)
		for i := range b {
			o := int(r.Off) + i
			b[i] = byte((o*31 + 7) % 251)
		}
		if _, err := f.WriteAt(b, r.Off); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseTestdataAllVersions(t *testing.T) {
	img := readFile(t, smallImage(t))
	for _, tc := range []struct {
		file, version, cstype string
	}{
		{"small-2.0.bmap", "2.0", SHA256},
		{"small-1.4.bmap", "1.4", SHA1},
		{"small-1.3.bmap", "1.3", SHA1},
		{"small-1.2.bmap", "1.2", ""},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := ParseFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if b.Version != tc.version || b.ChecksumType != tc.cstype || b.ImageSize != smallSize || b.BlockSize != 4096 || b.BlocksCount != 49 {
				t.Fatalf("header = %+v", b)
			}
			want := []BlockRange{{First: 0, Last: 0}, {First: 4, Last: 7}, {First: 16, Last: 16}, {First: 48, Last: 48}}
			if len(b.Ranges) != len(want) {
				t.Fatalf("ranges = %+v", b.Ranges)
			}
			for i, r := range b.Ranges {
				if r.First != want[i].First || r.Last != want[i].Last {
					t.Fatalf("range %d = %+v, want %+v", i, r, want[i])
				}
				if tc.cstype == "" {
					if r.Checksum != "" {
						t.Fatalf("range %d has checksum %q in a format without checksums", i, r.Checksum)
					}
					continue
				}
				h, _ := NewHash(tc.cstype)
				br := b.ByteRange(r)
				h.Write(img[br.Off:br.End()])
				if got := hex.EncodeToString(h.Sum(nil)); got != r.Checksum {
					t.Fatalf("range %d checksum %s, image bytes hash to %s", i, r.Checksum, got)
				}
			}
			if got := b.ByteRange(b.Ranges[3]); got != (Range{Off: 196608, Len: 200000 - 196608}) {
				t.Fatalf("last range is not clipped to the image: %+v", got)
			}
		})
	}
}

func TestFileChecksumMismatchRejected(t *testing.T) {
	for _, file := range []string{"small-2.0.bmap", "small-1.4.bmap", "small-1.3.bmap"} {
		data := readFile(t, filepath.Join("testdata", file))
		// Change one range checksum digit: the document stays well-formed
		// but its file checksum no longer matches.
		i := bytes.Index(data, []byte(`"`)) // version attribute quote
		i = bytes.Index(data[i+1:], []byte(`<Range `)) + i + 1
		j := bytes.IndexByte(data[i:], '"') + i + 1
		bad := bytes.Clone(data)
		if bad[j] == 'a' {
			bad[j] = 'b'
		} else {
			bad[j] = 'a'
		}
		if _, err := ParseBytes(bad); !errors.Is(err, ErrChecksum) {
			t.Errorf("%s with a changed range checksum: err = %v, want ErrChecksum", file, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	good := string(readFile(t, filepath.Join("testdata", "small-1.2.bmap")))
	for name, doc := range map[string]string{
		"not xml":          "hello",
		"wrong root":       `<?xml version="1.0"?><map version="2.0"></map>`,
		"version 3":        strings.Replace(good, `version="1.2"`, `version="3.0"`, 1),
		"bad version":      strings.Replace(good, `version="1.2"`, `version="x"`, 1),
		"blocks mismatch":  strings.Replace(good, "<BlocksCount> 49 </BlocksCount>", "<BlocksCount> 50 </BlocksCount>", 1),
		"mapped mismatch":  strings.Replace(good, "<MappedBlocksCount> 7  </MappedBlocksCount>", "<MappedBlocksCount> 8 </MappedBlocksCount>", 1),
		"range past end":   strings.Replace(good, "> 48 </Range>", "> 48-49 </Range>", 1),
		"range reversed":   strings.Replace(good, "> 4-7 </Range>", "> 7-4 </Range>", 1),
		"range overlap":    strings.Replace(good, "> 16 </Range>", "> 7 </Range>", 1),
		"negative":         strings.Replace(good, "> 16 </Range>", "> -16 </Range>", 1),
		"huge":             strings.Replace(good, "<ImageSize> 200000 </ImageSize>", "<ImageSize> 99999999999999999999 </ImageSize>", 1),
		"block size 100":   strings.Replace(good, "<BlockSize> 4096 </BlockSize>", "<BlockSize> 100 </BlockSize>", 1),
		"no image size":    strings.Replace(good, "<ImageSize> 200000 </ImageSize>", "", 1),
		"twice":            strings.Replace(good, "<ImageSize> 200000 </ImageSize>", "<ImageSize> 200000 </ImageSize><ImageSize> 200000 </ImageSize>", 1),
		"no block map":     good[:strings.Index(good, "<BlockMap>")] + "</bmap>",
		"nested in scalar": strings.Replace(good, "<ImageSize> 200000 </ImageSize>", "<ImageSize> 200000 <x/></ImageSize>", 1),
		"deep":             strings.Replace(good, "</bmap>", strings.Repeat("<a>", 100)+strings.Repeat("</a>", 100)+"</bmap>", 1),
		"2.0 no type":      strings.Replace(string(readFile(t, filepath.Join("testdata", "small-2.0.bmap"))), "<ChecksumType> sha256 </ChecksumType>", "", 1),
		"md5":              strings.Replace(string(readFile(t, filepath.Join("testdata", "small-2.0.bmap"))), "<ChecksumType> sha256 </ChecksumType>", "<ChecksumType> md5 </ChecksumType>", 1),
	} {
		if _, err := ParseBytes([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrChecksum) {
			t.Errorf("%s: error %v is not ErrInvalid", name, err)
		}
	}
	big := bytes.Repeat([]byte(" "), MaxFileSize+1)
	if _, err := Parse(bytes.NewReader(big)); !errors.Is(err, ErrInvalid) {
		t.Errorf("oversized file: err = %v", err)
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	b, err := ParseFile(filepath.Join("testdata", "small-2.0.bmap"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// bmaptool wrote this file; writing the same map must give its bytes.
	if want := readFile(t, filepath.Join("testdata", "small-2.0.bmap")); !bytes.Equal(out, want) {
		t.Fatalf("Marshal differs from bmaptool's file:\n%s\nwant:\n%s", out, want)
	}
	again, err := ParseBytes(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Ranges) != len(b.Ranges) || again.FileChecksum != b.FileChecksum {
		t.Fatalf("round trip changed the map")
	}
}

func TestGenerateMatchesBmaptoolCreate(t *testing.T) {
	testimage.Need(t, "bmaptool")
	img := smallImage(t)
	theirs := filepath.Join(t.TempDir(), "theirs.bmap")
	testimage.Run(t, "bmaptool", "create", "-o", theirs, img)
	b, err := Generate(context.Background(), img, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ours, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if want := readFile(t, theirs); !bytes.Equal(ours, want) {
		t.Fatalf("Generate+Marshal differs from bmaptool create:\n%s\nwant:\n%s", ours, want)
	}
}

// TestBmaptoolCopyAcceptsOurs writes an image with extra mapped ranges over
// holes and a target full of garbage, and checks bmaptool copy with our map
// writes every mapped byte (the extra ranges as zeros).
func TestBmaptoolCopyAcceptsOurs(t *testing.T) {
	testimage.Need(t, "bmaptool")
	img := smallImage(t)
	extra := []Range{{Off: 100000, Len: 10}, {Off: 150000, Len: 20000}}
	b, err := Generate(context.Background(), img, extra, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bm := filepath.Join(dir, "ours.bmap")
	data, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bm, data, 0o644); err != nil {
		t.Fatal(err)
	}
	// A loop device over garbage shows which blocks bmaptool wrote; a
	// regular-file destination would be truncated by bmaptool first.
	backing := filepath.Join(dir, "card")
	if err := os.WriteFile(backing, bytes.Repeat([]byte{0xA5}, 204800), 0o644); err != nil {
		t.Fatal(err)
	}
	target := loopDevice(t, backing)
	testimage.Run(t, "bmaptool", "copy", "--bmap", bm, img, target)
	want, got := readFile(t, img), readFile(t, backing)
	for _, r := range b.Ranges {
		br := b.ByteRange(r)
		if !bytes.Equal(want[br.Off:br.End()], got[br.Off:br.End()]) {
			t.Fatalf("blocks %d-%d differ after bmaptool copy", r.First, r.Last)
		}
	}
	// The extra ranges were holes: they must now be zero on the target.
	for _, e := range extra {
		if !bytes.Equal(got[e.Off:e.End()], make([]byte, e.Len)) {
			t.Fatalf("extra range %+v not written as zeros", e)
		}
	}
	// An unmapped block keeps the garbage (bmaptool did not write it).
	if got[40000] != 0xA5 {
		t.Fatalf("unmapped byte was written")
	}
	// bmaptool refuses a map whose data checksum does not match the image.
	b.Ranges[1].Checksum = strings.Repeat("0", 64)
	data, _ = b.Marshal()
	os.WriteFile(bm, data, 0o644)
	if out, err := exec.Command("bmaptool", "copy", "--bmap", bm, img, filepath.Join(dir, "out")).CombinedOutput(); err == nil {
		t.Fatalf("bmaptool accepted a wrong range checksum:\n%s", out)
	}
}

func TestFromRanges(t *testing.T) {
	b, err := FromRanges(10000, 4096, []Range{{Off: 5000, Len: 10}, {Off: 0, Len: 1}, {Off: 4095, Len: 2}, {Off: 9999, Len: 100}, {Off: 20000, Len: 5}, {Off: 3, Len: 0}})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Ranges) != 1 || b.Ranges[0].First != 0 || b.Ranges[0].Last != 2 || b.MappedBlocksCount != 3 || b.BlocksCount != 3 {
		t.Fatalf("got %+v", b)
	}
	if got := b.MappedBytes(); got != 10000 {
		t.Fatalf("MappedBytes = %d", got)
	}
}

func TestGenerateWholeFileHash(t *testing.T) {
	img := smallImage(t)
	b, err := Generate(context.Background(), img, []Range{{Off: 0, Len: smallSize}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Ranges) != 1 || b.MappedBlocksCount != b.BlocksCount {
		t.Fatalf("ranges = %+v", b.Ranges)
	}
	sum := sha256.Sum256(readFile(t, img))
	if b.Ranges[0].Checksum != hex.EncodeToString(sum[:]) {
		t.Fatalf("checksum of the whole image is wrong")
	}
}

// loopDevice attaches a loop device to path for the test, skipping when
// loop devices are unavailable (not root, no /dev/loop-control).
func loopDevice(t *testing.T, path string) string {
	t.Helper()
	testimage.Need(t, "losetup")
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	out, err := exec.Command("losetup", "-f", "--show", path).Output()
	if err != nil {
		t.Skipf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

// TestAdd keeps a map's own ranges and checksums and adds only the blocks
// the extra ranges touch outside them.
func TestAdd(t *testing.T) {
	b := &Bmap{ImageSize: 100 * 4096, BlockSize: 4096, BlocksCount: 100, MappedBlocksCount: 6,
		Ranges: []BlockRange{{First: 10, Last: 12, Checksum: "a"}, {First: 20, Last: 22, Checksum: "b"}}}
	added, err := b.Add([]Range{{Off: 0, Len: 4096}, {Off: 11 * 4096, Len: 11 * 4096}, {Off: 99*4096 + 5, Len: 1}})
	if err != nil {
		t.Fatal(err)
	}
	want := []BlockRange{{First: 0, Last: 0}, {First: 10, Last: 12, Checksum: "a"}, {First: 13, Last: 19},
		{First: 20, Last: 22, Checksum: "b"}, {First: 99, Last: 99}}
	if added != 9 || b.MappedBlocksCount != 15 || fmt.Sprint(b.Ranges) != fmt.Sprint(want) {
		t.Fatalf("added %d, mapped %d, ranges %v; want 9, 15, %v", added, b.MappedBlocksCount, b.Ranges, want)
	}
	if added, _ := b.Add([]Range{{Off: 10 * 4096, Len: 4096}}); added != 0 {
		t.Fatalf("re-adding mapped blocks added %d", added)
	}
}
