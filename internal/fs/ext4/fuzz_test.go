package ext4

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
)

// memDevice is an in-memory fs.Device.
type memDevice struct{ b []byte }

func (m *memDevice) Size() int64 { return int64(len(m.b)) }

func (m *memDevice) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memDevice) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, errors.New("write outside device")
	}
	return copy(m.b[off:], p), nil
}

// Fuzzing mutates small images built here with Format and the writer (no
// external tools), one per flavour: ext4 with checksums and htree, a
// block-mapped ext2-style filesystem, and 32-bit uninit_bg.
var fuzzBases = []struct {
	size     int64
	features []string
}{
	{256 << 10, nil},
	{256 << 10, []string{"ext_attr", "resize_inode", "dir_index", "filetype", "sparse_super", "large_file"}},
	{256 << 10, []string{"^64bit", "^metadata_csum", "+uninit_bg", "^resize_inode"}},
}

var (
	fuzzBaseOnce   sync.Once
	fuzzBaseImages []fuzzBase
	fuzzBaseErr    error
)

func buildFuzzBase(size int64, features []string) ([]byte, error) {
	dev := &memDevice{b: make([]byte, size)}
	if err := Format(dev, FormatParams{BlockSize: 1024, InodeRatio: 2048, UUID: [16]byte{0xf, 0x22}, Time: testTime, Features: features}); err != nil {
		return nil, err
	}
	f, err := Open(dev, fs.Options{DefaultTime: testTime})
	if err != nil {
		return nil, err
	}
	step := func(err error) {
		if err != nil && fuzzBaseErr == nil {
			fuzzBaseErr = err
		}
	}
	step(f.MkdirAll("/etc/ssh", fs.Attr{Mode: 0o755}))
	for i := 0; i < 70; i++ {
		step(f.WriteFile(fmt.Sprintf("/etc/config-file-%02d.conf", i), strings.NewReader(strconv.Itoa(i)), fs.Attr{Mode: 0o644}))
	}
	step(f.WriteFile("/bin-sh", bytes.NewReader(patternBytes(20<<10, 1)), fs.Attr{Mode: 0o755}))
	step(f.Symlink("/etc/ssh", "/fast", fs.Attr{}))
	step(f.Symlink(strings.Repeat("s/", 40), "/slow", fs.Attr{}))
	step(f.Mknod("/null", iofs.ModeDevice|iofs.ModeCharDevice|0o666, mkdev(1, 3), fs.Attr{}))
	step(f.Mknod("/pipe", iofs.ModeNamedPipe|0o600, 0, fs.Attr{}))
	step(f.Link("/bin-sh", "/etc/ssh/hard"))
	for i := 0; i < 12; i++ {
		step(f.WriteFile(fmt.Sprintf("/etc/ssh/k%d", i), strings.NewReader("k"), fs.Attr{Mode: 0o600}))
	}
	step(f.Close())
	f, err = Open(dev, fs.Options{DefaultTime: testTime})
	if err != nil {
		return nil, err
	}
	for i := 0; i < 12; i += 2 {
		step(f.Remove(fmt.Sprintf("/etc/ssh/k%d", i)))
	}
	step(f.Close())
	f, err = Open(dev, fs.Options{DefaultTime: testTime})
	if err != nil {
		return nil, err
	}
	step(f.WriteFile("/frag", bytes.NewReader(patternBytes(14<<10, 2)), fs.Attr{Mode: 0o644}))
	step(f.Close())
	return dev.b, fuzzBaseErr
}

func fuzzBasesOrSkip(t testing.TB) []fuzzBase {
	fuzzBaseOnce.Do(func() {
		for _, b := range fuzzBases {
			img, err := buildFuzzBase(b.size, b.features)
			if err != nil {
				fuzzBaseErr = err
				return
			}
			fuzzBaseImages = append(fuzzBaseImages, fuzzBase{img: img, hot: hotBlocks(img), bs: 1024})
		}
	})
	if fuzzBaseErr != nil {
		t.Fatalf("building fuzz base images: %v", fuzzBaseErr)
	}
	return fuzzBaseImages
}

