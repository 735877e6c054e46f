package ext4

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fs"
)

// growTree is a small root filesystem: nested directories, a few files
// spanning many blocks and one big enough for an extent tree of its own.
func growTree(t testing.TB) (string, map[string][]byte) {
	files := map[string]string{
		"etc/hostname":          "raspberrypi\n",
		"etc/os-release":        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
		"usr/lib/os-release":    "ID=debian\n",
		"var/lib/dpkg/status":   strings.Repeat("Package: x\nStatus: install ok installed\n\n", 400),
		"home/pi/.bashrc":       "# bashrc\n",
		"opt/app/blob.bin":      string(patternBytes(3<<20+123, 7)),
		"opt/app/small.bin":     string(patternBytes(5000, 8)),
		"boot/firmware/":        "",
		"usr/share/doc/a/b/c/d": "deep\n",
	}
	for i := 0; i < 60; i++ {
		files[fmt.Sprintf("usr/bin/tool%02d", i)] = string(patternBytes(int64(1000+i*997), uint64(i)))
	}
	want := map[string][]byte{}
	for p, c := range files {
		if !strings.HasSuffix(p, "/") {
			want["/"+p] = []byte(c)
		}
	}
	return writeTree(t, files), want
}

// growImage enlarges an image file to size bytes and grows its filesystem
// through internal/disk, as the build pipeline does.
func growImage(t testing.TB, img string, size int64) error {
	t.Helper()
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	d, err := disk.Open(img, disk.OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r, err := d.Region(0, d.Size())
	if err != nil {
		t.Fatal(err)
	}
	if err := Grow(r, 0, GrowOptions{}); err != nil {
		d.Discard()
		return err
	}
	if _, err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	return nil
}

var (
	reBlockCount = regexp.MustCompile(`(?m)^Block count:\s+(\d+)$`)
	reRsvGDT     = regexp.MustCompile(`(?m)^Reserved GDT blocks:\s+(\d+)$`)
	reGroupLine  = regexp.MustCompile(`(?m)^Group \d+: `)
)

// dumpe2fsGeometry returns the block count, group count and reserved GDT
// blocks as dumpe2fs reports them.
func dumpe2fsGeometry(t testing.TB, img string) (blocks, groups, rsv int64) {
	t.Helper()
	out, err := exec.Command("dumpe2fs", img).Output()
	if err != nil {
		t.Fatalf("dumpe2fs %s: %v", img, err)
	}
	m := reBlockCount.FindSubmatch(out)
	if m == nil {
		t.Fatalf("dumpe2fs: no block count:\n%s", out)
	}
	blocks, _ = strconv.ParseInt(string(m[1]), 10, 64)
	if m := reRsvGDT.FindSubmatch(out); m != nil {
		rsv, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	return blocks, int64(len(reGroupLine.FindAll(out, -1))), rsv
}

// checkGrown runs the oracles on a grown image: e2fsck, dumpe2fs geometry,
// debugfs reading every original file, resize2fs -P.
func checkGrown(t *testing.T, img string, blockSize, wantBlocks int64, files map[string][]byte) {
	t.Helper()
	fsck(t, img)
	blocks, groups, _ := dumpe2fsGeometry(t, img)
	first := int64(0)
	if blockSize == 1024 {
		first = 1
	}
	if blocks != wantBlocks || groups != (wantBlocks-first+8*blockSize-1)/(8*blockSize) {
		t.Fatalf("dumpe2fs: %d blocks in %d groups, want %d blocks", blocks, groups, wantBlocks)
	}
	debugfsFiles(t, img, files)
	if out, err := exec.Command("resize2fs", "-P", img).CombinedOutput(); err != nil {
		t.Fatalf("resize2fs -P: %v\n%s", err, out)
	}
}

// debugfsFiles checks files as e2fsprogs reads them, with one debugfs
// rdump of the whole tree instead of one dump per file.
func debugfsFiles(t *testing.T, img string, files map[string][]byte) {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("debugfs", "-R", "rdump / "+dir, img).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v\n%s", err, out)
	}
	for p, want := range files {
		got, err := os.ReadFile(dir + p)
		if err != nil {
			t.Fatalf("debugfs rdump lacks %s: %v", p, err)
		}
		mustEqual(t, "debugfs "+p, got, want)
	}
}

// writeFileInGroup is WriteFile with the inode and data placed in a given
// group, so tests can use the new groups without filling the old ones.
func (f *FS) writeFileInGroup(path string, r io.Reader, group uint32) error {
	return f.mutate("writefile", path, func() error {
		parent, name, err := f.parentOf(path)
		if err != nil {
			return err
		}
		d, err := f.loadDir(parent)
		if err != nil {
			return err
		}
		ino, err := f.allocInode(group, false)
		if err != nil {
			return err
		}
		in := f.newInodeRaw(ino)
		put16(in.raw, inMode, sIFREG|0o644)
		in.setTimes(f.opts.TimeFor(fs.Attr{}), true)
		runs, size, err := f.writeContent(r, f.groupFirstBlock(group))
		if err != nil {
			return err
		}
		if err := f.setContent(in, runs, size); err != nil {
			return err
		}
		in.setLinks(1)
		if err := f.writeInode(in); err != nil {
			return err
		}
		return f.dirAdd(d, dirEntry{name: name, ino: in.ino, ftype: direntType(sIFREG)})
	})
}

// useGrown writes files into the grown filesystem with the writer: some
// through WriteFile, some in the first, a middle and the last new group.
func useGrown(t *testing.T, img string, newGroups []uint32) map[string][]byte {
	t.Helper()
	o := openImage(t, img, fs.Options{})
	added := map[string][]byte{}
	must(t, o.fs.MkdirAll("/srv/new", fs.Attr{Mode: 0o755}))
	for i := 0; i < 20; i++ {
		p := fmt.Sprintf("/srv/new/f%02d", i)
		added[p] = patternBytes(int64(3000*i+1), uint64(100+i))
		must(t, o.fs.WriteFile(p, bytes.NewReader(added[p]), fs.Attr{Mode: 0o644}))
	}
	for _, g := range newGroups {
		p := fmt.Sprintf("/srv/new/in-group-%d", g)
		added[p] = patternBytes(1<<20+int64(g), uint64(g))
		must(t, o.fs.writeFileInGroup(p, bytes.NewReader(added[p]), g))
		st, err := o.fs.Stat(p)
		must(t, err)
		if got := uint32((st.Ino - 1) / uint64(o.fs.ipg)); got != g {
			t.Fatalf("%s: inode %d is in group %d, want %d", p, st.Ino, got, g)
		}
	}
	o.commit()
	return added
}

func growAndCheck(t *testing.T, img string, blockSize, newSize int64, files map[string][]byte) {
	t.Helper()
	oldGroups := func() uint32 {
		o := openImage(t, img, fs.Options{ReadOnly: true})
		defer o.discard()
		return o.fs.groups
	}()
	if err := growImage(t, img, newSize); err != nil {
		t.Fatalf("Grow: %v", err)
	}
	checkGrown(t, img, blockSize, newSize/blockSize, files)
	o := openImage(t, img, fs.Options{ReadOnly: true})
	groups := o.fs.groups
	o.discard()
	added := useGrown(t, img, []uint32{oldGroups, (oldGroups + groups) / 2, groups - 1})
	fsck(t, img)
	debugfsFiles(t, img, added)
	debugfsFiles(t, img, files)
}

// TestGrowRootTo6GiB grows a 1.5 GiB Debian-style root (one descriptor
// block) to 6 GiB: more groups in the same descriptor block.
func TestGrowRootTo6GiB(t *testing.T) {
	needTools(t, "dumpe2fs", "resize2fs")
	tree, files := growTree(t)
	img := makeImage(t, mkfsOpts{size: "1536M", tree: tree})
	growAndCheck(t, img, 4096, 6<<30, files)
	if _, _, rsv := dumpe2fsGeometry(t, img); rsv != 191 {
		t.Errorf("reserved GDT blocks = %d, want the 191 mke2fs made", rsv)
	}
}

// TestGrowRootTo20GiB needs three descriptor blocks, two of them taken from
// the reserved GDT blocks (resize inode rebuilt).
func TestGrowRootTo20GiB(t *testing.T) {
	needTools(t, "dumpe2fs", "resize2fs")
	tree, files := growTree(t)
	img := makeImage(t, mkfsOpts{size: "1536M", tree: tree})
	growAndCheck(t, img, 4096, 20<<30, files)
	if _, _, rsv := dumpe2fsGeometry(t, img); rsv != 189 {
		t.Errorf("reserved GDT blocks = %d, want 191-2", rsv)
	}
}

// TestGrow1KTo1GiB grows a 64 MiB filesystem with 1 KiB blocks to 1 GiB
// (eight descriptor blocks, seven from the reserve), then writes a file
// larger than the whole original filesystem.
func TestGrow1KTo1GiB(t *testing.T) {
	needTools(t, "dumpe2fs", "resize2fs")
	tree, files := growTree(t)
	img := makeImage(t, mkfsOpts{size: "64M", args: []string{"-b", "1024"}, tree: tree})
	growAndCheck(t, img, 1024, 1<<30, files)
	if _, _, rsv := dumpe2fsGeometry(t, img); rsv != 249 {
		t.Errorf("reserved GDT blocks = %d, want 256-7", rsv)
	}
	o := openImage(t, img, fs.Options{})
	big := &patternReader{n: 100 << 20, seed: 99}
	must(t, o.fs.WriteFile("/big", big, fs.Attr{Mode: 0o644}))
	o.commit()
	fsck(t, img)
	mustEqual(t, "debugfs /big", debugfsCat(t, img, "/big"), patternBytes(100<<20, 99))
}

// TestGrowThenFillWithWriteFile uses only the public API after growing: a
// filesystem with very few inodes per group is grown, then more files than
// the old groups hold inodes for and more data than they hold blocks for are
// written.
func TestGrowThenFillWithWriteFile(t *testing.T) {
	needTools(t, "dumpe2fs", "resize2fs")
	tree := writeTree(t, map[string]string{"etc/hostname": "pi\n"})
	img := makeImage(t, mkfsOpts{size: "256M", args: []string{"-b", "4096", "-N", "64"}, tree: tree})
	if err := growImage(t, img, 9<<30); err != nil {
		t.Fatal(err)
	}
	checkGrown(t, img, 4096, 9<<30/4096, map[string][]byte{"/etc/hostname": []byte("pi\n")})
	o := openImage(t, img, fs.Options{})
	for i := 0; i < 150; i++ {
		must(t, o.fs.WriteFile(fmt.Sprintf("/f%03d", i), strings.NewReader(fmt.Sprint(i)), fs.Attr{Mode: 0o644}))
	}
	must(t, o.fs.WriteFile("/big", &patternReader{n: 300 << 20, seed: 5}, fs.Attr{Mode: 0o644}))
	st, err := o.fs.Stat("/f149")
	must(t, err)
	if st.Ino <= uint64(2*o.fs.ipg) {
		t.Fatalf("inode %d of /f149 is not in a new group (%d inodes per group)", st.Ino, o.fs.ipg)
	}
	o.commit()
	fsck(t, img)
	mustEqual(t, "debugfs /big", debugfsCat(t, img, "/big"), patternBytes(300<<20, 5))
	if got := debugfsCat(t, img, "/f149"); string(got) != "149" {
		t.Fatalf("/f149 = %q", got)
	}
}

// TestGrowVariants covers the other feature sets: orphan_file with
// metadata_csum_seed, 32-bit descriptors with uninit_bg at both block
// sizes, no flex_bg, ext3 without group checksums (tables are zeroed),
// meta_bg within its last descriptor block, and the output of our own
// Format.
func TestGrowVariants(t *testing.T) {
	needTools(t, "dumpe2fs", "resize2fs")
	tree, files := growTree(t)
	cases := []struct {
		name    string
		o       mkfsOpts
		bs      int64
		newSize int64
	}{
		{"orphan_file+csum_seed", mkfsOpts{size: "300M", args: []string{"-b", "4096", "-O", "orphan_file,metadata_csum_seed"}}, 4096, 3 << 30},
		{"32bit-uninit_bg-4k", mkfsOpts{size: "300M", args: []string{"-b", "4096", "-O", "^64bit,^metadata_csum,uninit_bg"}}, 4096, 5 << 30},
		{"32bit-uninit_bg-1k", mkfsOpts{size: "40M", args: []string{"-b", "1024", "-O", "^64bit,^metadata_csum,uninit_bg"}}, 1024, 600 << 20},
		{"32bit-metadata_csum", mkfsOpts{size: "40M", args: []string{"-b", "1024", "-O", "^64bit"}}, 1024, 700 << 20},
		{"no-flex_bg", mkfsOpts{size: "200M", args: []string{"-b", "4096", "-O", "^flex_bg"}}, 4096, 2 << 30},
		{"ext3", mkfsOpts{size: "48M", prog: "mkfs.ext3", args: []string{"-b", "1024"}}, 1024, 300 << 20},
		{"meta_bg-within-block", mkfsOpts{size: "64M", args: []string{"-b", "1024", "-O", "meta_bg,^resize_inode"}}, 1024, 127 << 20},
		{"odd-size", mkfsOpts{size: "100M", args: []string{"-b", "4096"}}, 4096, 1<<30 + 12345<<12 + 777},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.o.tree = tree
			img := makeImage(t, c.o)
			growAndCheck(t, img, c.bs, c.newSize, files)
		})
	}
	t.Run("Format", func(t *testing.T) {
		img := formatImage(t, 512<<20, FormatParams{Label: "rootfs", Time: testTime, Features: []string{"+orphan_file"}})
		o := openImage(t, img, fs.Options{})
		for p, c := range files {
			must(t, o.fs.MkdirAll(p[:strings.LastIndexByte(p, '/')+1], fs.Attr{Mode: 0o755}))
			must(t, o.fs.WriteFile(p, bytes.NewReader(c), fs.Attr{Mode: 0o644}))
		}
		o.commit()
		growAndCheck(t, img, 4096, 12<<30, files)
	})
}

