package ext4

import (
	"fmt"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/fs"
)

// indexedEtcImage returns an image whose /etc holds n files and is hash
// indexed (mke2fs -d writes linear directories; e2fsck -D indexes them).
func indexedEtcImage(t *testing.T, n int, args ...string) string {
	t.Helper()
	img := makeImage(t, mkfsOpts{size: "40M", args: append([]string{"-N", "6000"}, args...), tree: bigEtcTree(t, n), index: true})
	if st := debugfsStat(t, img, "/etc"); st.flags&flagIndex == 0 {
		t.Fatalf("/etc is not hash-indexed (flags %#x); the test needs an htree", st.flags)
	}
	return img
}

// checkHtree asks debugfs to walk the index: every entry must be reachable
// through it with a matching hash.
func checkHtree(t *testing.T, img, dir string) {
	t.Helper()
	out := debugfs(t, img, "htree "+dir)
	if !strings.Contains(out, "Root node dump") || strings.Contains(out, "orrupt") || strings.Contains(out, "nvalid") {
		t.Fatalf("debugfs htree %s reports problems:\n%s", dir, out)
	}
}

// TestHtreeInsertStaysValid_Upstream307 adds one entry and then hundreds to
// a hash-indexed /etc. go-diskfs corrupts such directories on insert
// (issue #307: e2fsck "i_blocks is 136, should be 138" and bad htree).
func TestHtreeInsertStaysValid_Upstream307(t *testing.T) {
	for _, args := range [][]string{nil, {"-b", "4096"}, {"-O", "^metadata_csum,^64bit"}, {"-t", "ext3"}} {
		t.Run(fmt.Sprint(args), func(t *testing.T) {
			img := indexedEtcImage(t, 3000, args...)

			o := openImage(t, img, fs.Options{})
			if err := o.fs.WriteFile("/etc/one-more.conf", strings.NewReader("added\n"), fs.Attr{Mode: 0o644}); err != nil {
				t.Fatal(err)
			}
			o.commit()
			fsck(t, img)
			checkHtree(t, img, "/etc")
			mustEqual(t, "one-more.conf", debugfsCat(t, img, "/etc/one-more.conf"), []byte("added\n"))

			o = openImage(t, img, fs.Options{})
			for i := 0; i < 700; i++ {
				name := fmt.Sprintf("/etc/added-%04d-%s.conf", i, strings.Repeat("n", i%60))
				if err := o.fs.WriteFile(name, strings.NewReader(name), fs.Attr{Mode: 0o600, UID: 1000, GID: 1000}); err != nil {
					t.Fatal(err)
				}
			}
			o.commit()
			fsck(t, img)
			checkHtree(t, img, "/etc")
			if st := debugfsStat(t, img, "/etc"); st.flags&flagIndex == 0 {
				t.Fatalf("/etc lost its index flag")
			}
			for _, i := range []int{0, 1, 59, 350, 699} {
				name := fmt.Sprintf("/etc/added-%04d-%s.conf", i, strings.Repeat("n", i%60))
				mustEqual(t, name, debugfsCat(t, img, name), []byte(name))
				st := debugfsStat(t, img, name)
				if st.mode != 0o600 || st.uid != 1000 || st.gid != 1000 {
					t.Fatalf("%s: mode %o uid %d gid %d", name, st.mode, st.uid, st.gid)
				}
			}
			mustEqual(t, "old entry", debugfsCat(t, img, "/etc/conf-02999.d"), []byte("setting 2999\n"))

			// Every entry is found again through our own index lookups.
			o = openImage(t, img, fs.Options{ReadOnly: true})
			defer o.discard()
			ents, err := o.fs.ReadDir("/etc")
			if err != nil {
				t.Fatal(err)
			}
			if len(ents) != 3000+1+1+700 {
				t.Fatalf("ReadDir(/etc) = %d entries", len(ents))
			}
			for _, e := range ents {
				if _, err := o.fs.Lstat("/etc/" + e.Name); err != nil {
					t.Fatalf("Lstat via index: %v", err)
				}
			}
		})
	}
}

