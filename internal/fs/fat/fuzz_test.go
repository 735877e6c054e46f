package fat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/bakeryhq/bakery/internal/fs"
)

// In tests every panic we recover is a bug: re-raise it so it fails loudly
// (and so the fuzzer records it) instead of becoming an ErrCorrupt.
func init() { panicHook = func(r any) { panic(r) } }

// memDev is a sparse, copy-on-write in-memory device: a frozen base image
// shared by all fuzz runs plus private pages.
type memDev struct {
	mu    sync.Mutex
	base  map[int64][]byte
	pages map[int64][]byte
	size  int64
}

const memPage = 4096

func newMemDev(size int64) *memDev {
	return &memDev{base: map[int64][]byte{}, pages: map[int64][]byte{}, size: size}
}

func (m *memDev) Size() int64 { return m.size }

func (m *memDev) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= m.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > m.size-off {
		p, eof = p[:m.size-off], io.EOF
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for done := 0; done < len(p); {
		pos := off + int64(done)
		i, in := pos/memPage, int(pos%memPage)
		n := min(memPage-in, len(p)-done)
		pg := m.pages[i]
		if pg == nil {
			pg = m.base[i]
		}
		if pg == nil {
			clear(p[done : done+n])
		} else {
			copy(p[done:done+n], pg[in:])
		}
		done += n
	}
	return len(p), eof
}

func (m *memDev) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > m.size || int64(len(p)) > m.size-off {
		return 0, fmt.Errorf("write of %d at %d outside %d", len(p), off, m.size)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for done := 0; done < len(p); {
		pos := off + int64(done)
		i, in := pos/memPage, int(pos%memPage)
		n := min(memPage-in, len(p)-done)
		pg := m.pages[i]
		if pg == nil {
			pg = make([]byte, memPage)
			copy(pg, m.base[i])
			m.pages[i] = pg
		}
		copy(pg[in:], p[done:done+n])
		done += n
	}
	return len(p), nil
}

// freeze turns the private pages into the base.
func (m *memDev) freeze() {
	for i, pg := range m.pages {
		m.base[i] = pg
	}
	m.pages = map[int64][]byte{}
}

func (m *memDev) fork() *memDev {
	return &memDev{base: m.base, pages: map[int64][]byte{}, size: m.size}
}

// fuzzBase is a populated image of one FAT type.
type fuzzBase struct {
	dev  *memDev
	span int64 // metadata plus the first clusters: where patches land
	g    *geometry
	big  uint32 // first cluster of /dir/sub/big
	dir  uint32 // first cluster of /dir
}

var (
	basesOnce sync.Once
	bases     []*fuzzBase
)

func fuzzBases(t testing.TB) []*fuzzBase {
	basesOnce.Do(func() {
		for _, c := range []struct {
			typ  string
			size int64
		}{{"fat12", 256 << 10}, {"fat16", 5 << 20}, {"fat32", 34 << 20}} {
			m := newMemDev(c.size)
			if err := Format(m, FormatParams{Type: c.typ, Label: "FUZZ", VolumeID: 7, Time: testTime}); err != nil {
				panic(err)
			}
			f, err := Open(m, fs.Options{DefaultTime: testTime})
			if err != nil {
				panic(err)
			}
			must := func(err error) {
				if err != nil {
					panic(err)
				}
			}
			must(f.MkdirAll("/dir/sub", fs.Attr{}))
			must(f.WriteFile("/a.txt", strings.NewReader("x"), fs.Attr{}))
			must(f.WriteFile("/empty", strings.NewReader(""), fs.Attr{}))
			must(f.WriteFile("/ÄÖÜ long.txt", strings.NewReader("umlaut"), fs.Attr{Mode: 0o444}))
			must(f.WriteFile("/dir/sub/big", bytes.NewReader(pattern(3*int(f.g.bytesPerCluster)+7, 1)), fs.Attr{}))
			for i := 0; i < 40; i++ {
				must(f.WriteFile(fmt.Sprintf("/dir/Long File Name %02d.txt", i), bytes.NewReader(pattern(100*i, byte(i))), fs.Attr{}))
			}
			for i := 0; i < 30; i += 3 {
				must(f.Remove(fmt.Sprintf("/dir/Long File Name %02d.txt", i)))
			}
			b := &fuzzBase{dev: m, g: f.g}
			r, _ := f.resolve("/dir/sub/big")
			b.big = r.e.cluster
			r, _ = f.resolve("/dir")
			b.dir = r.e.cluster
			b.span = f.g.dataOffset + 16*f.g.bytesPerCluster
			must(f.Close())
			m.freeze()
			bases = append(bases, b)
		}
	})
	return bases
}