// TestGrowSmallTail: space for less than a useful group is not added as a
// group (like resize2fs); the last group is still extended to full size.
func TestGrowSmallTail(t *testing.T) {
	needTools(t, "dumpe2fs", "resize2fs")
	img := makeImage(t, mkfsOpts{size: "100M", args: []string{"-b", "4096"}}) // 25600 blocks: one partial group
	if err := growImage(t, img, 128<<20+100<<12); err != nil {
		t.Fatal(err)
	}
	checkGrown(t, img, 4096, 32768, nil)
	// Nothing to add: a no-op that changes no byte.
	sum := fileSum(t, img)
	if err := growImage(t, img, 128<<20+100<<12); err != nil {
		t.Fatal(err)
	}
	if fileSum(t, img) != sum {
		t.Fatal("a Grow with nothing to add changed the image")
	}
}

func allocatedBytes(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Blocks * 512
}

// fileSum hashes a file's content without reading its holes: runs of
// zeros (holes or written zeros alike) are hashed by length only.
func fileSum(t testing.TB, path string) string {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	st, _ := fh.Stat()
	h := sha256.New()
	var zeros int64
	flush := func() {
		if zeros > 0 {
			fmt.Fprintf(h, "[%d zeros]", zeros)
			zeros = 0
		}
	}
	buf := make([]byte, 64<<10)
	for off := int64(0); off < st.Size(); {
		data, err := fh.Seek(off, 3) // SEEK_DATA
		if err != nil {
			data = st.Size() // ENXIO: only a hole remains
		}
		zeros += data - off
		hole, err := fh.Seek(data, 4) // SEEK_HOLE
		if err != nil {
			hole = st.Size()
		}
		for p := data; p < hole; {
			n := min(int64(len(buf)), hole-p)
			if _, err := fh.ReadAt(buf[:n], p); err != nil {
				t.Fatal(err)
			}
			if isZero(buf[:n]) {
				zeros += n
			} else {
				flush()
				h.Write(buf[:n])
			}
			p += n
		}
		off = hole
	}
	flush()
	return fmt.Sprintf("%x", h.Sum(nil))
}

