package ext4

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
)

// sparseDev is an in-memory device of any size: the base image, then
// zeros, with writes kept in 4 KiB pages.
type sparseDev struct {
	base  []byte
	pages map[int64][]byte
	size  int64
}

const sparsePage = 4096

func newSparseDev(base []byte, size int64) *sparseDev {
	return &sparseDev{base: base, pages: map[int64][]byte{}, size: size}
}

func (d *sparseDev) Size() int64 { return d.size }

func (d *sparseDev) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= d.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && off < d.size {
		pg, in := off/sparsePage, off%sparsePage
		c := int(min(int64(len(p)-n), sparsePage-in, d.size-off))
		switch b, ok := d.pages[pg]; {
		case ok:
			copy(p[n:n+c], b[in:])
		case off < int64(len(d.base)):
			m := copy(p[n:n+c], d.base[off:])
			clear(p[n+m : n+c])
		default:
			clear(p[n : n+c])
		}
		n += c
		off += int64(c)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (d *sparseDev) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > d.size {
		return 0, io.ErrShortWrite
	}
	n := 0
	for n < len(p) {
		pg, in := off/sparsePage, off%sparsePage
		b, ok := d.pages[pg]
		if !ok {
			b = make([]byte, sparsePage)
			d.ReadAt(b, pg*sparsePage)
			d.pages[pg] = b
		}
		c := copy(b[in:], p[n:])
		n += c
		off += int64(c)
	}
	return n, nil
}

func checkExtents(t *testing.T, what string, ext []fs.Extent, size int64) {
	for i, e := range ext {
		if e.Len <= 0 || e.Off < 0 || e.End() > size || (i > 0 && e.Off <= ext[i-1].End()) {
			t.Fatalf("%s: extent %d %+v not sorted, merged and inside the %d-byte device", what, i, e, size)
		}
	}
}

// FuzzUsedExtents lists the used ranges of mutated images: errors are
// fine, panics, hangs and malformed lists are not.
func FuzzUsedExtents(f *testing.F) {
	fuzzMutated(f, fs.Options{ReadOnly: true}, func(t *testing.T, fsys *FS, img []byte) {
		if ext, err := fsys.UsedExtents(); err == nil {
			checkExtents(t, "UsedExtents", ext, int64(len(img)))
		}
	})
}

// FuzzGrow grows mutated images (the last input byte picks the new size,
// up to 40 MiB, i.e. several new 8 MiB groups). Grow may refuse; when it
// succeeds the result must open, read and list its used ranges.
func FuzzGrow(f *testing.F) {
	for i := range fuzzBases {
		for _, sz := range []byte{0, 3, 40, 255} {
			f.Add([]byte{byte(i), sz})
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if os.Getenv("FUZZ_WATCHDOG") != "" {
			tm := time.AfterFunc(3*time.Second, func() { panic("slow input") })
			defer tm.Stop()
		}
		if len(data) < 2 {
			return
		}
		img, _ := applyPatches(fuzzBasesOrSkip(t), data[:len(data)-1])
		size := int64(len(img)) + int64(data[len(data)-1])*160<<10
		dev := newSparseDev(img, size)
		if err := Grow(dev, 0, GrowOptions{}); err != nil {
			return
		}
		fsys, err := open(dev, fs.Options{ReadOnly: true}, true)
		if err != nil {
			t.Fatalf("Grow succeeded but the result does not open: %v", err)
		}
		walkAll(fsys)
		if ext, err := fsys.UsedExtents(); err == nil {
			checkExtents(t, "UsedExtents after Grow", ext, size)
		}
	})
}

// TestGrowFuzzBases grows the unmutated fuzz bases (Format output at 1 KiB
// blocks, with and without checksums and resize inode) and checks them
// with e2fsck.
func TestGrowFuzzBases(t *testing.T) {
	needTools(t)
	for i, base := range fuzzBasesOrSkip(t) {
		img := t.TempDir() + "/base.img"
		must(t, os.WriteFile(img, base.img, 0o644))
		if err := growImage(t, img, 40<<20); err != nil {
			t.Fatalf("base %d: %v", i, err)
		}
		fsck(t, img)
	}
}