// patch is one fuzz record: offset (mod the base's span) and bytes.
func patch(off uint32, b ...byte) []byte {
	out := binary.LittleEndian.AppendUint32(nil, off)
	out = append(out, byte(len(b)))
	return append(out, b...)
}

func seed(sel byte, patches ...[]byte) []byte {
	out := []byte{sel}
	for _, p := range patches {
		out = append(out, p...)
	}
	return out
}

// FuzzOpen opens a mutated FAT12/16/32 image, walks every directory, reads
// every file, then tries every kind of change. Nothing may panic, loop,
// allocate beyond the device or read outside it; errors must be ours; and
// if the FAT was consistent, it must still be after the changes.
func FuzzOpen(f *testing.F) {
	for sel, b := range fuzzBases(f) {
		s := byte(sel)
		g := b.g
		fatEntry := func(c uint32, v uint32) []byte {
			switch g.bits {
			case 12:
				return nil
			case 16:
				return patch(uint32(g.fatOffset)+2*c, byte(v), byte(v>>8))
			}
			return patch(uint32(g.fatOffset)+4*c, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
		}
		f.Add(seed(s))
		f.Add(seed(s, patch(11, 0, 1)))                                       // 256-byte sectors
		f.Add(seed(s, patch(13, 3)))                                          // 3 sectors per cluster
		f.Add(seed(s, patch(14, 0, 0)))                                       // no reserved sectors
		f.Add(seed(s, patch(16, 7)))                                          // 7 FATs
		f.Add(seed(s, patch(17, 0xff, 0xff)))                                 // huge root directory
		f.Add(seed(s, patch(19, 0xff, 0xff)))                                 // more sectors than the device
		f.Add(seed(s, patch(22, 1, 0)))                                       // tiny FAT
		f.Add(seed(s, patch(36, 0xff, 0xff, 0, 0), patch(44, 0x40, 0, 0, 0))) // FAT32 sizes
		f.Add(seed(s, fatEntry(b.big, b.big)))                                // a chain that loops on itself
		f.Add(seed(s, fatEntry(b.big+1, b.big)))                              // cross-linked
		f.Add(seed(s, fatEntry(b.dir, b.dir)))                                // a directory that loops
		f.Add(seed(s, fatEntry(b.big, 0)))                                    // chain runs into a free cluster
		f.Add(seed(s, patch(uint32(g.fatOffset+g.fatBytes)+8, 0x55)))         // FATs differ
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		bs := fuzzBases(t)
		b := bs[int(data[0])%len(bs)]
		dev := b.dev.fork()
		for rest := data[1:]; len(rest) >= 5; {
			off := int64(binary.LittleEndian.Uint32(rest)) % b.span
			n := min(int(rest[4]), len(rest)-5)
			dev.WriteAt(rest[5:5+n], off)
			rest = rest[5+n:]
		}
		exercise(t, dev)
	})
}

