package ext4

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/testimage"
)

func usedExtents(t testing.TB, img string) []fs.Extent {
	t.Helper()
	o := openImage(t, img, fs.Options{ReadOnly: true})
	defer o.discard()
	ext, err := o.fs.UsedExtents()
	if err != nil {
		t.Fatal(err)
	}
	size := int64(o.fs.blocks) * int64(o.fs.blockSize)
	for i, e := range ext {
		if e.Len <= 0 || e.Off < 0 || e.End() > size || (i > 0 && e.Off <= ext[i-1].End()) {
			t.Fatalf("extent %d %+v: not sorted, merged and inside the %d-byte filesystem", i, e, size)
		}
	}
	return ext
}

func totalLen(ext []fs.Extent) int64 {
	var n int64
	for _, e := range ext {
		n += e.Len
	}
	return n
}

// TestUsedExtentsOnReusedCard is the flashing oracle: a sparse image is
// copied onto a "card" full of random bytes, writing only its data ranges
// plus UsedExtents; e2fsck must find the result clean and every file
// intact. Inode tables that nothing reads (INODE_UNINIT groups without
// ITABLE_ZEROED, as Grow leaves them) stay random.
func TestUsedExtentsOnReusedCard(t *testing.T) {
	needTools(t, "fallocate")
	tree, files := growTree(t)
	cases := []struct {
		name string
		o    mkfsOpts
		grow int64
	}{
		{"4k", mkfsOpts{size: "256M", args: []string{"-b", "4096"}, tree: tree}, 0},
		{"1k-lazy-itable", mkfsOpts{size: "64M", args: []string{"-b", "1024", "-E", "lazy_itable_init=1"}, tree: tree}, 0},
		{"32bit-uninit_bg", mkfsOpts{size: "96M", args: []string{"-O", "^64bit,^metadata_csum,uninit_bg"}, tree: tree}, 0},
		{"ext3", mkfsOpts{size: "32M", prog: "mkfs.ext3", tree: tree}, 0},
		{"grown", mkfsOpts{size: "64M", args: []string{"-b", "4096"}, tree: tree}, 512 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := makeImage(t, c.o)
			if c.grow > 0 {
				if err := growImage(t, img, c.grow); err != nil {
					t.Fatal(err)
				}
			}
			testimage.MakeSparse(t, img)
			data := testimage.DataRanges(t, img)
			used := usedExtents(t, img)
			card := testimage.ReusedCard(t, img, fs.MergeExtents(append(append([]fs.Extent(nil), data...), used...)), 1)
			fsck(t, card)
			debugfsFiles(t, card, files)
			t.Logf("data %d bytes, used %d bytes", totalLen(data), totalLen(used))
			if c.o.prog == "mkfs.ext3" {
				// Without group checksums every inode table is read, and
				// its all-zero blocks are holes: copying the data ranges
				// alone (what bmaptool does) leaves the old bytes there.
				// With group checksums e2fsck happens to pass, but the
				// zeroed journal and ITABLE_ZEROED tables still hold
				// garbage the kernel trusts later.
				bad := testimage.ReusedCard(t, img, data, 1)
				out, err := exec.Command("e2fsck", "-fn", bad).CombinedOutput()
				if err == nil || !strings.Contains(string(out), "Inode") {
					t.Fatalf("data ranges alone: e2fsck -fn passed (%v):\n%s", err, out)
				}
			}
		})
	}
}

// covered reports how many bytes of [off, off+n) the extents cover.
func covered(ext []fs.Extent, off, n int64) int64 {
	var c int64
	for _, e := range ext {
		lo, hi := max(e.Off, off), min(e.End(), off+n)
		if hi > lo {
			c += hi - lo
		}
	}
	return c
}

// TestUsedExtentsInodeTables checks the inode table rule group by group on
// a lazily initialised image that was then grown: tables flagged
// ITABLE_ZEROED are listed whole, others only up to their last live inode,
// INODE_UNINIT ones not at all; bitmaps, superblock and descriptor copies
// and every file block are listed.
func TestUsedExtentsInodeTables(t *testing.T) {
	tree, _ := growTree(t)
	img := makeImage(t, mkfsOpts{size: "300M", args: []string{"-b", "4096", "-E", "lazy_itable_init=1"}, tree: tree})
	if err := growImage(t, img, 2<<30); err != nil {
		t.Fatal(err)
	}
	used := usedExtents(t, img)
	o := openImage(t, img, fs.Options{ReadOnly: true})
	defer o.discard()
	f := o.fs
	bs := int64(f.blockSize)
	tableBytes := int64(f.itableBlocks) * bs
	var sawZeroed, sawPartial, sawUninit bool
	for g := uint32(0); g < f.groups; g++ {
		d, err := f.desc(g)
		must(t, err)
		off := int64(d.inodeTable) * bs
		var want int64
		switch {
		case d.flags&bgItableZeroed != 0:
			want, sawZeroed = tableBytes, true
		case d.flags&bgInodeUninit != 0:
			want, sawUninit = 0, true
		default:
			live := int64(f.ipg - d.itableUnused)
			want = (live*int64(f.inodeSize) + bs - 1) / bs * bs
			sawPartial = true
		}
		if got := covered(used, off, tableBytes); got != want {
			t.Errorf("group %d (flags %#x, %d unused): %d bytes of its inode table listed, want %d", g, d.flags, d.itableUnused, got, want)
		}
		for _, b := range []uint64{d.blockBitmap, d.inodeBitmap} {
			if covered(used, int64(b)*bs, bs) != bs {
				t.Errorf("group %d: bitmap block %d not listed", g, b)
			}
		}
		if f.hasSuper(g) {
			if n := int64(f.baseMetaBlocks(g)) * bs; covered(used, int64(f.groupFirstBlock(g))*bs, n) != n {
				t.Errorf("group %d: superblock/descriptor copies not listed", g)
			}
		}
	}
	if !sawPartial || !sawUninit {
		t.Fatalf("image lacks the cases to check (partial %v, uninit %v, zeroed %v)", sawPartial, sawUninit, sawZeroed)
	}
	in, err := f.readInode(journalIno)
	must(t, err)
	m, err := f.readMap(in)
	must(t, err)
	for _, r := range m.runs {
		if n := int64(r.length) * bs; covered(used, int64(r.phys)*bs, n) != n {
			t.Fatalf("journal run %+v not listed", r)
		}
	}
}