// TestHtreeRemoveStaysValid removes entries from an indexed directory
// (including whole leaves' worth) and re-adds some.
func TestHtreeRemoveStaysValid(t *testing.T) {
	img := indexedEtcImage(t, 3000)
	o := openImage(t, img, fs.Options{})
	for i := 0; i < 3000; i += 3 {
		if err := o.fs.Remove(fmt.Sprintf("/etc/conf-%05d.d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 50; i++ {
		if err := o.fs.WriteFile(fmt.Sprintf("/etc/conf-%05d.d", i*3), strings.NewReader("back\n"), fs.Attr{Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
	}
	o.commit()
	fsck(t, img)
	checkHtree(t, img, "/etc")
	mustEqual(t, "re-added", debugfsCat(t, img, "/etc/conf-00147.d"), []byte("back\n"))
	mustEqual(t, "kept", debugfsCat(t, img, "/etc/conf-00148.d"), []byte("setting 148\n"))
	if out := debugfs(t, img, "stat /etc/conf-00150.d"); !strings.Contains(out, "not found") && strings.Contains(out, "Inode:") {
		t.Fatalf("removed entry still present:\n%s", out)
	}
	o = openImage(t, img, fs.Options{ReadOnly: true})
	defer o.discard()
	if _, err := o.fs.Stat("/etc/conf-00150.d"); !errorsIs(err, fs.ErrNotExist) {
		t.Fatalf("Stat removed = %v", err)
	}
}

// TestLinearDirectoryGrowsIntoIndex fills a fresh directory past one
// block, which turns it into an htree like the kernel does.
func TestLinearDirectoryGrowsIntoIndex(t *testing.T) {
	for _, args := range [][]string{{"-b", "1024"}, {"-O", "^dir_index"}} {
		t.Run(fmt.Sprint(args), func(t *testing.T) {
			img := makeImage(t, mkfsOpts{size: "32M", args: args})
			o := openImage(t, img, fs.Options{})
			if err := o.fs.MkdirAll("/d", fs.Attr{Mode: 0o755}); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 400; i++ {
				if err := o.fs.Symlink("target", fmt.Sprintf("/d/link-%03d", i), fs.Attr{}); err != nil {
					t.Fatal(err)
				}
			}
			o.commit()
			fsck(t, img)
			st := debugfsStat(t, img, "/d")
			if indexed := st.flags&flagIndex != 0; indexed == (args[0] == "-O") {
				t.Fatalf("/d index flag = %v with %v", indexed, args)
			}
			if st := debugfsStat(t, img, "/d/link-399"); st.fastLink != "target" {
				t.Fatalf("link target %q", st.fastLink)
			}
		})
	}
}

// TestHtreeTwoLevels grows a directory past what a single dx root can
// index, which needs a second index level.
func TestHtreeTwoLevels(t *testing.T) {
	img := makeImage(t, mkfsOpts{size: "64M", args: []string{"-b", "1024", "-N", "20000"}})
	o := openImage(t, img, fs.Options{})
	if err := o.fs.MkdirAll("/big", fs.Attr{Mode: 0o755}); err != nil {
		t.Fatal(err)
	}
	name := func(i int) string { return fmt.Sprintf("/big/%s-%06d", strings.Repeat("long-name-", 8), i) }
	for i := 0; i < 12000; i++ {
		if err := o.fs.Mknod(name(i), 0o644|iofsModeNamedPipe, 0, fs.Attr{}); err != nil {
			t.Fatal(err)
		}
	}
	o.commit()
	fsck(t, img)
	if out := debugfs(t, img, "htree /big"); !strings.Contains(out, "Indirect levels: 1") {
		t.Fatalf("expected a two-level htree:\n%.2000s", out)
	}
	o = openImage(t, img, fs.Options{})
	for i := 0; i < 12000; i += 2 {
		if err := o.fs.Remove(name(i)); err != nil {
			t.Fatal(err)
		}
	}
	o.commit()
	fsck(t, img)
	o = openImage(t, img, fs.Options{ReadOnly: true})
	defer o.discard()
	for i := 1; i < 12000; i += 998 {
		if _, err := o.fs.Lstat(name(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := o.fs.Lstat(name(10)); !errorsIs(err, fs.ErrNotExist) {
		t.Fatalf("removed entry: %v", err)
	}
}