func exercise(t *testing.T, dev *memDev) {
	f, err := Open(dev, fs.Options{DefaultTime: testTime})
	if err != nil {
		if !errors.Is(err, fs.ErrCorrupt) {
			t.Fatalf("Open: %v does not wrap ErrCorrupt", err)
		}
		return
	}
	if ext, err := f.UsedExtents(); err != nil {
		t.Fatalf("UsedExtents: %v", err)
	} else {
		for i, e := range ext {
			if e.Len <= 0 || e.Off < 0 || e.End() > dev.Size() || (i > 0 && e.Off <= ext[i-1].End()) {
				t.Fatalf("UsedExtents: extent %d %+v not sorted, merged and inside the device", i, e)
			}
		}
	}
	files, dirs := walk(t, f)
	consistent := f.checkErr == nil
	usage, _ := f.Usage()

	data := pattern(5000, 3)
	var wrote []string
	try := func(what string, err error) {
		if err == nil {
			return
		}
		var pe *iofs.PathError
		if !errors.As(err, &pe) {
			t.Fatalf("%s: error %v is not a PathError", what, err)
		}
		if consistent && !errors.Is(err, fs.ErrCorrupt) && !errors.Is(err, fs.ErrNoSpace) &&
			!errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrNotDir) && !errors.Is(err, fs.ErrIsDir) &&
			!errors.Is(err, fs.ErrNotEmpty) && !errors.Is(err, fs.ErrInvalidPath) {
			t.Fatalf("%s on a consistent FAT: unexpected error %v", what, err)
		}
	}
	for _, p := range []string{"/fuzz new.txt", "/a.txt"} {
		err := f.WriteFile(p, bytes.NewReader(data), fs.Attr{})
		try("WriteFile "+p, err)
		if err == nil {
			wrote = append(wrote, p)
		}
	}
	try("MkdirAll", f.MkdirAll("/fuzzdir/x/y", fs.Attr{}))
	if len(dirs) > 0 {
		p := dirs[len(dirs)-1] + "/Fuzz Ünïcode.txt"
		err := f.WriteFile(p, bytes.NewReader(data), fs.Attr{})
		try("WriteFile "+p, err)
		if err == nil {
			wrote = append(wrote, p)
		}
	}
	if len(files) > 1 {
		try("Remove", f.Remove(files[0]))
		try("Rename", f.Rename(files[1], "/renamed by fuzz"))
		try("Chtimes", f.Chtimes(files[len(files)-1], testTime))
		try("Chmod", f.Chmod(files[len(files)-1], 0o444))
	}
	if len(dirs) > 1 {
		try("Rename dir", f.Rename(dirs[0], dirs[len(dirs)-1]+"/moved"))
		try("Remove dir", f.Remove(dirs[len(dirs)-1]))
	}
	for _, p := range wrote {
		if got, err := f.ReadFile(p); err == nil && !bytes.Equal(got, data) {
			t.Fatalf("%s reads back wrong", p)
		}
	}
	if consistent {
		if err := f.t.analyze(); err != nil {
			t.Fatalf("our changes left the FAT inconsistent: %v", err)
		}
		free := uint32(0)
		for c := uint32(2); c <= f.t.last; c++ {
			if f.t.get(c) == 0 {
				free++
			}
		}
		if free != f.t.free {
			t.Fatalf("free count %d, FAT says %d", f.t.free, free)
		}
	} else if u, _ := f.Usage(); u != usage {
		t.Fatalf("changes on an inconsistent FAT: usage %+v -> %+v", usage, u)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	g, err := Open(dev, fs.Options{})
	if err != nil {
		t.Fatalf("reopen after our changes: %v", err)
	}
	walk(t, g)
}

// walk visits every directory (bounded: directories can form loops in a
// crafted image) and reads every file.
func walk(t *testing.T, f *FS) (files, dirs []string) {
	queue := []string{"/"}
	for n := 0; len(queue) > 0 && n < 300; n++ {
		dir := queue[0]
		queue = queue[1:]
		ents, err := f.ReadDir(dir)
		if err != nil {
			if !errors.Is(err, fs.ErrCorrupt) {
				t.Fatalf("ReadDir %s: %v", dir, err)
			}
			continue
		}
		if len(ents) > 200 {
			ents = ents[:200] // the harness, not the library, is quadratic
		}
		for _, e := range ents {
			if !utf8.ValidString(e.Name) || strings.ContainsAny(e.Name, "/\x00") || e.Name == "" {
				t.Fatalf("ReadDir %s lists unusable name %q", dir, e.Name)
			}
			p := fs.Join(dir, e.Name)
			if len(p) > fs.MaxPathLen-300 {
				continue
			}
			if _, err := f.Stat(p); err != nil {
				t.Fatalf("Stat %s listed by ReadDir: %v", p, err)
			}
			if e.IsDir() {
				dirs = append(dirs, p)
				if strings.Count(p, "/") < 12 {
					queue = append(queue, p)
				}
				continue
			}
			files = append(files, p)
			b, err := f.ReadFile(p)
			if err != nil {
				if !errors.Is(err, fs.ErrCorrupt) {
					t.Fatalf("ReadFile %s: %v", p, err)
				}
				continue
			}
			if int64(len(b)) != e.Size {
				t.Fatalf("ReadFile %s: %d bytes, size %d", p, len(b), e.Size)
			}
			h, err := f.Open(p)
			if err != nil {
				t.Fatalf("Open %s after ReadFile: %v", p, err)
			}
			buf := make([]byte, 700)
			for _, off := range []int64{0, e.Size / 2, max(0, e.Size-1)} {
				n, err := h.ReadAt(buf, off)
				if err != nil && err != io.EOF || off < e.Size && !bytes.Equal(buf[:n], b[off:min(e.Size, off+700)]) {
					t.Fatalf("ReadAt %s %d: %d %v", p, off, n, err)
				}
			}
			h.Close()
		}
	}
	return files, dirs
}