// TestGrowDeterministic: the same image grown twice gives the same bytes,
// and the grown image stays sparse (no inode tables written).
func TestGrowDeterministic(t *testing.T) {
	tree, _ := growTree(t)
	a := makeImage(t, mkfsOpts{size: "256M", args: []string{"-b", "4096"}, tree: tree})
	b := makeImage(t, mkfsOpts{size: "256M", args: []string{"-b", "4096"}, tree: tree})
	for _, img := range []string{a, b} {
		if err := growImage(t, img, 4<<30); err != nil {
			t.Fatal(err)
		}
	}
	if fileSum(t, a) != fileSum(t, b) {
		t.Fatal("growing identical images gave different bytes")
	}
	if n := allocatedBytes(t, a); n > 64<<20 {
		t.Fatalf("grown 4 GiB image allocates %d bytes; new groups' tables must stay holes", n)
	}
	// GrowOptions.Time stamps the superblock's write time.
	c := makeImage(t, mkfsOpts{size: "256M", args: []string{"-b", "4096"}, tree: tree})
	must(t, os.Truncate(c, 1<<30))
	d, err := disk.Open(c, disk.OpenOptions{Writable: true})
	must(t, err)
	r, _ := d.Region(0, d.Size())
	stamp := testTime.Add(48 * time.Hour)
	must(t, Grow(r, 0, GrowOptions{Time: stamp}))
	_, err = d.Commit()
	must(t, err)
	d.Close()
	cmd := exec.Command("dumpe2fs", "-h", c)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, _ := cmd.Output()
	if !strings.Contains(string(out), "Last write time:          "+stamp.Format("Mon Jan  2 15:04:05 2006")) {
		t.Fatalf("dumpe2fs does not show write time %v:\n%s", stamp, out)
	}
}

