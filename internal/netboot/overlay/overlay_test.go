package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/netboot/overlay/overlaytest"
	"github.com/bakeryhq/bakery/internal/testimage"
	"golang.org/x/sys/unix"
)

const testKey = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

var fixedNow = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func testOpts() Options { return Options{Now: func() time.Time { return fixedNow }} }

type fixture struct {
	img   string
	bases *Bases
	base  *Base
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	img := overlaytest.Image(t, 0)
	bases := NewBases(nil)
	t.Cleanup(bases.Close)
	b, err := bases.Get(testKey, img)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{img: img, bases: bases, base: b}
}

func (f *fixture) root(t *testing.T) *Root {
	t.Helper()
	r, err := CreateRoot(filepath.Join(t.TempDir(), "layer"), f.base, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func mustResolve(t *testing.T, r *Root, p string) uint64 {
	t.Helper()
	id, err := r.Resolve(nil, p, false)
	if err != nil {
		t.Fatalf("resolve %s: %v", p, err)
	}
	return id
}

func readAll(t *testing.T, r *Root, c *Cred, p string) string {
	t.Helper()
	id, err := r.Resolve(c, p, true)
	if err != nil {
		t.Fatalf("resolve %s: %v", p, err)
	}
	a, err := r.Getattr(id)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, a.Size+10)
	n, err := r.ReadAt(c, id, buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(buf[:n])
}

func names(t *testing.T, r *Root, p string) string {
	t.Helper()
	ents, err := r.ReadDirPath(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name)
	}
	return strings.Join(out, ",")
}

// TestImageAttributes: every object of the image reads back with the exact
// type, mode (setuid/setgid/sticky), owner, device number, link target and
// link count it has in the tree mkfs.ext4 -d copied.
func TestImageAttributes(t *testing.T) {
	f := newFixture(t)
	r := f.root(t)
	for _, want := range overlaytest.Tree {
		a, err := r.Stat(want.Path, false)
		if err != nil {
			t.Fatalf("%s: %v", want.Path, err)
		}
		mode := want.Mode
		if want.Target != "" && mode&unix.S_IFMT == unix.S_IFREG {
			mode = overlaytest.Find(want.Target).Mode
		}
		if a.Mode != mode || a.UID != want.UID || a.GID != want.GID {
			t.Errorf("%s: mode %o uid %d gid %d, want %o %d %d", want.Path, a.Mode, a.UID, a.GID, mode, want.UID, want.GID)
		}
		switch mode & unix.S_IFMT {
		case unix.S_IFLNK:
			if a.Target != want.Target {
				t.Errorf("%s -> %q, want %q", want.Path, a.Target, want.Target)
			}
		case unix.S_IFCHR, unix.S_IFBLK:
			if a.Major() != unix.Major(want.Rdev) || a.Minor() != unix.Minor(want.Rdev) {
				t.Errorf("%s: device %d,%d", want.Path, a.Major(), a.Minor())
			}
		case unix.S_IFREG:
			if want.Target == "" && want.Path != overlaytest.SparsePath {
				if got := readAll(t, r, nil, want.Path); got != want.Content {
					t.Errorf("%s: %q", want.Path, got)
				}
			}
		}
	}
	perl, _ := r.Stat("/usr/bin/perl", false)
	perl5, _ := r.Stat("/usr/bin/perl5.36.0", false)
	if perl.ID != perl5.ID || perl.Nlink != 2 {
		t.Fatalf("hard link: ids %d %d nlink %d", perl.ID, perl5.ID, perl.Nlink)
	}
	if got := readAll(t, r, nil, overlaytest.SparsePath); !bytes.Equal([]byte(got), overlaytest.SparseContent()) {
		t.Fatal("sparse file content differs")
	}
	// Symlinks in the middle of a path resolve inside the root.
	if got := readAll(t, r, nil, "/bin/sudo"); got != "sudo binary\n" {
		t.Fatalf("/bin/sudo: %q", got)
	}
	if got := readAll(t, r, nil, "/lib/../../../etc/hostname"); got != "raspberrypi\n" {
		t.Fatalf("dot-dot at the root: %q", got)
	}
}

// TestCopyOnWrite: a write is seen by the writer's root only; the image
// file does not change; an unchanged file keeps being read from the image.
func TestCopyOnWrite(t *testing.T) {
	f := newFixture(t)
	before := testimage.FileSHA256(t, f.img)
	a, b := f.root(t), f.root(t)
	if err := a.WriteFile("/etc/hostname", []byte("pi-a\n"), 0o644, 0, 0); err != nil {
		t.Fatal(err)
	}
	id := mustResolve(t, a, "/home/pi/notes.txt")
	if _, err := a.WriteAt(nil, id, []byte("PI"), 0); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, a, nil, "/home/pi/notes.txt"); got != "PI's notes\n" {
		t.Fatalf("a sees %q", got)
	}
	if got := readAll(t, b, nil, "/home/pi/notes.txt"); got != "pi's notes\n" {
		t.Fatalf("b sees %q", got)
	}
	if got := readAll(t, b, nil, "/etc/hostname"); got != "raspberrypi\n" {
		t.Fatalf("b hostname %q", got)
	}
	// The copied-up file keeps its id, owner and mode.
	st, _ := a.Stat("/home/pi/notes.txt", false)
	if st.ID != id || st.UID != 1000 || st.Mode != unix.S_IFREG|0o640 {
		t.Fatalf("after copy-up: %+v", st)
	}
	a.Flush()
	b.Flush()
	if after := testimage.FileSHA256(t, f.img); after != before {
		t.Fatal("the image file changed")
	}
}

