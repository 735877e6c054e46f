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
	"strings"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// variants are the on-disk flavours every write test runs against.
var variants = []struct {
	name string
	prog string
	args []string
}{
	{"ext4-1k", "", []string{"-b", "1024"}},
	{"ext4-2k", "", []string{"-b", "2048"}},
	{"ext4-4k", "", []string{"-b", "4096"}},
	{"ext4-4k-32bit-nocsum", "", []string{"-b", "4096", "-O", "^64bit,^metadata_csum,uninit_bg"}},
	{"ext4-1k-sparse_super2-noflex", "", []string{"-b", "1024", "-O", "sparse_super2,^flex_bg,^resize_inode"}},
	{"ext4-4k-orphan_file", "", []string{"-b", "4096", "-O", "orphan_file"}},
	{"ext4-4k-128inode", "", []string{"-b", "4096", "-I", "128"}},
	{"ext4-1k-meta_bg-csum_seed", "", []string{"-b", "1024", "-O", "meta_bg,^resize_inode,metadata_csum_seed"}},
	{"ext4-64k", "", []string{"-b", "65536"}},
	{"ext4-4k-large_dir-inline_data", "", []string{"-b", "4096", "-O", "large_dir,inline_data"}},
	{"ext3-1k", "mkfs.ext3", []string{"-b", "1024"}},
	{"ext3-4k", "mkfs.ext3", []string{"-b", "4096"}},
	{"ext2-1k", "mkfs.ext2", []string{"-b", "1024"}},
	{"ext2-4k", "mkfs.ext2", []string{"-b", "4096"}},
	{"ext2-1k-nofiletype", "mkfs.ext2", []string{"-b", "1024", "-O", "^filetype,^dir_index"}},
}

var baseTree = map[string]string{
	"etc/hostname":     "raspberrypi\n",
	"etc/passwd":       "root:x:0:0:root:/root:/bin/bash\n",
	"usr/bin/tool":     strings.Repeat("binary", 5000),
	"var/log/":         "",
	"home/pi/.profile": "export PATH\n",
}

// bigBaseTree is baseTree plus 3000 files in /etc.
func bigBaseTree() map[string]string {
	files := map[string]string{}
	for k, v := range baseTree {
		files[k] = v
	}
	for i := 0; i < 3000; i++ {
		files[fmt.Sprintf("etc/conf-%05d.d", i)] = fmt.Sprintf("setting %d\n", i)
	}
	return files
}

