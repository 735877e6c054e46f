package fat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
)

// Every test here writes through the real production path (disk.Open,
// Region, Commit) and then asks fsck.fat -n and mtools.

func TestCreateAndRead(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		s := open(t, img)
		want := map[string][]byte{
			"/config.txt":         []byte("arm_64bit=1\n"),
			"/cmdline.txt":        []byte("console=serial0,115200 root=PARTUUID=1234-02\n"),
			"/overlays/README":    pattern(3000, 2),
			"/firmware/a/b/x.bin": pattern(70000, 3),
		}
		s.mkdir("/overlays")
		s.mkdir("/firmware/a/b")
		for p, b := range want {
			s.write(p, b)
		}
		for p, b := range want {
			if got := s.read(p); !bytes.Equal(got, b) {
				t.Fatalf("ReadFile %s differs", p)
			}
		}
		s.commit()
		checkOracles(t, img, want)
		if got := mnames(t, img, "/firmware/a"); !slices.Equal(got, []string{"b"}) {
			t.Fatalf("mdir /firmware/a = %q", got)
		}
	})
}

// TestReplaceTruncates: go-diskfs OpenFile(O_CREATE|O_RDWR) keeps the old
// contents and clusters of an existing file (and its O_TRUNC keeps a cluster
// and breaks on files without one). Replacing must free the surplus clusters
// and set the size.
func TestReplaceTruncates(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		// A file made by mtools, replaced by us: larger, smaller, empty, small.
		exec.Command("mcopy", "-i", img, "/dev/null", "::/mt-empty").Run()
		s := open(t, img)
		u0, _ := s.f.Usage()
		s.write("/mt-empty", []byte("now has data"))
		s.write("/k", pattern(10000, 1))
		s.write("/k", pattern(50000, 2))
		s.write("/k", pattern(700, 3))
		u1, _ := s.f.Usage()
		s.write("/k", nil)
		s.write("/k", []byte("last"))
		if fi, _ := s.f.Stat("/k"); fi.Size != 4 {
			t.Fatalf("size after replace = %d", fi.Size)
		}
		bpc := s.f.g.bytesPerCluster
		used := func(n int64) int64 { return (n + bpc - 1) / bpc * bpc }
		if got, want := u0.FreeBytes-u1.FreeBytes, used(12)+used(700); got != want {
			t.Fatalf("replacing leaked space: %d bytes in use, want %d", got, want)
		}
		s.commit()
		checkOracles(t, img, map[string][]byte{"/k": []byte("last"), "/mt-empty": []byte("now has data")})
	})
}

// TestRemoveOnFAT32: go-diskfs Remove panicked with "slice bounds out of
// range [:512] with capacity 0" in writeDirectoryEntries when removing
// /config.txt from an mkfs.vfat -F 32 image: without a volume label the
// root then has no entries, go-diskfs serialises zero bytes and slices a
// whole cluster out of them. It also never frees the removed file's
// clusters. Our Remove does neither.
func TestRemoveOnFAT32(t *testing.T) {
	needTools(t)
	img := mkfs(t, image{bits: 32, sizeKB: 64 << 10})
	// mkfs.fat without -n: no label entry in the root.
	if out, err := exec.Command("mkfs.fat", "-F", "32", "-i", "0BADF00D", img).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	cfg := writeTemp(t, []byte("dtoverlay=vc4-kms-v3d\n"))
	if out, err := exec.Command("mcopy", "-i", img, cfg, "::/config.txt").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	s := open(t, img)
	if err := s.f.Remove("/config.txt"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.f.Stat("/config.txt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat after Remove: %v", err)
	}
	// The emptied root still takes new entries (go-diskfs writes into it).
	s.write("/new.txt", []byte("x"))
	if err := s.f.Remove("/new.txt"); err != nil {
		t.Fatal(err)
	}
	s.commit()
	fsck(t, img)
	if got := mnames(t, img, "/"); len(got) != 0 {
		t.Fatalf("root not empty: %q", got)
	}
}

