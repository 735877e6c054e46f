package fat

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os/exec"
	"sync"
	"testing"

	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fs"
)

// TestOpenGeometries: images mkfs.fat makes with unusual but valid layouts
// (4 KiB sectors, big clusters, one FAT, FAT32 with mirroring off) open with
// the right type, and files written by mtools read back, and ours by mtools.
func TestOpenGeometries(t *testing.T) {
	cases := []image{
		{bits: 12, sizeKB: 1440},
		{bits: 12, sizeKB: 12 << 10, args: []string{"-s", "8"}},
		{bits: 16, sizeKB: 64 << 10, args: []string{"-f", "1"}},
		{bits: 16, sizeKB: 128 << 10, args: []string{"-s", "64"}},
		{bits: 16, sizeKB: 64 << 10, args: []string{"-S", "4096", "-s", "1"}},
		{bits: 32, sizeKB: 300 << 10, args: []string{"-S", "4096"}},
		{bits: 32, sizeKB: 64 << 10, args: []string{"-f", "1"}},
		{bits: 32, sizeKB: 300 << 10, args: []string{"-s", "8", "-R", "8", "-b", "6"}},
	}
	for i, im := range cases {
		t.Run(fmt.Sprintf("%d-%s-%v", i, im, im.args), func(t *testing.T) {
			t.Parallel()
			img := mkfs(t, im)
			run(t, "mmd", "-i", img, "::/from-mtools")
			run(t, "mcopy", "-i", img, writeTemp(t, pattern(12345, 4)), "::/from-mtools/Data File.bin")
			s := open(t, img)
			if s.f.Type() != im.String() {
				t.Fatalf("type %s", s.f.Type())
			}
			if got := s.read("/FROM-MTOOLS/data file.BIN"); !bytes.Equal(got, pattern(12345, 4)) {
				t.Fatal("mtools file reads back wrong")
			}
			s.write("/from-mtools/ours.txt", pattern(40000, 5))
			s.commit()
			checkOracles(t, img, map[string][]byte{"/from-mtools/ours.txt": pattern(40000, 5)})
		})
	}
}

func TestStatAndReadDir(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		s := open(t, img)
		s.mkdir("/d")
		s.write("/d/b", []byte("bb"))
		s.write("/d/a", []byte("a"))
		s.mkdir("/d/c")
		root, err := s.f.Stat("/")
		if err != nil || !root.IsDir() || root.Mode != iofs.ModeDir|0o755 {
			t.Fatalf("Stat / = %+v %v", root, err)
		}
		ents, err := s.f.ReadDir("/d")
		if err != nil || len(ents) != 3 || ents[0].Name != "a" || ents[1].Name != "b" || ents[2].Name != "c" {
			t.Fatalf("ReadDir = %+v %v", ents, err)
		}
		if ents[0].Mode != 0o644 || ents[0].Size != 1 || ents[2].Mode != iofs.ModeDir|0o755 || ents[0].UID != 0 {
			t.Fatalf("modes %+v", ents)
		}
		if ents[0].Ino == ents[1].Ino || ents[0].Ino == 0 {
			t.Fatalf("inode numbers %d %d", ents[0].Ino, ents[1].Ino)
		}
		l, err := s.f.Lstat("/D/B")
		if err != nil || l.Name != "b" || l.Size != 2 {
			t.Fatalf("Lstat = %+v %v", l, err)
		}
		u, err := s.f.Usage()
		if err != nil || u.TotalBytes != int64(s.f.g.clusters)*s.f.g.bytesPerCluster || u.FreeBytes <= 0 || u.TotalInodes != 0 {
			t.Fatalf("Usage = %+v %v", u, err)
		}
		s.discard()
	})
}

func TestErrors(t *testing.T) {
	img := mkfs(t, images[1])
	s := open(t, img)
	defer s.discard()
	s.mkdir("/d")
	s.write("/f", []byte("f"))
	check := func(what string, err, want error) {
		t.Helper()
		var pe *iofs.PathError
		if !errors.Is(err, want) || !errors.As(err, &pe) {
			t.Errorf("%s = %v (%T), want PathError wrapping %v", what, err, err, want)
		}
	}
	_, err := s.f.Stat("/missing")
	check("Stat missing", err, fs.ErrNotExist)
	_, err = s.f.Stat("/f/x")
	check("Stat through file", err, fs.ErrNotDir)
	_, err = s.f.ReadDir("/f")
	check("ReadDir file", err, fs.ErrNotDir)
	_, err = s.f.Open("/d")
	check("Open dir", err, fs.ErrIsDir)
	_, err = s.f.ReadFile("/")
	check("ReadFile /", err, fs.ErrIsDir)
	check("WriteFile dir", s.f.WriteFile("/d", bytes.NewReader(nil), fs.Attr{}), fs.ErrIsDir)
	check("WriteFile no parent", s.f.WriteFile("/x/y", bytes.NewReader(nil), fs.Attr{}), fs.ErrNotExist)
	check("WriteFile relative", s.f.WriteFile("x", bytes.NewReader(nil), fs.Attr{}), fs.ErrInvalidPath)
	check("WriteFile dotdot", s.f.WriteFile("/d/../x", bytes.NewReader(nil), fs.Attr{}), fs.ErrInvalidPath)
	for _, bad := range []string{"/a*b", "/a?", "/a:b", "/a<b", "/a\\b", "/a|b", "/trailing.", "/trailing ", "/ctl\x01", "/\U0001F600.txt"} {
		check("WriteFile "+bad, s.f.WriteFile(bad, bytes.NewReader(nil), fs.Attr{}), fs.ErrInvalidPath)
		check("MkdirAll "+bad, s.f.MkdirAll(bad, fs.Attr{}), fs.ErrInvalidPath)
	}
	check("Remove missing", s.f.Remove("/missing"), fs.ErrNotExist)
	check("Chmod missing", s.f.Chmod("/missing", 0o644), fs.ErrNotExist)
	check("Chtimes missing", s.f.Chtimes("/missing", testTime), fs.ErrNotExist)
	check("Chown 1000", s.f.Chown("/f", 1000, 1000), fs.ErrNotSupported)
	check("Chown missing", s.f.Chown("/missing", 0, 0), fs.ErrNotExist)
	if err := s.f.Chown("/f", 0, 0); err != nil {
		t.Errorf("Chown 0 0 = %v", err)
	}
	check("Symlink", s.f.Symlink("/f", "/l", fs.Attr{}), fs.ErrNotSupported)
	_, err = s.f.ReadLink("/f")
	check("ReadLink", err, fs.ErrNotSupported)
	// A failing source reader fails the write and leaves nothing behind.
	check("WriteFile bad reader", s.f.WriteFile("/r", io.MultiReader(bytes.NewReader(pattern(3<<20, 1)), errReader{}), fs.Attr{}), errBoom)
	if _, err := s.f.Stat("/r"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file of failed write exists: %v", err)
	}
}