// workload exercises every kind of change and returns what the files must
// contain afterwards.
func workload(t *testing.T, f *FS) map[string][]byte {
	t.Helper()
	want := map[string][]byte{}
	put := func(p string, data []byte, attr fs.Attr) {
		t.Helper()
		must(t, f.WriteFile(p, bytes.NewReader(data), attr))
		want[p] = data
	}
	put("/etc/hostname", []byte("bakery\n"), fs.Attr{Mode: 0o644})
	if _, err := f.Stat("/etc/conf-01234.d"); err == nil {
		for i := 0; i < 3000; i += 7 {
			must(t, f.Remove(fmt.Sprintf("/etc/conf-%05d.d", i)))
		}
		for i := 0; i < 300; i++ {
			put(fmt.Sprintf("/etc/added-%03d.conf", i), []byte(fmt.Sprint(i)), fs.Attr{Mode: 0o644})
		}
		want["/etc/conf-01233.d"] = []byte("setting 1233\n")
	} // replace smaller
	put("/etc/passwd", bytes.Repeat([]byte("user:x:1000:1000::/home/user:/bin/sh\n"), 500), fs.Attr{Mode: 0o644}) // replace larger
	put("/usr/bin/tool", patternBytes(3<<20+123, 1), fs.Attr{Mode: 0o755 | iofs.ModeSetuid})                      // multi-MB, indirect blocks
	put("/empty", nil, fs.Attr{Mode: 0o600})
	must(t, f.MkdirAll("/opt/a/b/c/d/e", fs.Attr{Mode: 0o750, UID: 1000, GID: 1000}))
	put("/opt/a/b/c/d/e/deep.txt", []byte("deep\n"), fs.Attr{Mode: 0o644, UID: 1000, GID: 1000})
	must(t, f.Symlink("/etc/hostname", "/etc/fast-link", fs.Attr{}))
	long := "/" + strings.Repeat("very-long-component/", 8) + "target"
	must(t, f.Symlink(long, "/etc/slow-link", fs.Attr{}))
	for i := 0; i < 120; i++ {
		put(fmt.Sprintf("/var/log/log-%03d.txt", i), []byte(fmt.Sprintf("line %d\n", i)), fs.Attr{Mode: 0o640})
	}
	for i := 0; i < 120; i += 4 {
		must(t, f.Remove(fmt.Sprintf("/var/log/log-%03d.txt", i)))
		delete(want, fmt.Sprintf("/var/log/log-%03d.txt", i))
	}
	must(t, f.Remove("/home/pi/.profile"))
	delete(want, "/home/pi/.profile")
	must(t, f.Remove("/home/pi"))
	must(t, f.Rename("/var/log/log-001.txt", "/etc/renamed.txt"))
	want["/etc/renamed.txt"] = want["/var/log/log-001.txt"]
	delete(want, "/var/log/log-001.txt")
	must(t, f.Rename("/opt/a/b", "/srv-b"))
	for p, v := range want {
		if strings.HasPrefix(p, "/opt/a/b/") {
			delete(want, p)
			want["/srv-b/"+strings.TrimPrefix(p, "/opt/a/b/")] = v
		}
	}
	must(t, f.Link("/etc/renamed.txt", "/etc/hardlink.txt"))
	want["/etc/hardlink.txt"] = want["/etc/renamed.txt"]
	must(t, f.Mknod("/dev-null", iofs.ModeDevice|iofs.ModeCharDevice|0o666, mkdev(1, 3), fs.Attr{}))
	must(t, f.Mknod("/dev-sda", iofs.ModeDevice|0o660, mkdev(8, 0), fs.Attr{GID: 6}))
	must(t, f.Mknod("/fifo", iofs.ModeNamedPipe|0o644, 0, fs.Attr{}))
	must(t, f.Chmod("/etc/renamed.txt", 0o600))
	must(t, f.Chown("/etc/renamed.txt", 33, 44))
	must(t, f.Chtimes("/etc/renamed.txt", time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)))
	return want
}

func verifyWorkload(t *testing.T, img string, want map[string][]byte) {
	t.Helper()
	for p, data := range want {
		mustEqual(t, p, debugfsCat(t, img, p), data)
	}
	checks := []struct {
		path     string
		mode     uint32
		uid, gid uint32
		links    int
		typ      string
	}{
		{"/usr/bin/tool", 0o4755, 0, 0, 1, "regular"},
		{"/opt/a", 0o750, 1000, 1000, 2, "directory"},
		{"/srv-b/c/d/e", 0o750, 1000, 1000, 2, "directory"},
		{"/etc/renamed.txt", 0o600, 33, 44, 2, "regular"},
		{"/dev-null", 0o666, 0, 0, 1, "character special"},
		{"/dev-sda", 0o660, 0, 6, 1, "block special"},
		{"/fifo", 0o644, 0, 0, 1, "FIFO"},
	}
	for _, c := range checks {
		st := debugfsStat(t, img, c.path)
		if st.mode != c.mode || st.uid != c.uid || st.gid != c.gid || st.links != c.links || st.typ != c.typ {
			t.Errorf("%s: debugfs says %s mode %o uid %d gid %d links %d; want %s %o %d %d %d",
				c.path, st.typ, st.mode, st.uid, st.gid, st.links, c.typ, c.mode, c.uid, c.gid, c.links)
		}
	}
	if st := debugfsStat(t, img, "/etc/renamed.txt"); st.mtime != time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC).Unix() {
		t.Errorf("mtime %d", st.mtime)
	}
	if st := debugfsStat(t, img, "/etc/fast-link"); st.fastLink != "/etc/hostname" {
		t.Errorf("fast link target %q", st.fastLink)
	}
	long := "/" + strings.Repeat("very-long-component/", 8) + "target"
	if got := string(debugfsCat(t, img, "/etc/slow-link")); got != long {
		t.Errorf("slow link target %q", got)
	}
	if st := debugfsStat(t, img, "/dev-sda"); st.device != "8:0" && !strings.Contains(st.raw, "major/minor number: 08:00") {
		t.Errorf("/dev-sda device:\n%s", st.raw)
	}
}