func TestRemove(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		s := open(t, img)
		u0, _ := s.f.Usage()
		s.mkdir("/d/e")
		s.write("/d/e/f", pattern(9000, 1))
		s.write("/d/g", pattern(100, 1))
		s.write("/h", nil)
		for _, p := range []string{"/d", "/d/e"} {
			if err := s.f.Remove(p); !errors.Is(err, fs.ErrNotEmpty) {
				t.Fatalf("Remove %s = %v, want ErrNotEmpty", p, err)
			}
		}
		for _, p := range []string{"/d/e/f", "/d/e", "/d/g", "/d", "/h"} {
			if err := s.f.Remove(p); err != nil {
				t.Fatalf("Remove %s: %v", p, err)
			}
		}
		if err := s.f.Remove("/d"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Remove twice = %v", err)
		}
		if err := s.f.Remove("/"); !errors.Is(err, fs.ErrInvalidPath) {
			t.Fatalf("Remove / = %v", err)
		}
		if u1, _ := s.f.Usage(); u1 != u0 {
			t.Fatalf("usage after removing everything %+v, before %+v", u1, u0)
		}
		s.commit()
		fsck(t, img)
		if got := mnames(t, img, "/"); len(got) != 0 {
			t.Fatalf("root not empty: %q", got)
		}
	})
}

func TestMkdirAllDeep(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		s := open(t, img)
		var parts []string
		for i := 0; i < 40; i++ {
			parts = append(parts, fmt.Sprintf("Level%02d", i))
		}
		deep := "/" + strings.Join(parts, "/")
		s.mkdir(deep)
		s.mkdir(deep) // exists: no error, nothing changes
		s.mkdir("/" + strings.Join(parts[:10], "/") + "/side/branch")
		s.write(deep+"/leaf.txt", []byte("deep"))
		if err := s.f.MkdirAll(deep+"/leaf.txt/x", fs.Attr{}); !errors.Is(err, fs.ErrNotDir) {
			t.Fatalf("MkdirAll through a file = %v", err)
		}
		if err := s.f.MkdirAll(deep+"/leaf.txt", fs.Attr{}); !errors.Is(err, fs.ErrNotDir) {
			t.Fatalf("MkdirAll on a file = %v", err)
		}
		fi, err := s.f.Stat(deep)
		if err != nil || !fi.IsDir() || fi.Mode.Perm() != 0o755 || !fi.ModTime.Equal(testTime) {
			t.Fatalf("Stat %s = %+v, %v", deep, fi, err)
		}
		s.commit()
		checkOracles(t, img, map[string][]byte{deep + "/leaf.txt": []byte("deep")})
	})
}

// TestLongNamesMixedCase: names are case-preserving (mtools shows exactly
// what we wrote), matched case-insensitively, and non-ASCII long names are
// encoded as UTF-16 in the minimum number of slots (go-diskfs counts UTF-8
// bytes and leaves slots of 0xFFFF that mtools shows as garbage).
func TestLongNamesMixedCase(t *testing.T) {
	names := []string{
		"CONFIG.TXT", "lower.txt", "MiXeD.TxT", "README", "Hello World.Markdown",
		"café.txt", "日本語のファイル名.txt", "Łódź Ő〰.txt", ".bashrc", "x.tar.gz", "a b c",
		"exactly13char", "exactly-26-characters-long", strings.Repeat("L", 255),
		strings.Repeat("é", 120) + ".txt",
	}
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		s := open(t, img)
		s.mkdir("/n")
		want := map[string][]byte{}
		for i, n := range names {
			b := []byte(fmt.Sprintf("file %d", i))
			s.write("/n/"+n, b)
			want["/n/"+n] = b
		}
		for _, n := range names {
			for _, alias := range []string{strings.ToUpper(n), strings.ToLower(n)} {
				fi, err := s.f.Stat("/n/" + alias)
				if err != nil || fi.Name != n {
					t.Fatalf("Stat %q = %q, %v; want %q", alias, fi.Name, err, n)
				}
			}
		}
		// Writing under another case replaces the same file, keeping its name.
		s.write("/n/config.txt", []byte("replaced"))
		want["/n/CONFIG.TXT"] = []byte("replaced")
		s.commit()
		checkOracles(t, img, want)
		got := mnames(t, img, "/n")
		w := slices.Clone(names)
		slices.Sort(got)
		slices.Sort(w)
		if !slices.Equal(got, w) {
			t.Fatalf("mtools names:\n%q\nwant\n%q", got, w)
		}
	})
}

