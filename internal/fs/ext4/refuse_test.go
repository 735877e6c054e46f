package ext4

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/bakeryhq/bakery/internal/fs"
)

// patchSuperblock edits the primary superblock of an image file and
// refreshes its checksum.
func patchSuperblock(t *testing.T, img string, edit func(sb []byte)) {
	t.Helper()
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sb := make([]byte, superblockSize)
	if _, err := fh.ReadAt(sb, superblockOffset); err != nil {
		t.Fatal(err)
	}
	edit(sb)
	if get32(sb, sbFeatureRoCompat)&roCompatMetadataCsum != 0 {
		put32(sb, sbChecksum, crc32c(^uint32(0), sb[:sbChecksum]))
	}
	if _, err := fh.WriteAt(sb, superblockOffset); err != nil {
		t.Fatal(err)
	}
}

// TestNeedsRecoveryRefusesWrites: a filesystem whose journal needs
// recovery can be read but not written.
func TestNeedsRecoveryRefusesWrites(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "32M", tree: writeTree(t, baseTree)})
	runCmd(t, "debugfs", "-w", "-R", "feature needs_recovery", img)
	o := openImage(t, img, fs.Options{})
	defer o.discard()
	if b, err := o.fs.ReadFile("/etc/hostname"); err != nil || string(b) != "raspberrypi\n" {
		t.Fatalf("read = %q %v", b, err)
	}
	err := o.fs.WriteFile("/x", strings.NewReader("x"), fs.Attr{})
	if !errors.Is(err, fs.ErrReadOnly) || !strings.Contains(err.Error(), "e2fsck") {
		t.Fatalf("WriteFile = %v, want a read-only error telling to run e2fsck", err)
	}
}

// TestDirtyJournalRefusesWrites: a journal with unreplayed transactions
// (s_start != 0) blocks writes even without the superblock flag.
func TestDirtyJournalRefusesWrites(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "32M"})
	o := openImage(t, img, fs.Options{ReadOnly: true})
	in, _ := o.fs.readInode(journalIno)
	m, _ := o.fs.readMap(in)
	off := int64(m.runs[0].phys)*int64(o.fs.blockSize) + jsbStart
	o.discard()
	fh, _ := os.OpenFile(img, os.O_RDWR, 0)
	fh.WriteAt([]byte{0, 0, 0, 1}, off)
	fh.Close()
	o = openImage(t, img, fs.Options{})
	defer o.discard()
	if err := o.fs.MkdirAll("/x", fs.Attr{}); !errors.Is(err, fs.ErrReadOnly) || !strings.Contains(err.Error(), "recovery") {
		t.Fatalf("MkdirAll = %v", err)
	}
}

// TestUnknownFeatures: an unknown incompatible feature refuses the open
// and names it; an unknown read-only-compatible one allows reading only.
func TestUnknownFeatures(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "32M", tree: writeTree(t, baseTree)})
	patchSuperblock(t, img, func(sb []byte) { put32(sb, sbFeatureRoCompat, get32(sb, sbFeatureRoCompat)|1<<30) })
	o := openImage(t, img, fs.Options{})
	if _, err := o.fs.ReadFile("/etc/passwd"); err != nil {
		t.Fatal(err)
	}
	if err := o.fs.Remove("/etc/passwd"); !errors.Is(err, fs.ErrReadOnly) || !strings.Contains(err.Error(), "FEATURE_R30") {
		t.Fatalf("Remove = %v", err)
	}
	o.discard()

	patchSuperblock(t, img, func(sb []byte) { put32(sb, sbFeatureIncompat, get32(sb, sbFeatureIncompat)|1<<29) })
	if _, err := Open(fileDevice(t, img), fs.Options{}); err == nil || !strings.Contains(err.Error(), "FEATURE_I29") {
		t.Fatalf("Open = %v, want an error naming FEATURE_I29", err)
	}
}