// TestWorkloadAllVariants runs every kind of change on every supported
// flavour (block sizes, 32/64-bit, checksums, ext2/ext3 block maps,
// sparse_super2, orphan_file) and checks the result with e2fsck and debugfs.
func TestWorkloadAllVariants(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			// A Raspberry Pi OS-like root: /etc with 3000 entries, indexed
			// (except with 64K blocks, where 3000 files would not fit).
			tree, index := writeTree(t, bigBaseTree()), true
			if strings.Contains(v.name, "64k") {
				tree, index = writeTree(t, baseTree), false
			}
			img := makeImage(t, mkfsOpts{size: "96M", prog: v.prog, args: append([]string{"-N", "8192"}, v.args...), tree: tree, index: index})
			if index {
				if st := debugfsStat(t, img, "/etc"); st.flags&flagIndex == 0 && !strings.Contains(v.name, "nofiletype") {
					t.Fatalf("/etc is not indexed")
				}
			}
			o := openImage(t, img, fs.Options{})
			want := workload(t, o.fs)
			// Read back through our own reader before closing, once whole
			// and once streamed.
			for p, data := range want {
				got, err := o.fs.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				mustEqual(t, "own read "+p, got, data)
				fl, err := o.fs.Open(p)
				if err != nil {
					t.Fatal(err)
				}
				got, err = io.ReadAll(fl)
				if err != nil || fl.Size() != int64(len(data)) {
					t.Fatal(err)
				}
				mustEqual(t, "streamed "+p, got, data)
			}
			o.commit()
			fsck(t, img)
			verifyWorkload(t, img, want)
			// And again after reopening.
			o = openImage(t, img, fs.Options{ReadOnly: true})
			defer o.discard()
			for p, data := range want {
				got, err := o.fs.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				mustEqual(t, "reopened "+p, got, data)
			}
			if typ := o.fs.Type(); typ != strings.SplitN(v.name, "-", 2)[0] {
				t.Errorf("Type() = %s", typ)
			}
		})
	}
}

// TestRemoveKeepsBitmapsConsistent removes files with extent trees and
// indirect blocks, symlinks, devices and directories. go-diskfs's Remove
// leaves unattached inodes and bitmap differences.
func TestRemoveKeepsBitmapsConsistent(t *testing.T) {
	for _, v := range []string{"mkfs.ext4", "mkfs.ext3"} {
		t.Run(v, func(t *testing.T) {
			img := makeImage(t, mkfsOpts{size: "64M", prog: v, args: []string{"-b", "1024"}, tree: writeTree(t, baseTree)})
			o := openImage(t, img, fs.Options{})
			before, _ := o.fs.Usage()
			must(t, o.fs.WriteFile("/big", &patternReader{n: 9 << 20, seed: 2}, fs.Attr{Mode: 0o644}))
			must(t, o.fs.Symlink(strings.Repeat("x", 200), "/slow", fs.Attr{}))
			must(t, o.fs.Mknod("/node", iofs.ModeNamedPipe|0o600, 0, fs.Attr{}))
			must(t, o.fs.MkdirAll("/d/e", fs.Attr{Mode: 0o755}))
			o.commit()
			fsck(t, img)
			o = openImage(t, img, fs.Options{})
			for _, p := range []string{"/big", "/slow", "/node", "/d/e", "/d", "/usr/bin/tool"} {
				must(t, o.fs.Remove(p))
			}
			if err := o.fs.Remove("/etc"); !errors.Is(err, fs.ErrNotEmpty) {
				t.Fatalf("Remove(/etc) = %v, want ErrNotEmpty", err)
			}
			if err := o.fs.Remove("/nope"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Remove(/nope) = %v", err)
			}
			o.commit()
			fsck(t, img)
			o = openImage(t, img, fs.Options{ReadOnly: true})
			defer o.discard()
			after, _ := o.fs.Usage()
			// The freed tool file (30000 bytes) makes the count go up, never down.
			if after.FreeBytes < before.FreeBytes || after.FreeInodes != before.FreeInodes+1 {
				t.Fatalf("usage before %+v after %+v", before, after)
			}
		})
	}
}