// TestCopyUpSparseOnce: writing a byte into an 8 MiB sparse image file
// copies it up once, sparsely, and a second write does not copy again.
func TestCopyUpSparseOnce(t *testing.T) {
	f := newFixture(t)
	r := f.root(t)
	id := mustResolve(t, r, overlaytest.SparsePath)
	if _, err := r.WriteAt(nil, id, []byte("X"), 0); err != nil {
		t.Fatal(err)
	}
	p := r.dataPath(id)
	fi1, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi1.Size() != overlaytest.SparseSize || allocated(fi1) > 64<<10 {
		t.Fatalf("copy-up: size %d, %d bytes allocated (want sparse)", fi1.Size(), allocated(fi1))
	}
	if _, err := r.WriteAt(nil, id, []byte("Y"), 1); err != nil {
		t.Fatal(err)
	}
	fi2, _ := os.Stat(p)
	if !os.SameFile(fi1, fi2) {
		t.Fatal("second write copied the file again")
	}
	want := overlaytest.SparseContent()
	copy(want, "XY")
	if got := readAll(t, r, nil, overlaytest.SparsePath); got != string(want) {
		t.Fatal("content after copy-up differs")
	}
}

// TestWhiteoutsAndRenames covers deletes, re-creation, renames of image
// directories (O(1), contents still from the image) and files, replacing
// renames and the checks rename(2) makes.
func TestWhiteoutsAndRenames(t *testing.T) {
	f := newFixture(t)
	r := f.root(t)
	etc := mustResolve(t, r, "/etc")
	if err := r.Remove(nil, etc, "hostname", RemoveFile); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Stat("/etc/hostname", false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("removed file: %v", err)
	}
	if strings.Contains(names(t, r, "/etc"), "hostname") {
		t.Fatal("whiteout not applied to the listing")
	}
	if u, _ := r.Usage(); u.Whiteouts != 1 {
		t.Fatalf("usage %+v", u)
	}
	if err := r.WriteFile("/etc/hostname", []byte("new\n"), 0o600, 0, 0); err != nil {
		t.Fatal(err)
	}
	if a, _ := r.Stat("/etc/hostname", false); a.ID < LayerIDBase || a.Mode != unix.S_IFREG|0o600 {
		t.Fatalf("re-created: %+v", a)
	}
	if u, _ := r.Usage(); u.Whiteouts != 0 {
		t.Fatalf("usage after re-creating %+v", u)
	}

	// Rename an image directory: its children keep their ids and content.
	usr := mustResolve(t, r, "/usr")
	doc := mustResolve(t, r, "/usr/share/doc/readme.txt")
	if err := r.Rename(nil, usr, "share", usr, "share2"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r, nil, "/usr/share2/doc/readme.txt"); got != "read me\n" {
		t.Fatalf("after directory rename: %q", got)
	}
	if p, err := r.PathOf(doc); err != nil || strings.Join(p, "/") != "usr/share2/doc/readme.txt" {
		t.Fatalf("PathOf after rename: %v %v", p, err)
	}
	if _, err := r.Stat("/usr/share", false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("old directory name still there")
	}
	// Into itself: refused.
	share2 := mustResolve(t, r, "/usr/share2")
	docDir := mustResolve(t, r, "/usr/share2/doc")
	if err := r.Rename(nil, usr, "share2", docDir, "x"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("rename into itself: %v", err)
	}
	// A file over a file replaces it; a file over a directory fails.
	if err := r.Rename(nil, etc, "hosts", etc, "machine-id"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r, nil, "/etc/machine-id"); !strings.Contains(got, "localhost") {
		t.Fatalf("replaced: %q", got)
	}
	if err := r.Rename(nil, etc, "machine-id", r.RootID(), "usr"); !errors.Is(err, fs.ErrIsDir) {
		t.Fatalf("file over directory: %v", err)
	}
	// A non-empty directory cannot be removed; an emptied one can.
	if err := r.Remove(nil, usr, "share2", RemoveDir); !errors.Is(err, fs.ErrNotEmpty) {
		t.Fatalf("rmdir non-empty: %v", err)
	}
	if err := r.Remove(nil, mustResolve(t, r, "/usr/share2/doc"), "readme.txt", RemoveFile); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(nil, share2, "doc", RemoveDir); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(nil, usr, "share2", RemoveDir); err != nil {
		t.Fatal(err)
	}
	if _, err := r.PathOf(doc); !errors.Is(err, ErrStale) {
		t.Fatalf("PathOf a deleted file: %v", err)
	}
}