// TestShortNameCollisions: go-diskfs checks for a clashing 8.3 alias only
// when it had to shorten the name, so "a+b.txt" and "a,b.txt" both became
// A_B.TXT (fsck.fat: "Duplicate directory entry"). Numeric tails ~1..~N.
func TestShortNameCollisions(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		s := open(t, img)
		want := map[string][]byte{}
		var names []string
		for _, n := range []string{"a+b.txt", "a,b.txt", "a;b.txt", "a=b.txt", "a b.txt", ".hidden", "_hidden", "hidden"} {
			names = append(names, n)
		}
		for i := 1; i <= 12; i++ {
			names = append(names, fmt.Sprintf("longfilename%d.txt", i))
		}
		for i, n := range names {
			b := []byte(fmt.Sprint(i))
			s.write("/"+n, b)
			want["/"+n] = b
		}
		// Aliases reach the same files.
		if got := s.read("/LONGFI~1.TXT"); !bytes.Equal(got, want["/longfilename1.txt"]) {
			t.Fatalf("alias read %q", got)
		}
		s.commit()
		checkOracles(t, img, want)
	})
}

// TestDirectoryGrowsBeyondCluster: a directory needing many clusters (512-byte
// clusters, 300 long names) and a FAT12/16 root filled to its last slot.
func TestDirectoryGrowsBeyondCluster(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		im.args = []string{"-s", "1"}
		if im.bits == 12 {
			im.sizeKB = 1440
		}
		img := mkfs(t, im)
		s := open(t, img)
		s.mkdir("/many")
		want := map[string][]byte{}
		for i := 0; i < 300; i++ {
			p := fmt.Sprintf("/many/a rather long file name number %03d.dat", i)
			want[p] = []byte(p)
			s.write(p, []byte(p))
		}
		d, err := s.f.ReadDir("/many")
		if err != nil || len(d) != 300 {
			t.Fatalf("ReadDir: %d entries, %v", len(d), err)
		}
		s.commit()
		checkOracles(t, img, want)
		if n := len(mnames(t, img, "/many")); n != 300 {
			t.Fatalf("mtools lists %d entries", n)
		}
	})
}

// TestRootDirectoryFull: the FAT12/16 root has a fixed number of slots. When
// it is full, creating more fails with ErrNoSpace, nothing changes, and the
// filesystem stays usable.
func TestRootDirectoryFull(t *testing.T) {
	for _, im := range images[:2] {
		t.Run(im.String(), func(t *testing.T) {
			t.Parallel()
			im.args = []string{"-r", "16"} // 16 root slots; one is the label
			img := mkfs(t, im)
			s := open(t, img)
			want := map[string][]byte{}
			var err error
			n := 0
			for ; n < 100; n++ {
				p := fmt.Sprintf("/F%d", n)
				if err = s.f.WriteFile(p, bytes.NewReader([]byte(p)), fs.Attr{Mode: 0o644}); err != nil {
					break
				}
				want[p] = []byte(p)
			}
			if want := int(s.f.g.rootEntries) - 1; !errors.Is(err, fs.ErrNoSpace) || n != want {
				t.Fatalf("after %d files: %v, want ErrNoSpace after %d", n, err, want)
			}
			if err := s.f.MkdirAll("/dir", fs.Attr{}); !errors.Is(err, fs.ErrNoSpace) {
				t.Fatalf("MkdirAll in full root = %v", err)
			}
			if err := s.f.WriteFile("/a long name.txt", bytes.NewReader(nil), fs.Attr{}); !errors.Is(err, fs.ErrNoSpace) {
				t.Fatalf("long name in full root = %v", err)
			}
			// Still usable: replace and remove work.
			s.write("/F3", []byte("again"))
			want["/F3"] = []byte("again")
			if err := s.f.Remove("/F0"); err != nil {
				t.Fatal(err)
			}
			delete(want, "/F0")
			s.write("/G", []byte("g"))
			want["/G"] = []byte("g")
			s.commit()
			checkOracles(t, img, want)
		})
	}
}

