package fat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/fs"
)

// Crafted corruptions of a populated image. go-diskfs follows cluster chains
// without bound and trusts every size, so these are handled before it is
// involved: bad boot sectors are refused at Open, loops and cross-links make
// the affected reads fail with ErrCorrupt and every change be refused.

func corruptBase(t *testing.T, sel int) (*fuzzBase, *memDev) {
	b := fuzzBases(t)[sel]
	return b, b.dev.fork()
}

func setFAT(d *memDev, g *geometry, c, v uint32) {
	for k := int64(0); k < g.numFATs; k++ {
		off := g.fatOffset + k*g.fatBytes
		switch g.bits {
		case 16:
			d.WriteAt(binary.LittleEndian.AppendUint16(nil, uint16(v)), off+2*int64(c))
		case 32:
			d.WriteAt(binary.LittleEndian.AppendUint32(nil, v), off+4*int64(c))
		default:
			b := make([]byte, 2)
			o := off + int64(c) + int64(c)/2
			d.ReadAt(b, o)
			if c&1 == 1 {
				b[0] = b[0]&0x0F | byte(v<<4)
				b[1] = byte(v >> 4)
			} else {
				b[0] = byte(v)
				b[1] = b[1]&0xF0 | byte(v>>8)
			}
			d.WriteAt(b, o)
		}
	}
}

func TestBootSectorValidation(t *testing.T) {
	for sel, name := range []string{"fat12", "fat16", "fat32"} {
		b := fuzzBases(t)[sel]
		for _, c := range []struct {
			what string
			off  int64
			val  []byte
		}{
			{"no signature", 510, []byte{0, 0}},
			{"256-byte sectors", 11, []byte{0, 1}},
			{"8 KiB sectors", 11, []byte{0, 0x20}},
			{"3 sectors per cluster", 13, []byte{3}},
			{"0 sectors per cluster", 13, []byte{0}},
			{"no reserved sectors", 14, []byte{0, 0}},
			{"3 FATs", 16, []byte{3}},
			{"0 FATs", 16, []byte{0}},
			{"bad media", 21, []byte{0x12}},
			{"larger than the device", 32, []byte{0xff, 0xff, 0xff, 0x7f}},
		} {
			d := b.dev.fork()
			if c.off == 32 {
				d.WriteAt([]byte{0, 0}, 19)
			}
			d.WriteAt(c.val, c.off)
			if _, err := Open(d, fs.Options{}); !errors.Is(err, fs.ErrCorrupt) {
				t.Errorf("%s %s: Open = %v, want ErrCorrupt", name, c.what, err)
			}
		}
		// FAT too small for the clusters.
		d := b.dev.fork()
		if b.g.bits == 32 {
			d.WriteAt([]byte{1, 0, 0, 0}, 36)
		} else {
			d.WriteAt([]byte{1, 0}, 22)
		}
		if _, err := Open(d, fs.Options{}); !errors.Is(err, fs.ErrCorrupt) {
			t.Errorf("%s tiny FAT: %v", name, err)
		}
	}
	if _, err := Open(newMemDev(100), fs.Options{}); !errors.Is(err, fs.ErrCorrupt) {
		t.Errorf("100-byte device: %v", err)
	}
}