// TestFilesystemFull fills the filesystem: the failing write returns
// ErrNoSpace, leaves nothing behind, and the filesystem stays clean.
func TestFilesystemFull(t *testing.T) {
	for _, args := range [][]string{{"-b", "1024"}, {"-b", "4096", "-N", "64"}} {
		t.Run(fmt.Sprint(args), func(t *testing.T) {
			img := makeImage(t, mkfsOpts{size: "6M", args: append(args, "-O", "^has_journal")})
			o := openImage(t, img, fs.Options{})
			var err error
			n := 0
			for ; n < 10000; n++ {
				err = o.fs.WriteFile(fmt.Sprintf("/f%04d", n), &patternReader{n: 200 << 10, seed: uint64(n)}, fs.Attr{Mode: 0o644})
				if err != nil {
					break
				}
			}
			if !errors.Is(err, fs.ErrNoSpace) {
				t.Fatalf("after %d files: %v, want ErrNoSpace", n, err)
			}
			if _, err := o.fs.Lstat(fmt.Sprintf("/f%04d", n)); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("failed file exists: %v", err)
			}
			// Free space can be reused only after Close; a later small write
			// may still fail, which must not break anything either.
			o.fs.MkdirAll("/more/dirs", fs.Attr{Mode: 0o755})
			o.commit()
			fsck(t, img)
			o = openImage(t, img, fs.Options{})
			must(t, o.fs.Remove("/f0000"))
			o.commit()
			o = openImage(t, img, fs.Options{})
			must(t, o.fs.WriteFile("/after", strings.NewReader("fits again"), fs.Attr{Mode: 0o644}))
			o.commit()
			fsck(t, img)
		})
	}
}

type failingReader struct {
	r     io.Reader
	after int64
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("source went away")
	}
	if int64(len(p)) > f.after {
		p = p[:f.after]
	}
	n, err := f.r.Read(p)
	f.after -= int64(n)
	return n, err
}

// TestFailedWriteRollsBack: a write that fails half way (the reader
// errors) leaves the filesystem exactly as it was.
func TestFailedWriteRollsBack(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "32M", tree: writeTree(t, baseTree)})
	o := openImage(t, img, fs.Options{})
	before, _ := o.fs.Usage()
	err := o.fs.WriteFile("/etc/new", &failingReader{r: &patternReader{n: 10 << 20}, after: 6 << 20}, fs.Attr{Mode: 0o644})
	if err == nil || !strings.Contains(err.Error(), "source went away") {
		t.Fatalf("WriteFile = %v", err)
	}
	err = o.fs.WriteFile("/usr/bin/tool", &failingReader{r: &patternReader{n: 10 << 20}, after: 5 << 20}, fs.Attr{Mode: 0o755})
	if err == nil {
		t.Fatal("replace with failing reader succeeded")
	}
	after, _ := o.fs.Usage()
	if before != after {
		t.Fatalf("usage changed by failed writes: %+v -> %+v", before, after)
	}
	if _, err := o.fs.Stat("/etc/new"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("half-written file visible: %v", err)
	}
	must(t, o.fs.WriteFile("/etc/ok", strings.NewReader("ok"), fs.Attr{Mode: 0o644}))
	o.commit()
	fsck(t, img)
	mustEqual(t, "tool", debugfsCat(t, img, "/usr/bin/tool"), []byte(baseTree["usr/bin/tool"]))
	mustEqual(t, "ok", debugfsCat(t, img, "/etc/ok"), []byte("ok"))
}

// TestConcurrentReadsAndWrites reads files from many goroutines while
// another goroutine writes (run with -race).
func TestConcurrentReadsAndWrites(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "64M", tree: bigEtcTree(t, 500), index: true})
	o := openImage(t, img, fs.Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				n := (g*131 + i*7) % 500
				b, err := o.fs.ReadFile(fmt.Sprintf("/etc/conf-%05d.d", n))
				if err != nil || string(b) != fmt.Sprintf("setting %d\n", n) {
					errs <- fmt.Errorf("read %d: %q %v", n, b, err)
					return
				}
				if _, err := o.fs.ReadDir("/"); err != nil {
					errs <- err
					return
				}
			}
		}(g)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100; i++ {
			if err := o.fs.WriteFile(fmt.Sprintf("/etc/new-%03d", i), strings.NewReader("n"), fs.Attr{Mode: 0o644}); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	o.commit()
	fsck(t, img)
}