// TestLargeFileAvoidsReservedGDT writes 20 MB on a 1K-block filesystem
// with resize_inode, where go-diskfs allocates over the reserved GDT blocks
// (e2fsck: multiply-claimed blocks shared with inode 7).
func TestLargeFileAvoidsReservedGDT(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "128M", args: []string{"-b", "1024"}})
	o := openImage(t, img, fs.Options{})
	must(t, o.fs.WriteFile("/twenty", &patternReader{n: 20 << 20, seed: 3}, fs.Attr{Mode: 0o644}))
	o.commit()
	fsck(t, img)
	mustEqual(t, "/twenty", debugfsCat(t, img, "/twenty"), patternBytes(20<<20, 3))
}

// TestMkdirAllNested creates deep paths in one call (go-diskfs: "invalid
// argument") and through symlinked parents.
func TestMkdirAllNested(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "32M", tree: writeTree(t, baseTree)})
	o := openImage(t, img, fs.Options{})
	must(t, o.fs.MkdirAll("/a/b/c/d/e/f/g/h", fs.Attr{Mode: 0o700, UID: 7, GID: 8}))
	must(t, o.fs.MkdirAll("/a/b/c", fs.Attr{Mode: 0o777}))
	must(t, o.fs.Symlink("a/b", "/ab", fs.Attr{}))
	must(t, o.fs.MkdirAll("/ab/c/x/y", fs.Attr{Mode: 0o755}))
	if err := o.fs.MkdirAll("/etc/hostname/x", fs.Attr{Mode: 0o755}); !errors.Is(err, fs.ErrNotDir) {
		t.Fatalf("MkdirAll below a file = %v", err)
	}
	if err := o.fs.MkdirAll("/etc/hostname", fs.Attr{Mode: 0o755}); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("MkdirAll over a file = %v", err)
	}
	o.commit()
	fsck(t, img)
	st := debugfsStat(t, img, "/a/b/c/d/e/f/g/h")
	if st.typ != "directory" || st.mode != 0o700 || st.uid != 7 || st.gid != 8 || st.links != 2 {
		t.Fatalf("%+v", st)
	}
	if st := debugfsStat(t, img, "/a/b/c"); st.mode != 0o700 || st.links != 4 {
		t.Fatalf("existing dir changed or wrong link count: %+v", st)
	}
	if st := debugfsStat(t, img, "/a/b/c/x/y"); st.typ != "directory" {
		t.Fatalf("%+v", st)
	}
}

// TestReplaceTruncates replaces files with smaller and larger content; the
// old bytes must not survive (go-diskfs's O_CREATE|O_RDWR does not truncate).
func TestReplaceTruncates(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "32M", tree: writeTree(t, baseTree)})
	for round, data := range [][]byte{[]byte("short"), patternBytes(1<<20, 9), []byte("x"), nil, patternBytes(5000, 4)} {
		o := openImage(t, img, fs.Options{})
		must(t, o.fs.WriteFile("/usr/bin/tool", bytes.NewReader(data), fs.Attr{Mode: 0o755}))
		must(t, o.fs.WriteFile("/usr/bin/tool", bytes.NewReader(data), fs.Attr{Mode: 0o755}))
		o.commit()
		fsck(t, img)
		mustEqual(t, fmt.Sprintf("round %d", round), debugfsCat(t, img, "/usr/bin/tool"), data)
		if st := debugfsStat(t, img, "/usr/bin/tool"); st.size != int64(len(data)) {
			t.Fatalf("size %d", st.size)
		}
	}
}