// TestDiskFull: a file larger than the free space fails with ErrNoSpace and
// leaves the filesystem as it was; a file that exactly fills it works.
func TestDiskFull(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		s := open(t, img)
		s.write("/keep", []byte("keep me"))
		u0, _ := s.f.Usage()
		err := s.f.WriteFile("/huge", bytes.NewReader(make([]byte, u0.FreeBytes+1)), fs.Attr{})
		if !errors.Is(err, fs.ErrNoSpace) {
			t.Fatalf("WriteFile bigger than the disk = %v", err)
		}
		var pe *os.PathError
		if !errors.As(err, &pe) || pe.Path != "/huge" {
			t.Fatalf("error %v is not a PathError for /huge", err)
		}
		if u1, _ := s.f.Usage(); u1 != u0 {
			t.Fatalf("usage changed by a failed write: %+v -> %+v", u0, u1)
		}
		if _, err := s.f.Stat("/huge"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("failed file exists: %v", err)
		}
		full := pattern(int(u0.FreeBytes), 5)
		s.write("/fill", full)
		if u, _ := s.f.Usage(); u.FreeBytes != 0 {
			t.Fatalf("free after filling: %d", u.FreeBytes)
		}
		if err := s.f.MkdirAll("/nospace", fs.Attr{}); !errors.Is(err, fs.ErrNoSpace) {
			t.Fatalf("MkdirAll on a full disk = %v", err)
		}
		// Renaming needs no space, even on a full disk.
		if err := s.f.Rename("/fill", "/filled"); err != nil {
			t.Fatalf("Rename on a full disk: %v", err)
		}
		s.commit()
		checkOracles(t, img, map[string][]byte{"/keep": []byte("keep me"), "/filled": full})
	})
}

// TestFailedOperationDiscardByteIdentical: after a failed operation the
// caller discards the device buffer; the image is then byte-identical. And
// even without discarding, a failed operation has been rolled back.
func TestFailedOperationDiscardByteIdentical(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		s := open(t, img)
		s.mkdir("/d")
		s.write("/d/a", pattern(5000, 1))
		s.commit()
		before, _ := os.ReadFile(img)

		s = open(t, img)
		u, _ := s.f.Usage()
		s.write("/d/b", []byte("ok"))
		if err := s.f.WriteFile("/d/c", bytes.NewReader(make([]byte, u.FreeBytes*2)), fs.Attr{}); !errors.Is(err, fs.ErrNoSpace) {
			t.Fatal(err)
		}
		s.discard()
		after, _ := os.ReadFile(img)
		if !bytes.Equal(before, after) {
			t.Fatal("image changed after a failed operation and Discard")
		}

		// Rolled back in place: the metadata is exactly as before the call.
		s = open(t, img)
		s.write("/d/b", []byte("ok"))
		snap := func() []byte {
			b := make([]byte, s.f.g.dataOffset+64<<10)
			s.d.ReadAt(b, 0)
			return b
		}
		m0 := snap()
		if err := s.f.WriteFile("/d/c", bytes.NewReader(make([]byte, u.FreeBytes*2)), fs.Attr{}); !errors.Is(err, fs.ErrNoSpace) {
			t.Fatal(err)
		}
		if err := s.f.Rename("/d", "/d/sub"); !errors.Is(err, fs.ErrInvalidPath) {
			t.Fatalf("rename into itself = %v", err)
		}
		if !bytes.Equal(m0, snap()) {
			t.Fatal("failed operations changed the metadata in the device buffer")
		}
		s.commit()
		checkOracles(t, img, map[string][]byte{"/d/a": pattern(5000, 1), "/d/b": []byte("ok")})
	})
}