// TestLinksAndSpecialFiles: hard links share content and count links;
// device nodes, FIFOs, sockets and symlinks keep their types and numbers.
func TestLinksAndSpecialFiles(t *testing.T) {
	f := newFixture(t)
	r := f.root(t)
	tmp := mustResolve(t, r, "/tmp")
	id, _, err := r.Create(nil, tmp, "a", 0o644, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Link(nil, id, tmp, "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WriteAt(nil, mustResolve(t, r, "/tmp/b"), []byte("shared"), 0); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r, nil, "/tmp/a"); got != "shared" {
		t.Fatalf("link content %q", got)
	}
	if a, _ := r.Getattr(id); a.Nlink != 2 {
		t.Fatalf("nlink %d", a.Nlink)
	}
	if err := r.Remove(nil, tmp, "a", RemoveFile); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r, nil, "/tmp/b"); got != "shared" {
		t.Fatalf("after unlinking one name: %q", got)
	}
	// Image hard links: a write through one name shows through the other.
	perl := mustResolve(t, r, "/usr/bin/perl5.36.0")
	if _, err := r.WriteAt(nil, perl, []byte("PERL"), 0); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r, nil, "/usr/bin/perl"); got != "PERL binary\n" {
		t.Fatalf("image hard link: %q", got)
	}
	// Removing one image name keeps the other resolvable (handles too).
	if err := r.Remove(nil, mustResolve(t, r, "/usr/bin"), "perl", RemoveFile); err != nil {
		t.Fatal(err)
	}
	if p, err := r.PathOf(perl); err != nil || strings.Join(p, "/") != "usr/bin/perl5.36.0" {
		t.Fatalf("PathOf the remaining image link: %v %v", p, err)
	}
	for _, c := range []struct {
		name string
		mode uint32
		rdev uint64
	}{{"null", TypeChar | 0o666, Mkdev(1, 3)}, {"loop", TypeBlock | 0o660, Mkdev(259, 300000)}, {"fifo", TypeFIFO | 0o600, 0}, {"sock", TypeSocket | 0o755, 0}} {
		nid, err := r.Mknod(nil, tmp, c.name, c.mode, c.rdev)
		if err != nil {
			t.Fatalf("mknod %s: %v", c.name, err)
		}
		a, _ := r.Getattr(nid)
		if a.Mode != c.mode || a.Rdev != c.rdev {
			t.Fatalf("%s: mode %o rdev %x", c.name, a.Mode, a.Rdev)
		}
	}
	if a, _ := r.Stat("/tmp/loop", false); a.Major() != 259 || a.Minor() != 300000 {
		t.Fatalf("large device numbers: %d,%d", a.Major(), a.Minor())
	}
	if _, err := r.Mknod(&Cred{UID: 1000, GID: 1000}, tmp, "evil", TypeChar|0o666, Mkdev(1, 1)); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("mknod by a user: %v", err)
	}
	if _, err := r.Symlink(nil, tmp, "ln", "../etc/hostname"); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, r, nil, "/tmp/ln"); got != "raspberrypi\n" {
		t.Fatalf("relative symlink: %q", got)
	}
}