// TestReplaceSymlinkWithFile: WriteFile over a symlink replaces the link,
// not its target.
func TestReplaceSymlinkWithFile(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "32M", tree: writeTree(t, baseTree)})
	o := openImage(t, img, fs.Options{})
	must(t, o.fs.Symlink("/etc/hostname", "/link", fs.Attr{}))
	must(t, o.fs.WriteFile("/link", strings.NewReader("now a file"), fs.Attr{Mode: 0o644}))
	o.commit()
	fsck(t, img)
	mustEqual(t, "/link", debugfsCat(t, img, "/link"), []byte("now a file"))
	mustEqual(t, "/etc/hostname", debugfsCat(t, img, "/etc/hostname"), []byte("raspberrypi\n"))
}

// TestLargeFileStreamed writes a 300 MB file from a streaming reader into a
// sparse image, then checks content and layout.
func TestLargeFileStreamed(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 300 MB")
	}
	img := makeImage(t, mkfsOpts{size: "2G", args: []string{"-b", "4096"}})
	o := openImage(t, img, fs.Options{})
	const size = 300 << 20
	start := time.Now()
	must(t, o.fs.WriteFile("/big.bin", &patternReader{n: size, seed: 5}, fs.Attr{Mode: 0o644}))
	must(t, o.fs.Close())
	committed, err := o.d.Commit()
	must(t, err)
	o.d.Close()
	t.Logf("300 MB into a 2 GiB image: %v, %d metadata bytes committed", time.Since(start), committed)
	// Data goes straight to its blocks; only changed metadata is committed.
	if committed > 1<<20 {
		t.Errorf("committed %d bytes of metadata for one file", committed)
	}
	fsck(t, img)
	want := sha256.New()
	io.Copy(want, &patternReader{n: size, seed: 5})
	dump := filepath.Join(t.TempDir(), "big")
	if out, err := exec.Command("debugfs", "-R", "dump /big.bin "+dump, img).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	fh, _ := os.Open(dump)
	got := sha256.New()
	io.Copy(got, fh)
	fh.Close()
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("300 MB file content differs")
	}
	st := debugfsStat(t, img, "/big.bin")
	if n := strings.Count(st.raw, "-"); n > 30 {
		t.Errorf("300 MB file is fragmented into many extents:\n%s", st.raw)
	}
}

// TestManySmallFiles writes a run of 500 small files.
func TestManySmallFiles(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "64M", args: []string{"-b", "4096"}})
	o := openImage(t, img, fs.Options{})
	must(t, o.fs.MkdirAll("/files", fs.Attr{Mode: 0o755}))
	for i := 0; i < 500; i++ {
		must(t, o.fs.WriteFile(fmt.Sprintf("/files/n%03d", i), strings.NewReader(fmt.Sprint(i)), fs.Attr{Mode: 0o644}))
	}
	o.commit()
	fsck(t, img)
	for _, i := range []int{0, 250, 499} {
		mustEqual(t, "small file", debugfsCat(t, img, fmt.Sprintf("/files/n%03d", i)), []byte(fmt.Sprint(i)))
	}
	o = openImage(t, img, fs.Options{ReadOnly: true})
	defer o.discard()
	ents, err := o.fs.ReadDir("/files")
	if err != nil || len(ents) != 500 {
		t.Fatalf("ReadDir = %d entries, %v", len(ents), err)
	}
}