func TestRename(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		s := open(t, img)
		s.mkdir("/src/sub")
		s.mkdir("/dst")
		s.write("/src/sub/deep.txt", []byte("deep"))
		s.write("/src/file.txt", []byte("file"))
		s.write("/a.txt", []byte("a"))
		s.write("/b.txt", []byte("b"))
		old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
		if err := s.f.Chtimes("/src/file.txt", old); err != nil {
			t.Fatal(err)
		}
		u0, _ := s.f.Usage()
		steps := []struct{ from, to string }{
			{"/src/file.txt", "/src/renamed in place.txt"},  // same directory
			{"/src/renamed in place.txt", "/dst/Moved.TXT"}, // across directories
			{"/dst/Moved.TXT", "/dst/moved.txt"},            // case only
			{"/a.txt", "/b.txt"},                            // replaces b
			{"/src/sub", "/dst/sub2"},                       // a directory across directories
			{"/dst", "/Destination"},                        // a directory in place
		}
		for _, st := range steps {
			if err := s.f.Rename(st.from, st.to); err != nil {
				t.Fatalf("Rename %s -> %s: %v", st.from, st.to, err)
			}
		}
		fi, err := s.f.Stat("/destination/MOVED.TXT")
		if err != nil || fi.Name != "moved.txt" || !fi.ModTime.Equal(old) || fi.Size != 4 {
			t.Fatalf("moved file %+v %v", fi, err)
		}
		if u1, _ := s.f.Usage(); u0.FreeBytes-u1.FreeBytes != -s.f.g.bytesPerCluster {
			t.Fatalf("rename changed usage other than freeing b.txt: %d", u0.FreeBytes-u1.FreeBytes)
		}
		for _, bad := range []struct {
			from, to string
			err      error
		}{
			{"/Destination", "/Destination/sub2/x", fs.ErrInvalidPath},
			{"/missing", "/x", fs.ErrNotExist},
			{"/b.txt", "/nodir/x", fs.ErrNotExist},
			{"/b.txt", "/Destination", fs.ErrIsDir},
			{"/Destination/sub2", "/b.txt", fs.ErrNotDir},
			{"/src", "/Destination", fs.ErrNotEmpty},
			{"/b.txt", "/bad*name", fs.ErrInvalidPath},
		} {
			if err := s.f.Rename(bad.from, bad.to); !errors.Is(err, bad.err) {
				t.Fatalf("Rename %s -> %s = %v, want %v", bad.from, bad.to, err, bad.err)
			}
		}
		s.mkdir("/empty")
		if err := s.f.Rename("/src", "/empty"); err != nil { // onto an empty directory
			t.Fatal(err)
		}
		if err := s.f.Rename("/b.txt", "/b.txt"); err != nil {
			t.Fatal(err)
		}
		s.commit()
		checkOracles(t, img, map[string][]byte{
			"/Destination/moved.txt":     []byte("file"),
			"/Destination/sub2/deep.txt": []byte("deep"),
			"/b.txt":                     []byte("a"),
		})
		if got := mnames(t, img, "/Destination"); !slices.Equal(got, []string{"sub2", "moved.txt"}) && !slices.Equal(got, []string{"moved.txt", "sub2"}) {
			t.Fatalf("mdir /Destination = %q", got)
		}
	})
}

// TestChtimes: times come from the caller (never time.Now), at FAT's
// 2-second granularity, and mtools shows them.
func TestChtimes(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		s := open(t, img)
		s.write("/f", []byte("x"))
		s.mkdir("/d")
		at := time.Date(2019, 12, 31, 23, 58, 59, 999, time.UTC)
		for _, p := range []string{"/f", "/d", "/"} {
			if err := s.f.Chtimes(p, at); err != nil {
				t.Fatal(err)
			}
		}
		fi, _ := s.f.Stat("/f")
		if want := at.Truncate(2 * time.Second); !fi.ModTime.Equal(want) {
			t.Fatalf("mtime %v, want %v", fi.ModTime, want)
		}
		if err := s.f.WriteFile("/g", bytes.NewReader(nil), fs.Attr{ModTime: time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)}); err != nil {
			t.Fatal(err)
		}
		if fi, _ := s.f.Stat("/g"); !fi.ModTime.Equal(minTime) {
			t.Fatalf("pre-1980 time stored as %v", fi.ModTime)
		}
		s.commit()
		fsck(t, img)
		out, _ := exec.Command("mdir", "-i", img, "::/").CombinedOutput()
		if !strings.Contains(string(out), "2019-12-31  23:58") || !strings.Contains(string(out), "1980-01-01") {
			t.Fatalf("mdir does not show the times:\n%s", out)
		}
	})
}