// TestSymlinkResolution checks chroot-like confinement and which calls
// follow a final symlink.
func TestSymlinkResolution(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "32M", tree: writeTree(t, baseTree)})
	o := openImage(t, img, fs.Options{})
	must(t, o.fs.MkdirAll("/usr/lib", fs.Attr{Mode: 0o755}))
	must(t, o.fs.Symlink("usr/lib", "/lib", fs.Attr{}))
	must(t, o.fs.Symlink("/etc", "/abs", fs.Attr{}))
	must(t, o.fs.Symlink("../../../../etc", "/usr/up", fs.Attr{}))
	must(t, o.fs.Symlink("loop2", "/loop1", fs.Attr{}))
	must(t, o.fs.Symlink("loop1", "/loop2", fs.Attr{}))
	must(t, o.fs.Symlink("hostname", "/etc/hn", fs.Attr{}))
	must(t, o.fs.WriteFile("/lib/libc.so", strings.NewReader("elf"), fs.Attr{Mode: 0o755}))
	if b, err := o.fs.ReadFile("/usr/lib/libc.so"); err != nil || string(b) != "elf" {
		t.Fatalf("write through symlinked parent: %q %v", b, err)
	}
	if b, err := o.fs.ReadFile("/usr/up/hostname"); err != nil || string(b) != "raspberrypi\n" {
		t.Fatalf(".. confined at root: %q %v", b, err)
	}
	if b, err := o.fs.ReadFile("/abs/hn"); err != nil || string(b) != "raspberrypi\n" {
		t.Fatalf("absolute target: %q %v", b, err)
	}
	if fi, err := o.fs.Lstat("/etc/hn"); err != nil || fi.Mode&iofs.ModeSymlink == 0 || fi.Target != "hostname" {
		t.Fatalf("Lstat = %+v %v", fi, err)
	}
	if fi, err := o.fs.Stat("/etc/hn"); err != nil || !fi.IsRegular() || fi.Size != 12 {
		t.Fatalf("Stat = %+v %v", fi, err)
	}
	if _, err := o.fs.Stat("/loop1"); !errors.Is(err, fs.ErrTooManyLinks) {
		t.Fatalf("loop: %v", err)
	}
	if _, err := o.fs.Lstat("/loop1"); err != nil {
		t.Fatalf("Lstat loop: %v", err)
	}
	if _, err := o.fs.Stat("/etc/hostname/x"); !errors.Is(err, fs.ErrNotDir) {
		t.Fatalf("file as dir: %v", err)
	}
	if _, err := o.fs.Stat("/etc/../x"); !errors.Is(err, fs.ErrInvalidPath) {
		t.Fatalf("dotdot path: %v", err)
	}
	if err := o.fs.Remove("/etc/hn"); err != nil {
		t.Fatal(err)
	}
	if _, err := o.fs.Stat("/etc/hostname"); err != nil {
		t.Fatalf("Remove followed the link: %v", err)
	}
	if target, err := o.fs.ReadLink("/lib"); err != nil || target != "usr/lib" {
		t.Fatalf("ReadLink = %q %v", target, err)
	}
	o.commit()
	fsck(t, img)
}