// TestGrowRefuses checks every refusal names its reason and changes
// nothing.
func TestGrowRefuses(t *testing.T) {
	needTools(t, "dumpe2fs")
	cases := []struct {
		name  string
		o     mkfsOpts
		prep  func(t *testing.T, img string)
		size  int64
		want  string
		isErr error
	}{
		{name: "shrink", o: mkfsOpts{size: "64M"}, size: 32 << 20, want: "shrinking is not supported", isErr: fs.ErrNotSupported},
		{name: "needs_recovery", o: mkfsOpts{size: "64M"}, size: 1 << 30, want: "journal needs recovery",
			prep: func(t *testing.T, img string) { runCmd(t, "debugfs", "-w", "-R", "feature needs_recovery", img) }},
		{name: "errors", o: mkfsOpts{size: "64M"}, size: 1 << 30, want: "having errors",
			prep: func(t *testing.T, img string) {
				patchSuperblock(t, img, func(sb []byte) { put16(sb, sbState, stateValid|stateErrors) })
			}},
		{name: "bigalloc", o: mkfsOpts{size: "64M", args: []string{"-O", "bigalloc", "-C", "16384"}}, size: 1 << 30, want: "bigalloc", isErr: fs.ErrNotSupported},
		{name: "sparse_super2", o: mkfsOpts{size: "64M", args: []string{"-O", "sparse_super2"}}, size: 1 << 30, want: "sparse_super2", isErr: fs.ErrNotSupported},
		{name: "meta_bg", o: mkfsOpts{size: "64M", args: []string{"-b", "1024", "-O", "meta_bg,^resize_inode"}}, size: 256 << 20, want: "meta_bg", isErr: fs.ErrNotSupported},
		{name: "no-resize_inode", o: mkfsOpts{size: "64M", args: []string{"-b", "1024", "-O", "^resize_inode"}}, size: 256 << 20, want: "reserved GDT blocks", isErr: fs.ErrNotSupported},
		{name: "past-reserve", o: mkfsOpts{size: "8M", args: []string{"-b", "1024", "-E", "resize=16384"}}, size: 9 << 30, want: "reserved GDT blocks", isErr: fs.ErrNotSupported},
		{name: "32bit-too-big", o: mkfsOpts{size: "64M", args: []string{"-b", "1024", "-O", "^64bit,^resize_inode"}}, size: 5 << 40, want: "64bit", isErr: fs.ErrNotSupported},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := makeImage(t, c.o)
			if c.prep != nil {
				c.prep(t, img)
			}
			if st, _ := os.Stat(img); st.Size() < c.size {
				// Grow reads only the old filesystem, so a sparse
				// enlargement is enough even for huge sizes.
				must(t, os.Truncate(img, c.size))
			}
			d, err := disk.Open(img, disk.OpenOptions{Writable: true})
			must(t, err)
			defer d.Close()
			r, _ := d.Region(0, d.Size())
			err = Grow(r, c.size, GrowOptions{})
			if err == nil || !strings.Contains(err.Error(), c.want) || (c.isErr != nil && !errors.Is(err, c.isErr)) {
				t.Fatalf("Grow = %v, want an error containing %q", err, c.want)
			}
			t.Log(err)
			if d.Dirty() {
				t.Fatal("a refused Grow buffered writes")
			}
		})
	}
	t.Run("beyond-device", func(t *testing.T) {
		img := makeImage(t, mkfsOpts{size: "64M"})
		d, err := disk.Open(img, disk.OpenOptions{Writable: true})
		must(t, err)
		defer d.Close()
		r, _ := d.Region(0, d.Size())
		if err := Grow(r, 128<<20, GrowOptions{}); err == nil || !strings.Contains(err.Error(), "outside the") {
			t.Fatalf("Grow past the device = %v", err)
		}
	})
}