// TestChainLoops: a file whose chain loops back on itself, a directory
// whose chain loops, and two files sharing clusters.
func TestChainLoops(t *testing.T) {
	for sel := range fuzzBases(t) {
		b, d := corruptBase(t, sel)
		setFAT(d, b.g, b.big+1, b.big) // /dir/sub/big: c -> c+1 -> c
		setFAT(d, b.g, b.dir, b.dir)   // /dir points to itself
		f, err := Open(d, fs.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.ReadFile("/dir/sub/big"); !errors.Is(err, fs.ErrCorrupt) {
			t.Errorf("%s: ReadFile of a looping chain = %v", f.Type(), err)
		}
		if _, err := f.ReadDir("/dir"); !errors.Is(err, fs.ErrCorrupt) {
			t.Errorf("%s: ReadDir of a looping directory = %v", f.Type(), err)
		}
		if got, err := f.ReadFile("/a.txt"); err != nil || string(got) != "x" {
			t.Errorf("%s: unaffected file: %q %v", f.Type(), got, err)
		}
		err = f.WriteFile("/new", strings.NewReader("x"), fs.Attr{})
		if !errors.Is(err, fs.ErrCorrupt) || !strings.Contains(err.Error(), "loops") {
			t.Errorf("%s: write to a looping FAT = %v", f.Type(), err)
		}

		b, d = corruptBase(t, sel)
		setFAT(d, b.g, b.big+2, b.big+1) // cross-link: big+1 now has two predecessors
		f, err = Open(d, fs.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Remove("/a.txt"); !errors.Is(err, fs.ErrCorrupt) || !strings.Contains(err.Error(), "cross-linked") {
			t.Errorf("%s: remove on a cross-linked FAT = %v", f.Type(), err)
		}
	}
}

// TestBadEntries: entries that claim more than their chain holds, point
// outside the volume, or have names no path can reach.
func TestBadEntries(t *testing.T) {
	for sel := range fuzzBases(t) {
		_, d := corruptBase(t, sel)
		f, _ := Open(d, fs.Options{})
		r, _ := f.resolve("/a.txt")
		slot := func(e *dirent, p *dirData) int64 {
			if p.ref.fixed {
				return f.g.rootOffset + int64(e.slot)*32
			}
			off := int64(e.slot) * 32
			return f.g.clusterOffset(p.clusters[off/f.g.bytesPerCluster]) + off%f.g.bytesPerCluster
		}
		at := slot(r.e, r.parent)
		d.WriteAt([]byte{0, 0, 0, 0x40}, at+28) // 1 GiB
		f, _ = Open(d, fs.Options{})
		if _, err := f.ReadFile("/a.txt"); !errors.Is(err, fs.ErrCorrupt) {
			t.Errorf("oversized file: %v", err)
		}
		d.WriteAt([]byte{1, 0, 0, 0}, at+28)
		d.WriteAt([]byte{0xff, 0xff}, at+26) // cluster past the end
		d.WriteAt([]byte{0xff, 0x0f}, at+20)
		f, _ = Open(d, fs.Options{})
		if _, err := f.Open("/a.txt"); !errors.Is(err, fs.ErrCorrupt) {
			t.Errorf("cluster out of range: %v", err)
		}
		// A long name with "/" in it is not listed.
		r, _ = f.resolve("/ÄÖÜ long.txt")
		lfn := slot(r.e, r.parent) - 32
		d.WriteAt([]byte{'/', 0}, lfn+1)
		f, _ = Open(d, fs.Options{})
		ents, err := f.ReadDir("/")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.Contains(e.Name, "/") {
				t.Errorf("listed %q", e.Name)
			}
		}
		// Still writable: the bad entries are kept as they are.
		if err := f.WriteFile("/fine", bytes.NewReader([]byte("ok")), fs.Attr{}); err != nil {
			t.Errorf("write next to bad entries: %v", err)
		}
	}
}

// TestSharedClusters: entries that share clusters with another entry, or
// start in the middle of another file's chain (found by FuzzOpen: removing
// such an entry freed the tail of another file). The FAT alone looks fine;
// the tree check before the first change refuses to touch the volume.
func TestSharedClusters(t *testing.T) {
	for sel := range fuzzBases(t) {
		for _, c := range []struct {
			what   string
			target func(b *fuzzBase) uint32
			want   string
		}{
			{"file on a directory's cluster", func(b *fuzzBase) uint32 { return b.dir }, "share"},
			{"file inside another chain", func(b *fuzzBase) uint32 { return b.big + 1 }, "middle"},
		} {
			b, d := corruptBase(t, sel)
			f, _ := Open(d, fs.Options{})
			r, _ := f.resolve("/a.txt")
			at := f.g.rootOffset + int64(r.e.slot)*32
			if !r.parent.ref.fixed {
				at = f.g.clusterOffset(r.parent.clusters[0]) + int64(r.e.slot)*32
			}
			v := c.target(b)
			d.WriteAt([]byte{byte(v), byte(v >> 8)}, at+26)
			d.WriteAt([]byte{byte(v >> 16), byte(v >> 24)}, at+20)
			f, _ = Open(d, fs.Options{})
			before, _ := f.Usage()
			err := f.Remove("/a.txt")
			if !errors.Is(err, fs.ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s %s: Remove = %v", f.Type(), c.what, err)
			}
			if after, _ := f.Usage(); after != before {
				t.Errorf("%s %s: usage changed", f.Type(), c.what)
			}
			if got, err := f.ReadFile("/dir/sub/big"); err != nil || len(got) != 3*int(f.g.bytesPerCluster)+7 {
				t.Errorf("%s %s: other file damaged: %v", f.Type(), c.what, err)
			}
		}
	}
}