// TestDeepExtentTree fragments free space so that one file needs hundreds
// of extents: an extent tree two levels below the inode, with checksummed
// index and leaf blocks.
func TestDeepExtentTree(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "32M", args: []string{"-b", "1024"}})
	o := openImage(t, img, fs.Options{})
	must(t, o.fs.MkdirAll("/frag", fs.Attr{Mode: 0o755}))
	for i := 0; i < 1200; i++ {
		must(t, o.fs.WriteFile(fmt.Sprintf("/frag/%04d", i), strings.NewReader("x"), fs.Attr{Mode: 0o644}))
	}
	o.commit()
	o = openImage(t, img, fs.Options{})
	for i := 0; i < 1200; i += 2 {
		must(t, o.fs.Remove(fmt.Sprintf("/frag/%04d", i)))
	}
	o.commit()
	o = openImage(t, img, fs.Options{})
	data := patternBytes(900<<10, 6)
	must(t, o.fs.WriteFile("/fragmented", bytes.NewReader(data), fs.Attr{Mode: 0o644}))
	o.commit()
	fsck(t, img)
	mustEqual(t, "/fragmented", debugfsCat(t, img, "/fragmented"), data)
	if out := debugfs(t, img, "ex /fragmented"); !strings.Contains(out, " 2/ 2 ") {
		t.Fatalf("expected an extent tree of depth 2:\n%.1500s", out)
	}
	// Removing it frees index blocks too.
	o = openImage(t, img, fs.Options{})
	must(t, o.fs.Remove("/fragmented"))
	o.commit()
	fsck(t, img)
}

// TestTripleIndirect writes a file past the double-indirect range of a
// 1K-block ext2 filesystem, then replaces and removes it.
func TestTripleIndirect(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 70 MB")
	}
	img := makeImage(t, mkfsOpts{size: "160M", prog: "mkfs.ext2", args: []string{"-b", "1024"}})
	o := openImage(t, img, fs.Options{})
	const size = (12 + 256 + 256*256 + 300) << 10
	must(t, o.fs.WriteFile("/huge", &patternReader{n: size, seed: 8}, fs.Attr{Mode: 0o644}))
	o.commit()
	fsck(t, img)
	if !strings.Contains(debugfs(t, img, "stat /huge"), "(TIND)") {
		t.Fatal("no triple-indirect block")
	}
	mustEqual(t, "/huge", debugfsCat(t, img, "/huge"), patternBytes(size, 8))
	o = openImage(t, img, fs.Options{})
	must(t, o.fs.Remove("/huge"))
	o.commit()
	fsck(t, img)
}

// TestWritesAreDeterministic applies the same changes to two copies of an
// image: the results must be byte-identical.
func TestWritesAreDeterministic(t *testing.T) {
	var images [2][]byte
	for i := range images {
		img := makeImage(t, mkfsOpts{size: "64M", tree: writeTree(t, baseTree)})
		o := openImage(t, img, fs.Options{})
		workload(t, o.fs)
		o.commit()
		images[i], _ = os.ReadFile(img)
	}
	if !bytes.Equal(images[0], images[1]) {
		t.Fatal("the same edits produced different images")
	}
}

// TestPlainFileDevices uses plain files as devices, with and without
// WriteThrough: without it, file data goes through WriteAt.
func TestPlainFileDevices(t *testing.T) {
	for _, through := range []bool{false, true} {
		img := makeImage(t, mkfsOpts{size: "32M", tree: writeTree(t, baseTree)})
		var dev fs.Device = fileDevice(t, img)
		if through {
			dev = fileDevThrough{fileDevice(t, img)}
		}
		f, err := Open(dev, fs.Options{DefaultTime: testTime})
		must(t, err)
		must(t, f.WriteFile("/data", &patternReader{n: 3 << 20, seed: 11}, fs.Attr{Mode: 0o644}))
		must(t, f.Close())
		fsck(t, img)
		mustEqual(t, "/data", debugfsCat(t, img, "/data"), patternBytes(3<<20, 11))
	}
}