// TestRenameRules covers replacing, moving directories across parents and
// the refusals.
func TestRenameRules(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "32M", tree: writeTree(t, baseTree)})
	o := openImage(t, img, fs.Options{})
	must(t, o.fs.MkdirAll("/a/sub/deeper", fs.Attr{Mode: 0o755}))
	must(t, o.fs.MkdirAll("/b/empty", fs.Attr{Mode: 0o755}))
	must(t, o.fs.MkdirAll("/c/full/x", fs.Attr{Mode: 0o755}))
	if err := o.fs.Rename("/a", "/a/sub/deeper/a"); !errors.Is(err, fs.ErrInvalidPath) {
		t.Fatalf("into itself: %v", err)
	}
	if err := o.fs.Rename("/a/sub", "/c/full"); !errors.Is(err, fs.ErrNotEmpty) {
		t.Fatalf("over non-empty dir: %v", err)
	}
	if err := o.fs.Rename("/etc/hostname", "/b/empty"); !errors.Is(err, fs.ErrIsDir) {
		t.Fatalf("file over dir: %v", err)
	}
	if err := o.fs.Rename("/a/sub", "/etc/passwd"); !errors.Is(err, fs.ErrNotDir) {
		t.Fatalf("dir over file: %v", err)
	}
	must(t, o.fs.Rename("/a/sub", "/b/empty"))
	must(t, o.fs.Rename("/etc/hostname", "/etc/passwd"))
	must(t, o.fs.Rename("/b/empty", "/moved"))
	must(t, o.fs.Rename("/moved", "/moved"))
	o.commit()
	fsck(t, img)
	if st := debugfsStat(t, img, "/moved/deeper"); st.typ != "directory" {
		t.Fatal(st.raw)
	}
	mustEqual(t, "passwd", debugfsCat(t, img, "/etc/passwd"), []byte("raspberrypi\n"))
	if st := debugfsStat(t, img, "/a"); st.links != 2 {
		t.Fatalf("/a links %d", st.links)
	}
}

// TestInlineData reads files and directories stored inline and converts an
// inline directory to a block when it is changed.
func TestInlineData(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "32M", args: []string{"-O", "inline_data"}, tree: writeTree(t, map[string]string{
		"small/a": "tiny", "small/b": strings.Repeat("m", 100), "big": strings.Repeat("b", 9000),
	})})
	runCmd(t, "debugfs", "-w", "-R", "ea_set /small user.kept value-kept", img)
	o := openImage(t, img, fs.Options{})
	for p, want := range map[string]string{"/small/a": "tiny", "/small/b": strings.Repeat("m", 100), "/big": strings.Repeat("b", 9000)} {
		b, err := o.fs.ReadFile(p)
		if err != nil || string(b) != want {
			t.Fatalf("%s: %q %v", p, b, err)
		}
	}
	ents, err := o.fs.ReadDir("/small")
	if err != nil || len(ents) != 2 {
		t.Fatalf("ReadDir inline = %v %v", ents, err)
	}
	must(t, o.fs.WriteFile("/small/c", strings.NewReader("x"), fs.Attr{Mode: 0o644}))
	must(t, o.fs.WriteFile("/small/a", strings.NewReader("replaced inline file"), fs.Attr{Mode: 0o644}))
	must(t, o.fs.Remove("/small/b"))
	must(t, o.fs.WriteFile("/small-replaced", strings.NewReader("new"), fs.Attr{Mode: 0o644}))
	o.commit()
	fsck(t, img)
	mustEqual(t, "/small/c", debugfsCat(t, img, "/small/c"), []byte("x"))
	mustEqual(t, "/small/a", debugfsCat(t, img, "/small/a"), []byte("replaced inline file"))
	o = openImage(t, img, fs.Options{ReadOnly: true})
	defer o.discard()
	if x, err := o.fs.ListXattrs("/small"); err != nil || string(x["user.kept"]) != "value-kept" {
		t.Fatalf("xattrs after conversion: %q %v", x, err)
	}
}

// TestXattrsListed lists in-inode and block extended attributes.
func TestXattrsListed(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "32M", tree: writeTree(t, baseTree)})
	runCmd(t, "debugfs", "-w", "-R", "ea_set /etc/passwd user.comment hello", img)
	runCmd(t, "debugfs", "-w", "-R", "ea_set /etc/passwd security.selinux system_u:object_r:passwd_file_t:s0", img)
	runCmd(t, "debugfs", "-w", "-R", "ea_set /usr/bin/tool trusted.big "+strings.Repeat("v", 300), img)
	o := openImage(t, img, fs.Options{ReadOnly: true})
	defer o.discard()
	x, err := o.fs.ListXattrs("/etc/passwd")
	if err != nil || string(x["user.comment"]) != "hello" || !strings.HasPrefix(string(x["security.selinux"]), "system_u") {
		t.Fatalf("ListXattrs = %q %v", x, err)
	}
	x, err = o.fs.ListXattrs("/usr/bin/tool")
	if err != nil || len(x["trusted.big"]) != 300 {
		t.Fatalf("ListXattrs = %q %v", x, err)
	}
}