// TestChmodReadOnly maps the owner write bit to the read-only attribute.
func TestChmodReadOnly(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		s := open(t, img)
		s.write("/rw", []byte("x"))
		if err := s.f.WriteFile("/ro", bytes.NewReader([]byte("y")), fs.Attr{Mode: 0o444}); err != nil {
			t.Fatal(err)
		}
		if fi, _ := s.f.Stat("/ro"); fi.Mode != 0o444 {
			t.Fatalf("mode %v", fi.Mode)
		}
		if err := s.f.Chmod("/rw", 0o400); err != nil {
			t.Fatal(err)
		}
		if err := s.f.Chmod("/ro", 0o600); err != nil {
			t.Fatal(err)
		}
		if fi, _ := s.f.Stat("/rw"); fi.Mode != 0o444 {
			t.Fatalf("mode %v", fi.Mode)
		}
		if fi, _ := s.f.Stat("/ro"); fi.Mode != 0o644 {
			t.Fatalf("mode %v", fi.Mode)
		}
		s.commit()
		fsck(t, img)
		out, _ := exec.Command("mattrib", "-i", img, "::/rw", "::/ro").CombinedOutput()
		attrs := map[string]string{}
		for _, l := range strings.Split(string(out), "\n") {
			if i := strings.Index(l, "::/"); i >= 0 {
				attrs[l[i+3:]] = strings.TrimSpace(l[:i])
			}
		}
		if attrs["rw"] != "A    R" || attrs["ro"] != "A" {
			t.Fatalf("mattrib:\n%s", out)
		}
	})
}

// TestClusterMultipleSizes: sizes around cluster boundaries and empty files
// (which own no cluster; go-diskfs gives them one and fsck.fat complains
// "File size is 0 bytes, cluster chain length is > 0 bytes").
func TestClusterMultipleSizes(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		s := open(t, img)
		bpc := int(s.f.g.bytesPerCluster)
		want := map[string][]byte{}
		for i, n := range []int{0, 1, bpc - 1, bpc, bpc + 1, 2 * bpc, 3*bpc - 1, 8 * bpc} {
			p := fmt.Sprintf("/size-%d", n)
			want[p] = pattern(n, byte(i))
			s.write(p, want[p])
		}
		for p, b := range want {
			f, err := s.f.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			if f.Size() != int64(len(b)) {
				t.Fatalf("%s size %d", p, f.Size())
			}
			// Unaligned ReadAt across cluster boundaries.
			if len(b) > 3 {
				got := make([]byte, len(b)-3)
				if n, err := f.ReadAt(got, 2); n != len(got) || err != nil && len(b) != 0 || !bytes.Equal(got, b[2:len(b)-1]) {
					t.Fatalf("%s ReadAt: %d %v", p, n, err)
				}
			}
			f.Close()
		}
		s.commit()
		checkOracles(t, img, want)
	})
}

// TestVolumeLabelEntry: a file named like the volume label. go-diskfs's
// OpenFile matches the label entry as if it were the file; the label must
// survive, and the file must be a file.
func TestVolumeLabelEntry(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im) // label BOOT
		s := open(t, img)
		s.write("/boot", []byte("not the label"))
		s.mkdir("/Boot2")
		if s.f.Label() != "BOOT" {
			t.Fatalf("label %q", s.f.Label())
		}
		ents, _ := s.f.ReadDir("/")
		if len(ents) != 2 {
			t.Fatalf("root lists %v", ents)
		}
		s.commit()
		checkOracles(t, img, map[string][]byte{"/boot": []byte("not the label")})
		out, _ := exec.Command("mlabel", "-s", "-i", img, "::").CombinedOutput()
		if !strings.Contains(string(out), "BOOT") {
			t.Fatalf("mlabel: %s", out)
		}
	})
}

// TestDirtyBitPreserved: we leave the FAT[1] clean/error bits and the boot
// sector's dirty flag exactly as they were (go-diskfs's tables rewrite
// FAT[1] as a plain end-of-chain marker).
func TestDirtyBitPreserved(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		raw, _ := os.ReadFile(img)
		fatOff := int(raw[14]) | int(raw[15])<<8
		fatOff *= 512
		// Set "dirty"/"hard error" state the way Windows does: clear the
		// FAT[1] bits (not for FAT12, which has none).
		switch im.bits {
		case 16:
			raw[fatOff+3] &^= 0xC0
		case 32:
			raw[fatOff+7] &^= 0x0C
		}
		os.WriteFile(img, raw, 0o644)
		head := slices.Clone(raw[fatOff : fatOff+8])
		boot := slices.Clone(raw[:512])
		s := open(t, img)
		s.write("/x", pattern(10000, 1))
		s.mkdir("/y")
		if err := s.f.Remove("/x"); err != nil {
			t.Fatal(err)
		}
		s.commit()
		raw, _ = os.ReadFile(img)
		if !bytes.Equal(raw[fatOff:fatOff+8], head) || !bytes.Equal(raw[:512], boot) {
			t.Fatalf("FAT[0..1] or boot sector changed: % x -> % x", head, raw[fatOff:fatOff+8])
		}
	})
}