// TestPermissions: non-root callers get the kernel's answers.
func TestPermissions(t *testing.T) {
	f := newFixture(t)
	r := f.root(t)
	pi := &Cred{UID: 1000, GID: 1000}
	nobody := &Cred{UID: 65534, GID: 65534}
	shadow := mustResolve(t, r, "/etc/shadow")
	if _, err := r.ReadAt(pi, shadow, make([]byte, 10), 0); !errors.Is(err, ErrPermission) {
		t.Fatalf("pi reads /etc/shadow: %v", err)
	}
	if _, err := r.ReadAt(&Cred{UID: 5, GID: 42}, shadow, make([]byte, 10), 0); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("group shadow reads /etc/shadow: %v", err)
	}
	if _, err := r.WriteAt(pi, mustResolve(t, r, "/etc/hostname"), []byte("x"), 0); !errors.Is(err, ErrPermission) {
		t.Fatalf("pi writes /etc/hostname: %v", err)
	}
	if _, err := r.Resolve(nobody, "/home/pi/notes.txt", true); !errors.Is(err, ErrPermission) {
		t.Fatalf("nobody searches /home/pi: %v", err)
	}
	etc := mustResolve(t, r, "/etc")
	if _, _, err := r.Create(pi, etc, "evil", 0o644, true); !errors.Is(err, ErrPermission) {
		t.Fatalf("pi creates in /etc: %v", err)
	}
	// Files pi creates are pi's; in a setgid directory they get its group.
	shared := mustResolve(t, r, "/home/pi/shared")
	id, _, err := r.Create(&Cred{UID: 1000, GID: 5}, shared, "f", 0o644, true)
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := r.Getattr(id); a.UID != 1000 || a.GID != 1000 {
		t.Fatalf("owner of a new file: %d:%d", a.UID, a.GID)
	}
	sub, err := r.Mkdir(pi, shared, "sub", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := r.Getattr(sub); a.Mode != TypeDir|0o2755 {
		t.Fatalf("setgid not inherited: %o", a.Mode)
	}
	// Sticky /tmp: nobody cannot delete pi's file.
	tmp := mustResolve(t, r, "/tmp")
	if _, _, err := r.Create(pi, tmp, "mine", 0o666, true); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(nobody, tmp, "mine", RemoveFile); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("sticky: %v", err)
	}
	// chmod/chown rules; a user's write clears setuid.
	mine := mustResolve(t, r, "/tmp/mine")
	mode := uint32(0o4755)
	if _, err := r.Setattr(nobody, mine, SetAttr{Mode: &mode}); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("chmod by a stranger: %v", err)
	}
	if _, err := r.Setattr(pi, mine, SetAttr{Mode: &mode}); err != nil {
		t.Fatal(err)
	}
	uid := uint32(0)
	if _, err := r.Setattr(pi, mine, SetAttr{UID: &uid}); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("chown by a user: %v", err)
	}
	if _, err := r.WriteAt(pi, mine, []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if a, _ := r.Getattr(mine); a.Mode != TypeReg|0o755 {
		t.Fatalf("setuid kept after a user's write: %o", a.Mode)
	}
	// Root keeps setuid on sudo when it writes it (package upgrade).
	sudo := mustResolve(t, r, "/usr/bin/sudo")
	if _, err := r.WriteAt(&Cred{}, sudo, []byte("S"), 0); err != nil {
		t.Fatal(err)
	}
	if a, _ := r.Getattr(sudo); a.Mode != TypeReg|0o4755 {
		t.Fatalf("sudo mode %o", a.Mode)
	}
	if !May(&Cred{}, Attr{Mode: TypeReg | 0o755}, MayExec) || May(&Cred{}, Attr{Mode: TypeReg | 0o644}, MayExec) {
		t.Fatal("root exec rule")
	}
}

