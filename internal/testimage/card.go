package testimage

import (
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/bakeryhq/bakery/internal/fs"
)

// Helpers for checking what flashing has to write: an image made sparse
// like a downloaded .img, its data ranges as SEEK_DATA reports them (what
// bmaptool maps), and a "reused card" full of old bytes into which only
// chosen ranges of the image are copied.

// MakeSparse punches holes into every all-zero block of path
// (fallocate --dig-holes), as cp --sparse=always would leave it.
func MakeSparse(t testing.TB, path string) {
	t.Helper()
	Need(t, "fallocate")
	Run(t, "fallocate", "--dig-holes", path)
}

// DataRanges lists the byte ranges of path that are not holes (SEEK_DATA /
// SEEK_HOLE), sorted.
func DataRanges(t testing.TB, path string) []fs.Extent {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	const seekData, seekHole = 3, 4
	var out []fs.Extent
	for off := int64(0); off < st.Size(); {
		data, err := fh.Seek(off, seekData)
		if err != nil {
			break // ENXIO: nothing but a hole up to the end
		}
		hole, err := fh.Seek(data, seekHole)
		if err != nil {
			hole = st.Size()
		}
		out = append(out, fs.Extent{Off: data, Len: hole - data})
		off = hole
	}
	return out
}

// ReusedCard makes a file as large as img filled with pseudo-random bytes
// (seeded, so reproducible), standing for an SD card that held something
// else, and copies only the given ranges of img into it. It returns the
// card's path.
func ReusedCard(t testing.TB, img string, ranges []fs.Extent, seed uint64) string {
	t.Helper()
	src, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		t.Fatal(err)
	}
	card := filepath.Join(t.TempDir(), "card.img")
	dst, err := os.Create(card)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	rng := rand.NewChaCha8(key)
	buf := make([]byte, 4<<20)
	for off := int64(0); off < st.Size(); off += int64(len(buf)) {
		n := min(int64(len(buf)), st.Size()-off)
		rng.Read(buf[:n])
		if _, err := dst.WriteAt(buf[:n], off); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range ranges {
		for off := r.Off; off < r.Off+r.Len && off < st.Size(); {
			n := min(int64(len(buf)), r.Off+r.Len-off, st.Size()-off)
			if _, err := src.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			if _, err := dst.WriteAt(buf[:n], off); err != nil {
				t.Fatal(err)
			}
			off += n
		}
	}
	return card
}

// fileDevice is an image file as an fs.Device (unbuffered).
type fileDevice struct{ *os.File }

func (d fileDevice) Size() int64 {
	fi, err := d.Stat()
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Device opens an image file read-write as an fs.Device for the
// filesystem packages; it is closed when the test ends.
func Device(t testing.TB, path string) fs.Device {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return fileDevice{f}
}