// hotBlocks lists the metadata blocks of a base image (superblock,
// descriptors, bitmaps, used inode table blocks, directory, extent and
// indirect blocks), where mutations are most interesting.
func hotBlocks(img []byte) []uint64 {
	f, err := open(&memDevice{b: img}, fs.Options{ReadOnly: true}, true)
	if err != nil {
		return nil
	}
	seen := map[uint64]bool{}
	var out []uint64
	add := func(b uint64) {
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	add(uint64(superblockOffset / f.blockSize))
	add(f.gdtStart())
	for g := uint32(0); g < f.groups; g++ {
		d, _ := f.desc(g)
		add(d.blockBitmap)
		add(d.inodeBitmap)
	}
	for ino := uint32(1); ino <= f.sb.inodesCount; ino++ {
		in, err := f.readInode(ino)
		if err != nil || in.mode() == 0 {
			continue
		}
		blk, _, _ := f.inodeLocation(ino)
		add(blk)
		if !in.isDir() && ino != 7 {
			if m, err := f.readMap(in); err == nil {
				for _, b := range m.meta {
					add(b)
				}
			}
			continue
		}
		if m, err := f.readMap(in); err == nil {
			for _, b := range m.meta {
				add(b)
			}
			for _, r := range m.runs {
				for i := uint64(0); i < r.length && i < 8; i++ {
					add(r.phys + i)
				}
			}
		}
	}
	return out
}

type fuzzBase struct {
	img []byte
	hot []uint64
	bs  int
}

// applyPatches decodes the fuzz input: byte 0 picks the base image (bit 7
// turns checksum verification off), then records of {metadata block
// index, 2-byte offset in the block, length, bytes} overwrite the image.
func applyPatches(bases []fuzzBase, data []byte) ([]byte, bool) {
	if len(data) == 0 {
		return nil, false
	}
	base := bases[int(data[0]&0x7f)%len(bases)]
	verify := data[0]&0x80 == 0
	img := append([]byte(nil), base.img...)
	p := data[1:]
	for len(p) >= 4 {
		blk := base.hot[int(p[0])%len(base.hot)]
		off := int(blk)*base.bs + (int(p[1])|int(p[2])<<8)%base.bs
		n := int(p[3])%32 + 1
		p = p[4:]
		if n > len(p) {
			n = len(p)
		}
		if off < len(img) {
			copy(img[off:], p[:n])
		}
		p = p[n:]
	}
	return img, verify
}

// walkAll reads everything reachable from the root: directories, files,
// links and attributes, with bounded effort.
func walkAll(f *FS) {
	budget := 2000
	var walk func(dir string, depth int)
	walk = func(dir string, depth int) {
		if depth > 20 || budget <= 0 {
			return
		}
		ents, err := f.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range ents {
			budget--
			if budget <= 0 {
				return
			}
			p := fs.Join(dir, e.Name)
			f.Lstat(p)
			f.ListXattrs(p)
			switch {
			case e.IsDir():
				walk(p, depth+1)
			case e.Mode&iofs.ModeSymlink != 0:
				f.ReadLink(p)
				f.Stat(p)
			case e.IsRegular():
				if fl, err := f.Open(p); err == nil {
					buf := make([]byte, 4096)
					fl.ReadAt(buf, 0)
					fl.ReadAt(buf, fl.Size()/2)
					fl.Close()
				}
				if e.Size < 1<<20 {
					f.ReadFile(p)
				}
			}
		}
	}
	walk("/", 0)
	f.Usage()
}

// fuzzMutated runs check on each mutated base image (applyPatches) that
// opens with opts: the harness FuzzOpen, FuzzWrite and FuzzUsedExtents
// share. FUZZ_WATCHDOG=1 turns a slow input into a crash.
func fuzzMutated(f *testing.F, opts fs.Options, check func(t *testing.T, fsys *FS, img []byte)) {
	for i := range fuzzBases {
		f.Add([]byte{byte(i)})
		f.Add([]byte{byte(i) | 0x80})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if os.Getenv("FUZZ_WATCHDOG") != "" {
			tm := time.AfterFunc(3*time.Second, func() { panic("slow input") })
			defer tm.Stop()
		}
		img, verify := applyPatches(fuzzBasesOrSkip(t), data)
		if img == nil {
			return
		}
		fsys, err := open(&memDevice{b: img}, opts, verify)
		if err != nil {
			return
		}
		check(t, fsys, img)
	})
}

// FuzzOpen opens mutated images and reads everything in them. Nothing may
// panic, hang or allocate without bound; errors are fine.
func FuzzOpen(f *testing.F) {
	fuzzMutated(f, fs.Options{ReadOnly: true}, func(t *testing.T, fsys *FS, _ []byte) {
		walkAll(fsys)
		fsys.Close()
	})
}

// FuzzWrite changes mutated images. Writes to a corrupt image may fail or
// even produce a corrupt result, but must never panic or hang.
func FuzzWrite(f *testing.F) {
	fuzzMutated(f, fs.Options{DefaultTime: testTime}, func(t *testing.T, fsys *FS, img []byte) {
		a := fs.Attr{Mode: 0o644}
		fsys.WriteFile("/etc/new.conf", strings.NewReader("new"), a)
		fsys.WriteFile("/etc/config-file-03.conf", bytes.NewReader(patternBytes(3000, 3)), a)
		fsys.MkdirAll("/a/b/c", a)
		fsys.Symlink("/etc", "/a/link", a)
		fsys.Remove("/etc/config-file-07.conf")
		fsys.Remove("/frag")
		fsys.Rename("/etc/ssh", "/a/ssh")
		fsys.Link("/bin-sh", "/a/sh")
		fsys.Chmod("/bin-sh", 0o700)
		fsys.Remove("/etc/ssh/hard")
		fsys.Close()
		// Whatever was written must still be readable without panics.
		if again, err := open(&memDevice{b: img}, fs.Options{ReadOnly: true}, false); err == nil {
			walkAll(again)
		}
	})
}

// TestFuzzBasesAreClean checks the fuzzing base images with e2fsck, which
// also exercises Format and the writer at 1K blocks on tiny filesystems.
func TestFuzzBasesAreClean(t *testing.T) {
	needTools(t)
	for i, base := range fuzzBasesOrSkip(t) {
		b := base.img
		if len(base.hot) < 10 {
			t.Fatalf("base %d: only %d metadata blocks found", i, len(base.hot))
		}
		img := filepath.Join(t.TempDir(), fmt.Sprintf("base%d.img", i))
		os.WriteFile(img, b, 0o644)
		fsck(t, img)
		f, err := open(&memDevice{b: b}, fs.Options{ReadOnly: true}, true)
		if err != nil {
			t.Fatal(err)
		}
		if ents, err := f.ReadDir("/etc"); err != nil || len(ents) != 71 {
			t.Fatalf("base %d: /etc has %d entries, %v", i, len(ents), err)
		}
	}
}