// FuzzNames writes, finds, lists, renames and removes files of arbitrary
// names: either the name is refused as ErrInvalidPath, or it round-trips
// exactly and is found under any case.
func FuzzNames(f *testing.F) {
	for _, n := range []string{"a", "README", "config.txt", "Mixed Case.TxT", ".bashrc", "a+b", "a,b",
		"x.tar.gz", "日本語", "ÄÖÜ", "Łódź", "〰〰〰xt", "trailing.", "sp ace", "~1", "LONGFI~1.TXT", "a..b", "...", strings.Repeat("x", 255)} {
		f.Add(n, []byte("data"))
	}
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		if strings.Contains(name, "/") {
			return // a path, not a name
		}
		base := fuzzBases(t)[1]
		dev := base.dev.fork()
		fsys, err := Open(dev, fs.Options{DefaultTime: testTime})
		if err != nil {
			t.Fatal(err)
		}
		u0, _ := fsys.Usage()
		existed := false
		for _, dir := range []string{"/", "/dir"} {
			p := fs.Join(dir, name)
			if _, err := fsys.Stat(p); err == nil {
				existed = true
			}
			clean, cerr := fs.Clean(p)
			err := fsys.WriteFile(p, bytes.NewReader(data), fs.Attr{})
			if cerr != nil || clean != p || checkName(name) != nil {
				if err == nil && (cerr != nil || checkName(fs.Base(clean)) != nil) {
					t.Fatalf("WriteFile %q accepted", p)
				}
				continue
			}
			if err != nil {
				if errors.Is(err, fs.ErrIsDir) || errors.Is(err, fs.ErrNotDir) {
					continue // the name of an existing directory ("dir", "DIR")
				}
				t.Fatalf("WriteFile %q: %v", p, err)
			}
			st, err := fsys.Stat(strings.ToUpper(p))
			if err != nil {
				st, err = fsys.Stat(p)
			}
			if err != nil || st.Size != int64(len(data)) {
				t.Fatalf("Stat %q: %+v %v", p, st, err)
			}
			ents, _ := fsys.ReadDir(dir)
			found := 0
			for _, e := range ents {
				if strings.EqualFold(e.Name, st.Name) {
					found++
				}
			}
			if found != 1 {
				t.Fatalf("%q listed %d times in %s", st.Name, found, dir)
			}
			if got, err := fsys.ReadFile(p); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("ReadFile %q: %v", p, err)
			}
			if err := fsys.Rename(p, fs.Join(dir, "renamed")); err != nil {
				t.Fatalf("Rename %q: %v", p, err)
			}
			if err := fsys.Rename(fs.Join(dir, "renamed"), p); err != nil {
				t.Fatalf("Rename back %q: %v", p, err)
			}
			if err := fsys.Remove(p); err != nil {
				t.Fatalf("Remove %q: %v", p, err)
			}
		}
		if err := fsys.t.analyze(); err != nil {
			t.Fatal(err)
		}
		// Free space may grow (a directory with deleted entries is
		// compacted before go-diskfs rewrites it), never shrink.
		if u, _ := fsys.Usage(); u.FreeBytes < u0.FreeBytes && !existed {
			t.Fatalf("usage %+v -> %+v", u0, u)
		}
	})
}
