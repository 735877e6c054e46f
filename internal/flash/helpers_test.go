package flash

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/bmap"
	"github.com/bakeryhq/bakery/internal/testimage"
)

// testSize is the size of the synthetic test image: not a multiple of the
// block size, so the last block is partial.
const testSize = 12<<20 - 1000

// testRegions hold data in the synthetic image: one inside the head, one
// straddling the head's end, one across two 1 MiB chunk boundaries and a
// partial last block.
var testRegions = []bmap.Range{
	{Off: 0, Len: 64 << 10},
	{Off: 1<<20 - 8192, Len: 100 << 10},
	{Off: 3<<20 + 4096, Len: 6 << 20},
	{Off: testSize - 5000, Len: 5000},
}

// fill writes deterministic pseudo-random bytes.
func fill(b []byte, seed uint64) {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1}))
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(r.Uint32())
	}
}

// makeImage writes a sparse image with random data in regions.
func makeImage(t testing.TB, dir string, size int64, regions []bmap.Range) string {
	t.Helper()
	path := filepath.Join(dir, "test.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for i, r := range regions {
		b := make([]byte, r.Len)
		fill(b, uint64(i+1))
		if _, err := f.WriteAt(b, r.Off); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// garbage writes size pseudo-random bytes to path, a used card.
func garbage(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	b := make([]byte, size)
	fill(b, seed+1000)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// compressFile compresses with the reference tool, keeping the input.
func compressFile(t testing.TB, path, format string) string {
	t.Helper()
	switch format {
	case "xz":
		testimage.Need(t, "xz")
		testimage.Run(t, "xz", "-k", "-f", "-T1", "-1", path)
	case "zst":
		testimage.Need(t, "zstd")
		testimage.Run(t, "zstd", "-q", "-f", "-k", path, "-o", path+".zst")
	case "gz":
		testimage.Need(t, "gzip")
		testimage.Run(t, "gzip", "-k", "-f", "-1", path)
	default:
		t.Fatalf("unknown format %s", format)
	}
	return path + "." + format
}

// loopDevice attaches a loop device to path for the test (skipping where
// loop devices are unavailable).
func loopDevice(t testing.TB, path string, extra ...string) string {
	t.Helper()
	testimage.Need(t, "losetup")
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	args := append([]string{"-f", "--show"}, extra...)
	out, err := exec.Command("losetup", append(args, path)...).Output()
	if err != nil {
		t.Skipf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

func readAll(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readDevice reads n bytes of a file or device.
func readDevice(t testing.TB, path string, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// checkMapped asserts the target equals the image over every mapped range
// and still holds its old bytes elsewhere when old is given.
func checkMapped(t testing.TB, img string, target string, m *bmap.Bmap, old []byte) {
	t.Helper()
	want := readAll(t, img)
	got := readDevice(t, target, int64(len(want)))
	mapped := make([]bool, len(want))
	for _, r := range m.Ranges {
		br := m.ByteRange(r)
		if !bytes.Equal(want[br.Off:br.End()], got[br.Off:br.End()]) {
			t.Fatalf("%s differs from the image in blocks %d-%d", target, r.First, r.Last)
		}
		for i := br.Off; i < br.End(); i++ {
			mapped[i] = true
		}
	}
	if old == nil {
		return
	}
	for i := int64(HeadSize); i < int64(len(want)); i++ {
		if !mapped[i] && got[i] != old[i] {
			t.Fatalf("%s: unmapped byte %d was written", target, i)
		}
	}
}

// headIsZero reports whether the first MiB of a target is all zeros: the
// "incomplete" marker.
func headIsZero(t testing.TB, target string) bool {
	t.Helper()
	return bytes.Equal(readDevice(t, target, HeadSize), make([]byte, HeadSize))
}

// noExtra stands in for MustMapRanges on synthetic images without
// filesystems.
func noExtra(string) ([]bmap.Range, error) { return nil, nil }

func testOptions() Options {
	return Options{Verify: true, ChunkSize: 1 << 20, Buffers: 4}
}

func openSource(t testing.TB, img string, opts SourceOptions) *Source {
	t.Helper()
	if opts.mustMap == nil {
		opts.mustMap = noExtra
	}
	src, err := OpenSource(context.Background(), img, opts)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func mustOK(t testing.TB, results []Result) {
	t.Helper()
	for _, r := range results {
		if !r.OK {
			t.Fatalf("%s failed: %s", r.Target, r.Error)
		}
		if r.Incomplete {
			t.Fatalf("%s ok but marked incomplete", r.Target)
		}
	}
}