// TestFiveHundredFiles writes 500 small files into one directory and 500
// into the root (FAT32) or a subdirectory.
func TestFiveHundredFiles(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		s := open(t, img)
		start := time.Now()
		want := map[string][]byte{}
		s.mkdir("/many")
		for i := 0; i < 500; i++ {
			p := fmt.Sprintf("/many/overlay-%03d.dtbo", i)
			want[p] = pattern(200+i, byte(i))
			s.write(p, want[p])
		}
		t.Logf("%s: 500 files in %v", im, time.Since(start))
		s.commit()
		checkOracles(t, img, want)
		if n := len(mnames(t, img, "/many")); n != 500 {
			t.Fatalf("mtools lists %d", n)
		}
	})
}

// TestLargeFile writes 100 MiB to FAT32 in one WriteFile.
func TestLargeFile(t *testing.T) {
	if testing.Short() {
		t.Skip("large")
	}
	img := mkfs(t, image{bits: 32, sizeKB: 160 << 10})
	s := open(t, img)
	big := pattern(100<<20, 7)
	start := time.Now()
	s.write("/kernel8.img", big)
	t.Logf("100 MiB in %v", time.Since(start))
	if got := s.read("/kernel8.img"); !bytes.Equal(got, big) {
		t.Fatal("read back differs")
	}
	s.commit()
	checkOracles(t, img, map[string][]byte{"/kernel8.img": big})
}

// TestWriteIntoDirWithDeletedEntries: directories left by other tools with
// many deleted entries over several clusters. go-diskfs drops deleted slots
// when it rewrites a directory and then slices past the end of what it
// serialised (the same panic as TestRemoveOnFAT32); we compact first.
func TestWriteIntoDirWithDeletedEntries(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		im.args = []string{"-s", "1"}
		if im.bits == 12 {
			im.sizeKB = 1440
		}
		img := mkfs(t, im)
		var args []string
		dir := t.TempDir()
		for i := 0; i < 60; i++ {
			p := fmt.Sprintf("%s/some long file name %02d.txt", dir, i)
			os.WriteFile(p, []byte(p), 0o644)
			args = append(args, p)
		}
		run(t, "mmd", "-i", img, "::/d")
		run(t, "mcopy", append(append([]string{"-i", img}, args...), "::/d")...)
		for i := 0; i < 58; i++ {
			run(t, "mdel", "-i", img, fmt.Sprintf("::/d/some long file name %02d.txt", i))
		}
		s := open(t, img)
		s.write("/d/new.txt", []byte("new"))
		s.write("/d/another new file.txt", []byte("another"))
		s.commit()
		checkOracles(t, img, map[string][]byte{
			"/d/new.txt":                    []byte("new"),
			"/d/another new file.txt":       []byte("another"),
			"/d/some long file name 59.txt": []byte(dir + "/some long file name 59.txt"),
		})
	})
}

// TestForeignEntriesPreserved: entries other tools wrote (NT lower-case
// flags, an OEM-code-page 8.3 name, zero dates, creation tenths) survive
// go-diskfs rewriting their directory byte for byte: go-diskfs turns zero
// dates into 2107, drops creation tenths and panics on non-ASCII 8.3 names.
func TestForeignEntriesPreserved(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		run(t, "mmd", "-i", img, "::/d")
		for _, n := range []string{"lower.txt", "UPPER.TXT", "Mixed Case Long.txt"} {
			run(t, "mcopy", "-i", img, writeTemp(t, []byte(n)), "::/d/"+n)
		}
		// Add an entry with a CP437 8.3 name and zero dates by hand.
		s := open(t, img)
		r, _ := s.f.resolve("/d")
		d, _ := s.f.openDir(r.e)
		e := d.lookup("UPPER.TXT")
		copy(e.raw[:11], "\x82T\x81     TXT") // "éTü" in CP437 (and CP850)
		for i := 13; i < 20; i++ {
			e.raw[i] = 0
		}
		if err := func() error {
			s.f.j.begin()
			defer s.f.j.commit()
			return s.f.patchEntry(d, e)
		}(); err != nil {
			t.Fatal(err)
		}
		before := slotsOf(t, s.f, "/d")
		s.commit()

		s = open(t, img)
		s.write("/d/new", []byte("n"))
		s.write("/d/ANOTHER", []byte("a"))
		after := slotsOf(t, s.f, "/d")
		for sfn, raw := range before {
			if after[sfn] != raw {
				t.Fatalf("entry %q changed:\n% x\n% x", sfn, raw, after[sfn])
			}
		}
		s.commit()
		checkOracles(t, img, map[string][]byte{"/d/lower.txt": []byte("lower.txt"), "/d/new": []byte("n")})
		names := mnames(t, img, "/d")
		slices.Sort(names)
		if want := []string{"ANOTHER", "Mixed Case Long.txt", "lower.txt", "new", "éTü.TXT"}; !slices.Equal(names, want) {
			t.Fatalf("mtools names %q, want %q", names, want)
		}
	})
}

