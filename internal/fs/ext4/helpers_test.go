package ext4

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fs"
)

var testTime = time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range append([]string{"mkfs.ext4", "e2fsck", "debugfs"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (run scripts/ensure-deps.sh test)", tool)
		}
	}
}

func runCmd(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// mkfsOpts describe a reference image made by e2fsprogs.
type mkfsOpts struct {
	size  string   // e.g. "64M"
	args  []string // extra mke2fs arguments (-b 4096, -O ..., -t ext3)
	tree  string   // directory for -d
	index bool     // run e2fsck -fyD afterwards so large directories get indexed
	prog  string   // default mkfs.ext4
}

// makeImage builds a filesystem image with the real mke2fs. Images are
// cached per options for the test binary and copied (sparsely) per test.
func makeImage(t testing.TB, o mkfsOpts) string {
	t.Helper()
	needTools(t)
	key := fmt.Sprintf("%s|%q|%s|%s|%v", o.prog, o.args, o.size, o.tree, o.index)
	cacheMu.Lock()
	cached, ok := imageCache[key]
	if !ok {
		cached = filepath.Join(testDir, fmt.Sprintf("img-%d", len(imageCache)))
		buildImage(t, o, cached)
		imageCache[key] = cached
	}
	cacheMu.Unlock()
	img := filepath.Join(t.TempDir(), "fs.img")
	sparseCopy(t, cached, img)
	return img
}

// sparseCopy copies an image file, leaving all-zero chunks as holes.
func sparseCopy(t testing.TB, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	st, err := src.Stat()
	if err != nil {
		t.Fatal(err)
	}
	size := st.Size()
	buf := make([]byte, 1<<20)
	// Only the data segments (SEEK_DATA/SEEK_HOLE) are read: the cached
	// images are large and mostly holes.
	for seg := int64(0); seg < size; {
		data, err := src.Seek(seg, 3)
		if err != nil {
			break // nothing but a hole to the end
		}
		hole, err := src.Seek(data, 4)
		if err != nil {
			hole = size
		}
		for off := data; off < hole; {
			n, err := src.ReadAt(buf[:min(int64(len(buf)), hole-off)], off)
			if n > 0 && !isZero(buf[:n]) {
				if _, werr := dst.WriteAt(buf[:n], off); werr != nil {
					t.Fatal(werr)
				}
			}
			off += int64(n)
			if err != nil && err != io.EOF {
				t.Fatal(err)
			}
			if n == 0 {
				break
			}
		}
		seg = hole
	}
	if err := dst.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

func buildImage(t testing.TB, o mkfsOpts, img string) {
	prog := o.prog
	if prog == "" {
		prog = "mkfs.ext4"
	}
	args := []string{"-q", "-F", "-E", "root_owner=0:0,nodiscard", "-U", "6b5cbd6e-5f0b-4a39-9d4b-0d7a4c3e2f11", "-L", "testfs"}
	args = append(args, o.args...)
	if o.tree != "" {
		args = append(args, "-d", o.tree)
	}
	args = append(args, img, o.size)
	cmd := exec.Command(prog, args...)
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME=1709294400", "MKE2FS_DETERMINISTIC=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", prog, strings.Join(args, " "), err, out)
	}
	if o.index {
		out, err := exec.Command("e2fsck", "-fyD", img).CombinedOutput()
		if code := exitCode(err); code > 1 {
			t.Fatalf("e2fsck -fyD: %v\n%s", err, out)
		}
	}
}

var (
	testDir    string
	cacheMu    sync.Mutex
	imageCache = map[string]string{}
	treeCache  = map[string]string{}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ext4-test-")
	if err != nil {
		panic(err)
	}
	testDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// fsck runs e2fsck -fn and fails the test on any reported problem,
// including optimisation hints.
func fsck(t testing.TB, img string) {
	t.Helper()
	needTools(t)
	out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
	text := string(out)
	if err != nil || strings.Contains(text, "could be") || strings.Contains(text, "?") {
		t.Fatalf("e2fsck -fn %s: %v\n%s", img, err, text)
	}
}

// openImage opens an image file the way production does: through
// internal/disk with buffered writes.
type openedImage struct {
	t    testing.TB
	path string
	d    *disk.Disk
	fs   *FS
}

func openImage(t testing.TB, img string, opts fs.Options) *openedImage {
	t.Helper()
	d, err := disk.Open(img, disk.OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.Region(0, d.Size())
	if err != nil {
		t.Fatal(err)
	}
	if opts.DefaultTime.IsZero() {
		opts.DefaultTime = testTime
	}
	f, err := Open(r, opts)
	if err != nil {
		d.Close()
		t.Fatalf("Open %s: %v", img, err)
	}
	return &openedImage{t: t, path: img, d: d, fs: f}
}

// commit closes the filesystem and commits the buffered writes.
func (o *openedImage) commit() {
	o.t.Helper()
	if err := o.fs.Close(); err != nil {
		o.t.Fatalf("Close: %v", err)
	}
	if _, err := o.d.Commit(); err != nil {
		o.t.Fatalf("Commit: %v", err)
	}
	if err := o.d.Close(); err != nil {
		o.t.Fatal(err)
	}
}

// discard drops everything written since open.
func (o *openedImage) discard() {
	o.d.Discard()
	o.d.Close()
}

func debugfs(t testing.TB, img, cmd string) string {
	t.Helper()
	needTools(t)
	out, err := exec.Command("debugfs", "-R", cmd, img).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v", cmd, err)
	}
	return string(out)
}

// debugfsCat returns a file's content as e2fsprogs reads it.
func debugfsCat(t testing.TB, img, path string) []byte {
	t.Helper()
	dump := filepath.Join(t.TempDir(), "dump")
	out, err := exec.Command("debugfs", "-R", fmt.Sprintf("dump %s %s", path, dump), img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs dump %s: %v\n%s", path, err, out)
	}
	b, err := os.ReadFile(dump)
	if err != nil {
		t.Fatalf("debugfs dump %s: %v\n%s", path, err, out)
	}
	// debugfs 1.47.0 dumps all 60 bytes of i_block for inline-data files;
	// cut to the inode's size.
	if len(b) == iBlockLen {
		if st := debugfsStat(t, img, path); st.size < int64(len(b)) && st.flags&flagInlineData != 0 {
			b = b[:st.size]
		}
	}
	return b
}

type statInfo struct {
	typ        string
	mode       uint32
	uid, gid   uint32
	links      int
	size       int64
	flags      uint32
	fastLink   string
	inode      int
	mtime      int64
	raw        string
	device     string
	blockCount int64
}

var (
	reInode = regexp.MustCompile(`Inode: (\d+)\s+Type: (\S+(?: \S+)?)\s+Mode:\s+(\d+)\s+Flags: (0x[0-9a-f]+)`)
	reUser  = regexp.MustCompile(`User:\s+(\d+)\s+Group:\s+(\d+).*Size: (\d+)`)
	reLinks = regexp.MustCompile(`Links: (\d+)\s+Blockcount: (\d+)`)
	reFast  = regexp.MustCompile(`Fast link dest: "(.*)"`)
	reMtime = regexp.MustCompile(`mtime: (0x[0-9a-f]+)`)
	reDev   = regexp.MustCompile(`Device major/minor number: (\S+)`)
)

func debugfsStat(t testing.TB, img, path string) statInfo {
	t.Helper()
	out := debugfs(t, img, "stat "+path)
	var s statInfo
	s.raw = out
	m := reInode.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("debugfs stat %s: unexpected output:\n%s", path, out)
	}
	s.inode, _ = strconv.Atoi(m[1])
	s.typ = m[2]
	mode, _ := strconv.ParseUint(m[3], 8, 32)
	s.mode = uint32(mode)
	fl, _ := strconv.ParseUint(m[4], 0, 32)
	s.flags = uint32(fl)
	if m := reUser.FindStringSubmatch(out); m != nil {
		u, _ := strconv.Atoi(m[1])
		g, _ := strconv.Atoi(m[2])
		s.uid, s.gid = uint32(u), uint32(g)
		s.size, _ = strconv.ParseInt(m[3], 10, 64)
	}
	if m := reLinks.FindStringSubmatch(out); m != nil {
		s.links, _ = strconv.Atoi(m[1])
		s.blockCount, _ = strconv.ParseInt(m[2], 10, 64)
	}
	if m := reFast.FindStringSubmatch(out); m != nil {
		s.fastLink = m[1]
	}
	if m := reMtime.FindStringSubmatch(out); m != nil {
		v, _ := strconv.ParseInt(m[1], 0, 64)
		s.mtime = v
	}
	if m := reDev.FindStringSubmatch(out); m != nil {
		s.device = m[1]
	}
	return s
}

// writeTree creates files under a directory for mke2fs -d (cached by
// content for the test binary).
func writeTree(t testing.TB, files map[string]string) string {
	t.Helper()
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, p := range names {
		fmt.Fprintf(h, "%q=%q;", p, files[p])
	}
	key := fmt.Sprintf("%x", h.Sum(nil))
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if dir, ok := treeCache[key]; ok {
		return dir
	}
	dir := filepath.Join(testDir, "tree-"+key[:16])
	for _, p := range names {
		full := filepath.Join(dir, p)
		if strings.HasSuffix(p, "/") {
			os.MkdirAll(full, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(files[p]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	treeCache[key] = dir
	return dir
}

// bigEtcTree returns a tree whose /etc has n files, so mke2fs + e2fsck -D
// index it.
func bigEtcTree(t testing.TB, n int) string {
	t.Helper()
	files := map[string]string{"hostname": "raspberrypi\n", "etc/hostname": "raspberrypi\n"}
	for i := 0; i < n; i++ {
		files[fmt.Sprintf("etc/conf-%05d.d", i)] = fmt.Sprintf("setting %d\n", i)
	}
	return writeTree(t, files)
}

// patternReader yields n deterministic pseudo-random bytes without holding
// them in memory.
type patternReader struct {
	n, off int64
	seed   uint64
}

func (r *patternReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, io.EOF
	}
	if int64(len(p)) > r.n-r.off {
		p = p[:r.n-r.off]
	}
	for i := range p {
		x := uint64(r.off+int64(i))*0x9E3779B97F4A7C15 + r.seed
		x ^= x >> 29
		p[i] = byte(x)
	}
	r.off += int64(len(p))
	return len(p), nil
}

func patternBytes(n int64, seed uint64) []byte {
	b, _ := io.ReadAll(&patternReader{n: n, seed: seed})
	return b
}

func mustEqual(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes, want %d bytes (differ)", what, len(got), len(want))
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

const iofsModeNamedPipe = iofs.ModeNamedPipe

// mkdirForTest is MkdirAll for a single new directory without re-resolving
// every component (keeps the 65001-directory test fast).
func (f *FS) mkdirForTest(path string) (uint32, error) {
	var ino uint32
	err := f.mutate("mkdir", path, func() error {
		parent, name, err := f.parentOf(path)
		if err != nil {
			return err
		}
		ino, err = f.mkdir(parent, name, fs.Attr{Mode: 0o755})
		return err
	})
	return ino, err
}

// fileDevice wraps a plain file as an fs.Device (no buffering).
type fileDev struct{ *os.File }

func (d fileDev) Size() int64 {
	st, err := d.Stat()
	if err != nil {
		return 0
	}
	return st.Size()
}

// fileDevThrough adds WriteThrough to fileDev.
type fileDevThrough struct{ fileDev }

func (d fileDevThrough) WriteThrough(p []byte, off int64) (int, error) { return d.WriteAt(p, off) }

func fileDevice(t testing.TB, path string) fileDev {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	return fileDev{fh}
}
