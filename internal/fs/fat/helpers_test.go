package fat

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fs"
)

// Real oracles: dosfstools (mkfs.fat, fsck.fat) and mtools.

func needTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"mkfs.fat", "fsck.fat", "mtype", "mdir", "mcopy"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install dosfstools mtools)", tool)
		}
	}
}

var testTime = time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC)

// image describes a test image made by mkfs.fat.
type image struct {
	bits   int
	sizeKB int
	args   []string // extra mkfs.fat arguments
}

func (im image) String() string { return fmt.Sprintf("fat%d", im.bits) }

// Small images of each type, quick to make and check.
var images = []image{
	{bits: 12, sizeKB: 4 << 10},
	{bits: 16, sizeKB: 32 << 10},
	{bits: 32, sizeKB: 64 << 10},
}

func mkfs(t testing.TB, im image) string {
	t.Helper()
	needTools(t)
	path := filepath.Join(t.TempDir(), fmt.Sprintf("fat%d.img", im.bits))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(im.sizeKB) << 10); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := append([]string{"-F", fmt.Sprint(im.bits), "-i", "1234ABCD", "-n", "BOOT"}, im.args...)
	args = append(args, path)
	cmd := exec.Command("mkfs.fat", args...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.fat %v: %v\n%s", args, err, out)
	}
	return path
}

// session is an image opened the way production code opens it.
type session struct {
	t    testing.TB
	path string
	d    *disk.Disk
	f    *FS
}

func open(t testing.TB, path string) *session {
	t.Helper()
	d, err := disk.Open(path, disk.OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	r, err := d.Region(0, d.Size())
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(r, fs.Options{DefaultTime: testTime})
	if err != nil {
		d.Close()
		t.Fatalf("Open %s: %v", path, err)
	}
	return &session{t: t, path: path, d: d, f: f}
}

// commit closes the filesystem, commits the disk and closes it.
func (s *session) commit() {
	s.t.Helper()
	if err := s.f.Close(); err != nil {
		s.t.Fatalf("Close: %v", err)
	}
	if _, err := s.d.Commit(); err != nil {
		s.t.Fatalf("Commit: %v", err)
	}
	if err := s.d.Close(); err != nil {
		s.t.Fatal(err)
	}
}

func (s *session) discard() {
	s.d.Discard()
	s.d.Close()
}

func (s *session) write(p string, data []byte) {
	s.t.Helper()
	if err := s.f.WriteFile(p, bytes.NewReader(data), fs.Attr{Mode: 0o644}); err != nil {
		s.t.Fatalf("WriteFile %s: %v", p, err)
	}
}

func (s *session) mkdir(p string) {
	s.t.Helper()
	if err := s.f.MkdirAll(p, fs.Attr{Mode: 0o755}); err != nil {
		s.t.Fatalf("MkdirAll %s: %v", p, err)
	}
}

func (s *session) read(p string) []byte {
	s.t.Helper()
	b, err := s.f.ReadFile(p)
	if err != nil {
		s.t.Fatalf("ReadFile %s: %v", p, err)
	}
	return b
}

// fsck runs fsck.fat -n and fails on anything but a clean report: the
// version line and the summary line, nothing else (no "wrong",
// "uninitialized", "Reclaimed", "Duplicate", "Dirty bit", ...).
func fsck(t testing.TB, path string) {
	t.Helper()
	out, err := exec.Command("fsck.fat", "-n", path).CombinedOutput()
	var extra []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(l, "fsck.fat ") || strings.HasPrefix(l, path+": ") && strings.Contains(l, " clusters") {
			continue
		}
		extra = append(extra, l)
	}
	if err != nil || len(extra) > 0 {
		t.Fatalf("fsck.fat -n %s: %v\n%s", path, err, out)
	}
}

// mtype reads a file with mtools.
func mtype(t testing.TB, img, p string) []byte {
	t.Helper()
	cmd := exec.Command("mcopy", "-n", "-i", img, "::"+p, "-")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mcopy %s: %v\n%s", p, err, stderr.String())
	}
	return out
}

// mnames lists a directory with mtools: long names where present.
func mnames(t testing.TB, img, dir string) []string {
	t.Helper()
	cmd := exec.Command("mdir", "-b", "-i", img, "::"+dir)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "No files") {
			return nil
		}
		t.Fatalf("mdir %s: %v\n%s", dir, err, out)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l == "" {
			continue
		}
		l = strings.TrimPrefix(l, "::")
		l = strings.TrimPrefix(l, strings.TrimSuffix(dir, "/")+"/")
		l = strings.TrimSuffix(l, "/")
		names = append(names, l)
	}
	return names
}

// checkOracles runs fsck and compares every file in want with mtools.
func checkOracles(t testing.TB, img string, want map[string][]byte) {
	t.Helper()
	fsck(t, img)
	for p, data := range want {
		if got := mtype(t, img, p); !bytes.Equal(got, data) {
			t.Fatalf("mtools reads %s as %d bytes %q..., want %d bytes", p, len(got), trunc(got), len(data))
		}
	}
}

func trunc(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed) + 1
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

func forEachType(t *testing.T, fn func(t *testing.T, im image)) {
	for _, im := range images {
		t.Run(im.String(), func(t *testing.T) {
			t.Parallel()
			fn(t, im)
		})
	}
}