// TestXattrBlockReleased removes files sharing and owning xattr blocks.
func TestXattrBlockReleased(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "32M", args: []string{"-I", "128"}, tree: writeTree(t, baseTree)})
	runCmd(t, "debugfs", "-w", "-R", "ea_set /etc/passwd user.a "+strings.Repeat("v", 100), img)
	runCmd(t, "debugfs", "-w", "-R", "ea_set /usr/bin/tool user.b "+strings.Repeat("w", 100), img)
	o := openImage(t, img, fs.Options{})
	must(t, o.fs.Remove("/etc/passwd"))
	must(t, o.fs.WriteFile("/usr/bin/tool", strings.NewReader("replaced"), fs.Attr{Mode: 0o755}))
	o.commit()
	fsck(t, img)
}

// TestCasefoldAndEncryptedDirsRefused refuses to add entries to
// directories whose names are case-folded or encrypted.
func TestCasefoldAndEncryptedDirsRefused(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "32M", args: []string{"-O", "casefold,encrypt"}, tree: writeTree(t, map[string]string{"cf/": "", "enc/": ""})})
	runCmd(t, "debugfs", "-w", "-R", "set_inode_field /cf flags 0x40080000", img)
	runCmd(t, "debugfs", "-w", "-R", "set_inode_field /enc flags 0x80800", img)
	o := openImage(t, img, fs.Options{})
	defer o.discard()
	for _, p := range []string{"/cf/x", "/enc/x"} {
		if err := o.fs.WriteFile(p, strings.NewReader("x"), fs.Attr{}); !errors.Is(err, fs.ErrNotSupported) {
			t.Fatalf("WriteFile %s = %v", p, err)
		}
	}
	if _, err := o.fs.ReadDir("/cf"); err != nil {
		t.Fatal(err)
	}
}

// TestDirNlinkOverflow: past 65000 subdirectories a directory's link count
// becomes 1 (dir_nlink), as e2fsck expects.
func TestDirNlinkOverflow(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 65001 directories")
	}
	img := makeImage(t, mkfsOpts{size: "160M", args: []string{"-b", "1024", "-N", "70000", "-O", "^has_journal"}})
	o := openImage(t, img, fs.Options{})
	must(t, o.fs.MkdirAll("/many", fs.Attr{Mode: 0o755}))
	for i := 0; i < 65001; i++ {
		if _, err := o.fs.mkdirForTest(fmt.Sprintf("/many/%05d", i)); err != nil {
			t.Fatal(err)
		}
	}
	o.commit()
	fsck(t, img)
	if st := debugfsStat(t, img, "/many"); st.links != 1 {
		t.Fatalf("links = %d, want 1", st.links)
	}
	o = openImage(t, img, fs.Options{})
	must(t, o.fs.Remove("/many/00000"))
	must(t, o.fs.Remove("/many/00001"))
	o.commit()
	fsck(t, img)
	if st := debugfsStat(t, img, "/many"); st.links != 1 {
		t.Fatalf("links = %d, want 1 (65001 counted)", st.links)
	}
	o = openImage(t, img, fs.Options{})
	must(t, o.fs.Remove("/many/00002"))
	o.commit()
	fsck(t, img)
	if st := debugfsStat(t, img, "/many"); st.links != 65000 {
		t.Fatalf("links = %d, want 65000", st.links)
	}
}

// TestBigallocReadOnly reads a bigalloc filesystem and refuses to write it.
func TestBigallocReadOnly(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "64M", args: []string{"-O", "bigalloc", "-C", "16384"}, tree: writeTree(t, baseTree)})
	o := openImage(t, img, fs.Options{})
	defer o.discard()
	b, err := o.fs.ReadFile("/usr/bin/tool")
	if err != nil || string(b) != baseTree["usr/bin/tool"] {
		t.Fatalf("read: %v", err)
	}
	if err := o.fs.MkdirAll("/x", fs.Attr{}); !errors.Is(err, fs.ErrReadOnly) || !strings.Contains(err.Error(), "bigalloc") {
		t.Fatalf("MkdirAll = %v", err)
	}
}