// TestGrowToOneTiB: growing to 8192 groups costs metadata, not size: the
// image file stays small and e2fsck is clean.
func TestGrowToOneTiB(t *testing.T) {
	tree, files := growTree(t)
	img := makeImage(t, mkfsOpts{size: "1536M", tree: tree})
	before := allocatedBytes(t, img)
	if err := growImage(t, img, 1<<40); err != nil {
		t.Fatal(err)
	}
	if grown := allocatedBytes(t, img) - before; grown > 32<<20 {
		t.Fatalf("growing to 1 TiB allocated %d more bytes", grown)
	}
	fsck(t, img)
	mustEqual(t, "debugfs /opt/app/blob.bin", debugfsCat(t, img, "/opt/app/blob.bin"), files["/opt/app/blob.bin"])
}

var reCounters = regexp.MustCompile(`(?m)^(Inode count|Block count|Reserved block count|Free blocks|Free inodes|Reserved GDT blocks):\s+(\d+)$`)

// TestGrowMatchesResize2fs grows copies of the same image with Grow and
// with resize2fs: the superblock counters (blocks, inodes, free blocks,
// free inodes, reserved blocks, reserved GDT blocks) must agree exactly.
// The layouts differ (resize2fs may put new groups' tables into old
// space), the accounting must not.
func TestGrowMatchesResize2fs(t *testing.T) {
	needTools(t, "dumpe2fs", "resize2fs")
	tree, _ := growTree(t)
	for _, c := range []struct {
		name string
		o    mkfsOpts
		size int64
	}{
		{"4k-20GiB", mkfsOpts{size: "1536M", tree: tree}, 20 << 30},
		{"1k-1GiB", mkfsOpts{size: "64M", args: []string{"-b", "1024"}, tree: tree}, 1 << 30},
	} {
		t.Run(c.name, func(t *testing.T) {
			ours, theirs := makeImage(t, c.o), makeImage(t, c.o)
			if err := growImage(t, ours, c.size); err != nil {
				t.Fatal(err)
			}
			must(t, os.Truncate(theirs, c.size))
			runCmd(t, "resize2fs", theirs)
			counters := func(img string) string {
				var b strings.Builder
				for _, m := range reCounters.FindAllStringSubmatch(runCmd(t, "dumpe2fs", "-h", img), -1) {
					fmt.Fprintf(&b, "%s=%s\n", m[1], m[2])
				}
				return b.String()
			}
			if got, want := counters(ours), counters(theirs); got != want {
				t.Fatalf("Grow:\n%s\nresize2fs:\n%s", got, want)
			}
		})
	}
}