func slotsOf(t *testing.T, f *FS, p string) map[string][32]byte {
	r, err := f.resolve(p)
	if err != nil {
		t.Fatal(err)
	}
	d, err := f.openDir(r.e)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][32]byte{}
	for _, e := range d.ents {
		out[string(e.sfn[:])] = e.raw
	}
	return out
}

// TestReproducible: the same operations on the same image give the same
// bytes, whatever the wall clock (go-diskfs stamps new entries with
// time.Now or SOURCE_DATE_EPOCH).
func TestReproducible(t *testing.T) {
	forEachType(t, func(t *testing.T, im image) {
		var sums [][]byte
		base, _ := os.ReadFile(mkfs(t, im)) // mkfs.fat itself stamps the label with the time
		for i := 0; i < 2; i++ {
			img := writeTemp(t, base)
			s := open(t, img)
			s.mkdir("/a/b")
			s.write("/a/b/Long File Name.txt", pattern(3000, 1))
			s.write("/x", nil)
			if err := s.f.Rename("/x", "/a/y"); err != nil {
				t.Fatal(err)
			}
			s.commit()
			b, _ := os.ReadFile(img)
			sums = append(sums, b)
			time.Sleep(2100 * time.Millisecond)
		}
		if !bytes.Equal(sums[0], sums[1]) {
			t.Fatal("two identical sessions gave different images")
		}
	})
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1", "MTOOLS_NO_VFAT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func writeTemp(t testing.TB, b []byte) string {
	p := t.TempDir() + "/data"
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFSInfoFreeCountCorrect: go-diskfs never updates the FAT32 FSInfo
// sector after writes (fsck.fat: "Free cluster summary wrong") and
// fat32.Create leaves it "uninitialized". After every kind of change the
// free count must equal what fsck.fat counts and the next-free hint must
// point at a free cluster.
func TestFSInfoFreeCountCorrect(t *testing.T) {
	img := mkfs(t, image{bits: 32, sizeKB: 64 << 10})
	steps := []func(s *session){
		func(s *session) { s.write("/a", pattern(100000, 1)) },
		func(s *session) { s.mkdir("/d/e/f") },
		func(s *session) { s.write("/a", pattern(10, 2)) },
		func(s *session) {
			if err := s.f.Remove("/a"); err != nil {
				t.Fatal(err)
			}
		},
		func(s *session) {
			if err := s.f.Rename("/d/e", "/e"); err != nil {
				t.Fatal(err)
			}
		},
	}
	for i, step := range steps {
		s := open(t, img)
		step(s)
		s.commit()
		fsck(t, img)
		out, _ := exec.Command("fsck.fat", "-n", img).CombinedOutput()
		var used, total uint32
		for _, l := range strings.Split(string(out), "\n") {
			if strings.Contains(l, " clusters") {
				fmt.Sscanf(l[strings.LastIndex(l, ", ")+2:], "%d/%d clusters", &used, &total)
			}
		}
		raw, _ := os.ReadFile(img)
		free := binary.LittleEndian.Uint32(raw[512+488:])
		next := binary.LittleEndian.Uint32(raw[512+492:])
		if total == 0 || free != total-used {
			t.Fatalf("step %d: FSInfo free %d, fsck.fat counts %d of %d used", i, free, used, total)
		}
		s = open(t, img)
		if next < 2 || next > s.f.t.last || s.f.t.get(next) != 0 {
			t.Fatalf("step %d: next-free hint %d is not a free cluster", i, next)
		}
		s.discard()
	}
}