var errBoom = errors.New("boom")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBoom }

func TestReadOnlyOption(t *testing.T) {
	img := mkfs(t, images[0])
	d, _ := disk.Open(img, disk.OpenOptions{})
	defer d.Close()
	r, _ := d.Region(0, d.Size())
	f, err := Open(r, fs.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	for what, err := range map[string]error{
		"WriteFile": f.WriteFile("/x", bytes.NewReader(nil), fs.Attr{}),
		"MkdirAll":  f.MkdirAll("/x", fs.Attr{}),
		"Remove":    f.Remove("/x"),
		"Rename":    f.Rename("/x", "/y"),
		"Chmod":     f.Chmod("/", 0),
		"Chtimes":   f.Chtimes("/", testTime),
	} {
		if !errors.Is(err, fs.ErrReadOnly) {
			t.Errorf("%s = %v", what, err)
		}
	}
	if _, err := f.ReadDir("/"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Stat("/"); err == nil {
		t.Fatal("Stat after Close succeeded")
	}
}

// TestConcurrentReads: the netboot TFTP server reads boot files from many
// goroutines while the filesystem may be written. Run with -race.
func TestConcurrentReads(t *testing.T) {
	img := mkfs(t, images[2])
	s := open(t, img)
	files := map[string][]byte{}
	for i := 0; i < 8; i++ {
		p := fmt.Sprintf("/boot%d.bin", i)
		files[p] = pattern(20000+i*1000, byte(i))
		s.write(p, files[p])
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				p := fmt.Sprintf("/boot%d.bin", (g+i)%8)
				f, err := s.f.Open(p)
				if err != nil {
					errs <- err
					return
				}
				got := make([]byte, f.Size())
				// Read in TFTP-sized blocks at offsets, concurrently.
				for off := int64(0); off < f.Size(); off += 512 {
					end := min(off+512, f.Size())
					if _, err := f.ReadAt(got[off:end], off); err != nil && err != io.EOF {
						errs <- err
						return
					}
				}
				f.Close()
				if !bytes.Equal(got, files[p]) {
					errs <- fmt.Errorf("%s read wrong", p)
					return
				}
				if _, err := s.f.ReadDir("/"); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	for i := 0; i < 20; i++ {
		s.write(fmt.Sprintf("/other%d", i), pattern(3000, byte(i)))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s.commit()
	fsck(t, img)
}

// TestOpenFileAfterChange: a handle keeps working while unrelated files
// change and fails (rather than read another file's clusters) once its file
// is replaced or removed.
func TestOpenFileAfterChange(t *testing.T) {
	img := mkfs(t, images[0])
	s := open(t, img)
	defer s.discard()
	s.write("/a", pattern(5000, 1))
	f, err := s.f.Open("/a")
	if err != nil {
		t.Fatal(err)
	}
	s.write("/b", pattern(5000, 2))
	buf := make([]byte, 5000)
	if n, err := f.Read(buf); n != 5000 || err != nil || !bytes.Equal(buf, pattern(5000, 1)) {
		t.Fatalf("read after unrelated write: %d %v", n, err)
	}
	if n, err := f.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read at EOF: %d %v", n, err)
	}
	s.write("/a", pattern(5000, 3))
	if _, err := f.ReadAt(buf, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read after replace = %v", err)
	}
	f.Close()
	if _, err := f.ReadAt(buf, 0); err == nil {
		t.Fatal("read after Close succeeded")
	}
}

// TestNoLogging: go-diskfs uses logrus elsewhere; the FAT packages must
// print nothing. A full session runs with stdout/stderr captured by go test;
// here we just check that the engine packages do not import logrus.
func TestNoLogging(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/bakeryhq/bakery/internal/fs/fat").Output()
	if err != nil {
		t.Skip("go list unavailable:", err)
	}
	if bytes.Contains(out, []byte("logrus")) {
		t.Fatal("internal/fs/fat depends on logrus")
	}
}