// TestReopen: a layer read back from disk (a new process, a new Base that
// has seen nothing yet) gives the same tree and resolves old ids.
func TestReopen(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(t.TempDir(), "layer")
	r, err := CreateRoot(dir, f.base, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	gen := r.Generation()
	usr := mustResolve(t, r, "/usr")
	readme := mustResolve(t, r, "/usr/share/doc/readme.txt")
	r.Rename(nil, usr, "share", r.RootID(), "share")
	r.RemovePath("/etc/hosts")
	r.WriteFile("/etc/new", []byte("new"), 0o640, 7, 8)
	newID := mustResolve(t, r, "/etc/new")
	tmp := mustResolve(t, r, "/tmp")
	big, _, _ := r.Create(nil, tmp, "grows", 0o644, true)
	r.WriteAt(nil, big, []byte("0123456789"), 0) // deferred metadata
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	bases := NewBases(nil)
	defer bases.Close()
	r2, err := OpenRoot(dir, func(key string) (*Base, error) { return bases.Get(key, f.img) }, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if r2.Generation() != gen {
		t.Fatal("generation changed")
	}
	if p, err := r2.PathOf(readme); err != nil || strings.Join(p, "/") != "share/doc/readme.txt" {
		t.Fatalf("PathOf an image file after reopening: %v %v", p, err)
	}
	if p, err := r2.PathOf(newID); err != nil || strings.Join(p, "/") != "etc/new" {
		t.Fatalf("PathOf a layer file: %v %v", p, err)
	}
	if a, _ := r2.Stat("/etc/new", false); a.UID != 7 || a.GID != 8 || a.Mode != TypeReg|0o640 || a.Size != 3 {
		t.Fatalf("/etc/new: %+v", a)
	}
	if a, _ := r2.Stat("/tmp/grows", false); a.Size != 10 {
		t.Fatalf("deferred size lost: %+v", a)
	}
	if _, err := r2.Stat("/etc/hosts", false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("whiteout lost")
	}
	if _, err := r2.Stat("/usr/share", false); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("rename lost")
	}
}

// countingFS counts the file bytes read through a filesystem.
type countingFS struct {
	fs.Filesystem
	read *atomic.Int64
}

type countingFile struct {
	fs.File
	read *atomic.Int64
}

func (c countingFS) Open(p string) (fs.File, error) {
	f, err := c.Filesystem.Open(p)
	if err != nil {
		return nil, err
	}
	return countingFile{f, c.read}, nil
}

func (c countingFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.File.ReadAt(p, off)
	c.read.Add(int64(n))
	return n, err
}

// TestProvision checks every per-machine adjustment, and that provisioning
// reads only a few small files of the image (O(1) in its size).
func TestProvision(t *testing.T) {
	f := newFixture(t)
	var read atomic.Int64
	base, err := NewBase(testKey, countingFS{f.base.fsys, &read}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(t.TempDir(), NewBases(func(key, path string) (*Base, error) { return base, nil }), func(string) string { return f.img }, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, done, err := m.Provision("3a7f91c2", testKey, Adjustments{Hostname: "pi-1", NodeToken: "bkr_secret", NodeEnv: map[string]string{"BAKERY_MACHINE": "3a7f91c2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("adjustments:\n%s", strings.Join(done, "\n"))
	if read.Load() > 64<<10 {
		t.Fatalf("provisioning read %d bytes of the image", read.Load())
	}
	checks := map[string]string{
		"/etc/hostname":             "pi-1\n",
		"/etc/hosts":                "127.0.0.1\tlocalhost\n127.0.1.1\tpi-1\n",
		"/etc/machine-id":           "",
		"/etc/bakery/node-token":    "bkr_secret\n",
		"/etc/bakery/node.env":      "# Written by bakery serve for this machine.\nBAKERY_MACHINE=3a7f91c2\n",
		"/etc/ssh/sshd_config":      "PermitRootLogin no\n",
		"/usr/share/doc/readme.txt": "read me\n",
	}
	for p, want := range checks {
		if got := readAll(t, r, nil, p); got != want {
			t.Errorf("%s: %q, want %q", p, got, want)
		}
	}
	if a, _ := r.Stat("/etc/machine-id", false); a.Mode != TypeReg|0o444 || a.Size != 0 {
		t.Errorf("machine-id %+v", a)
	}
	if a, _ := r.Stat("/etc/bakery/node-token", false); a.Mode != TypeReg|0o600 || a.UID != 0 {
		t.Errorf("node-token %+v", a)
	}
	for _, gone := range []string{"/etc/ssh/ssh_host_ed25519_key", "/etc/ssh/ssh_host_ed25519_key.pub", "/var/lib/dbus/machine-id"} {
		if _, err := r.Stat(gone, false); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s still there: %v", gone, err)
		}
	}
	fstab := readAll(t, r, nil, "/etc/fstab")
	for _, l := range strings.Split(fstab, "\n") {
		if strings.HasPrefix(l, "PARTUUID=") {
			t.Errorf("fstab keeps %q", l)
		}
	}
	if !strings.Contains(fstab, "\nproc ") && !strings.HasPrefix(fstab, "proc ") || !strings.Contains(fstab, "tmpfs /tmp") {
		t.Errorf("fstab lost other lines:\n%s", fstab)
	}
	for _, u := range []string{"rpi-resize.service", "resize2fs_once.service"} {
		a, err := r.Stat("/etc/systemd/system/"+u, false)
		if err != nil || a.Type() != TypeLink || a.Target != "/dev/null" {
			t.Errorf("%s not masked: %+v %v", u, a, err)
		}
	}
	if a, err := r.Stat("/etc/systemd/system/multi-user.target.wants/bakery-ssh-keygen.service", false); err != nil || a.Type() != TypeLink {
		t.Errorf("keygen unit not enabled: %v", err)
	}
	// Other machines of the image are untouched; a second provision of the
	// same machine starts over with a new generation.
	gen := r.Generation()
	r2, _, err := m.Provision("3a7f91c2", testKey, Adjustments{})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Generation() == gen {
		t.Fatal("reset kept the generation")
	}
	if got := readAll(t, r2, nil, "/etc/hostname"); got != "" {
		t.Fatalf("hostname after reset without a name: %q", got)
	}
	if _, err := r.Getattr(r.RootID()); !errors.Is(err, ErrClosed) {
		t.Fatalf("old root still usable: %v", err)
	}
	// A layer whose provisioning did not finish (no mark: a crash) does
	// not count.
	if !m.HasLayer("3a7f91c2") {
		t.Fatal("provisioned layer not found")
	}
	os.Remove(filepath.Join(m.LayerDir("3a7f91c2"), provisionedMark))
	if m.HasLayer("3a7f91c2") {
		t.Fatal("unfinished layer counts")
	}
}

func TestFstabWithoutSD(t *testing.T) {
	in := "proc /proc proc defaults 0 0\nPARTUUID=abc-01 /boot/firmware vfat defaults 0 2\nUUID=x / ext4 defaults 0 1\n/dev/mmcblk0p3 /data ext4 defaults 0 2\nLABEL=data /srv ext4 defaults 0 2\n#PARTUUID=x / ext4\n"
	out, dropped := FstabWithoutSD([]byte(in))
	if len(dropped) != 3 {
		t.Fatalf("dropped %q", dropped)
	}
	want := "proc /proc proc defaults 0 0\n# bakery: NFS root, no SD card: PARTUUID=abc-01 /boot/firmware vfat defaults 0 2\n# bakery: NFS root, no SD card: UUID=x / ext4 defaults 0 1\n# bakery: NFS root, no SD card: /dev/mmcblk0p3 /data ext4 defaults 0 2\nLABEL=data /srv ext4 defaults 0 2\n#PARTUUID=x / ext4\n"
	if string(out) != want {
		t.Fatalf("got\n%s", out)
	}
}

func TestDisks(t *testing.T) {
	m, err := NewManager(t.TempDir(), NewBases(nil), func(string) string { return "" }, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.PutDisk("dc:a6:32:01:02:03", "../x", 1<<20); err == nil {
		t.Fatal("bad name accepted")
	}
	changed, err := m.PutDisk("dc:a6:32:01:02:03", "data", 10<<20+1)
	if err != nil || !changed {
		t.Fatal(changed, err)
	}
	p := m.DiskPath("dc:a6:32:01:02:03", "data")
	fi, err := os.Stat(p)
	if err != nil || fi.Size() != 11<<20 || allocated(fi) != 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("disk %v %v", fi, err)
	}
	if !strings.Contains(p, "dc-a6-32-01-02-03") {
		t.Fatalf("path %s", p)
	}
	if changed, err := m.PutDisk("dc:a6:32:01:02:03", "data", 11<<20); err != nil || changed {
		t.Fatal("same size is not a change", changed, err)
	}
	if _, err := m.PutDisk("dc:a6:32:01:02:03", "data", 2<<20); !errors.Is(err, ErrShrink) {
		t.Fatalf("shrink: %v", err)
	}
	if changed, err := m.PutDisk("dc:a6:32:01:02:03", "data", 20<<20); err != nil || !changed {
		t.Fatal("grow", err)
	}
	if err := m.DeleteDisk("dc:a6:32:01:02:03", "data"); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteDisk("dc:a6:32:01:02:03", "data"); !errors.Is(err, iofs.ErrNotExist) {
		t.Fatalf("delete twice: %v", err)
	}
}

// TestConcurrentUse runs creates, writes, renames and reads from many
// goroutines, several of them copying up the same image file at once; the
// result must be consistent in memory and after reopening.
func TestConcurrentUse(t *testing.T) {
	f := newFixture(t)
	dir := filepath.Join(t.TempDir(), "layer")
	r, err := CreateRoot(dir, f.base, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	sparse := mustResolve(t, r, overlaytest.SparsePath)
	tmp := mustResolve(t, r, "/tmp")
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.WriteAt(nil, sparse, []byte{byte('a' + g)}, int64(g)); err != nil {
				t.Error(err)
				return
			}
			d, err := r.Mkdir(nil, tmp, fmt.Sprintf("g%d", g), 0o755)
			if err != nil {
				t.Error(err)
				return
			}
			for i := 0; i < 20; i++ {
				id, _, err := r.Create(nil, d, fmt.Sprintf("f%d", i), 0o644, true)
				if err != nil {
					t.Error(err)
					return
				}
				r.WriteAt(nil, id, []byte(fmt.Sprintf("%d-%d", g, i)), 0)
				if i%2 == 0 {
					if err := r.Rename(nil, d, fmt.Sprintf("f%d", i), d, fmt.Sprintf("r%d", i)); err != nil {
						t.Error(err)
					}
				}
				readAll(t, r, nil, "/usr/share/doc/readme.txt")
			}
		}()
	}
	wg.Wait()
	check := func(r *Root) {
		got := readAll(t, r, nil, overlaytest.SparsePath)
		if got[:8] != "abcdefgh" || got[overlaytest.SparseOffset:overlaytest.SparseOffset+len(overlaytest.SparseData)] != overlaytest.SparseData {
			t.Fatalf("concurrent copy-up and writes: %q", got[:8])
		}
		for g := 0; g < 8; g++ {
			for i := 0; i < 20; i++ {
				name := fmt.Sprintf("/tmp/g%d/f%d", g, i)
				if i%2 == 0 {
					name = fmt.Sprintf("/tmp/g%d/r%d", g, i)
				}
				if got := readAll(t, r, nil, name); got != fmt.Sprintf("%d-%d", g, i) {
					t.Fatalf("%s: %q", name, got)
				}
			}
		}
	}
	check(r)
	r.Close()
	r2, err := OpenRoot(dir, func(string) (*Base, error) { return f.base, nil }, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	check(r2)
}
