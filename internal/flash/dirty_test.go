package flash

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/bmap"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/image"
	"github.com/bakeryhq/bakery/internal/testimage"
)

// Layout of the Pi image used here (testimage.PiImage puts partition 1 at 4 MiB).
const (
	dirtyBootMiB = 64
	dirtyRootMiB = 128
)

// sparsePiImage builds a Pi-like image with files in both filesystems and
// then punches holes in every all-zero block, as an image that went
// through a sparse copy (cp --sparse=always, fallocate -d) looks: the
// zero-filled FAT tables, inode tables and directories become holes.
func sparsePiImage(t *testing.T, table string) string {
	t.Helper()
	testimage.Need(t, "fallocate")
	bootTree, rootTree := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(bootTree, "config.txt"), []byte("arm_64bit=1\n"), 0o644)
	os.WriteFile(filepath.Join(bootTree, "cmdline.txt"), []byte("console=serial0 root=LABEL=rootfs rootwait\n"), 0o644)
	os.MkdirAll(filepath.Join(bootTree, "overlays"), 0o755)
	os.WriteFile(filepath.Join(bootTree, "overlays", "README"), []byte(strings.Repeat("overlay docs\n", 500)), 0o644)
	os.WriteFile(filepath.Join(bootTree, "user-data"), []byte("#cloud-config\nhostname: golden\n"), 0o644)
	os.WriteFile(filepath.Join(bootTree, "meta-data"), []byte("instance-id: golden-1\n"), 0o644)
	for _, d := range []string{"etc", "usr/bin", "var/log", "home/pi"} {
		os.MkdirAll(filepath.Join(rootTree, d), 0o755)
	}
	os.WriteFile(filepath.Join(rootTree, "etc", "os-release"), []byte("ID=debian\nVERSION_ID=\"12\"\n"), 0o644)
	os.WriteFile(filepath.Join(rootTree, "etc", "hostname"), []byte("raspberrypi\n"), 0o644)
	os.WriteFile(filepath.Join(rootTree, "etc", "hosts"), []byte("127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n"), 0o644)
	big := make([]byte, 3<<20)
	fill(big, 99)
	os.WriteFile(filepath.Join(rootTree, "usr", "bin", "busybox"), big, 0o755)
	img := testimage.PiImage(t, testimage.Layout{Table: table, BootMiB: dirtyBootMiB, RootMiB: dirtyRootMiB, BootTree: bootTree, RootTree: rootTree})
	testimage.Run(t, "fallocate", "--dig-holes", img)
	return img
}

// fsckTarget checks both partitions of a flashed target and returns the
// tools' complaints ("" when clean).
func fsckTarget(t *testing.T, target string) string {
	t.Helper()
	boot := testimage.Extract(t, target, 4<<20, dirtyBootMiB<<20)
	root := testimage.Extract(t, target, (4+dirtyBootMiB)<<20, dirtyRootMiB<<20)
	var problems []string
	if out, err := exec.Command("fsck.fat", "-n", boot).CombinedOutput(); err != nil || strings.Contains(string(out), "wrong") || strings.Contains(string(out), "uninitialized") {
		problems = append(problems, "fsck.fat -n: "+string(out))
	}
	if out, err := exec.Command("e2fsck", "-fn", root).CombinedOutput(); err != nil {
		problems = append(problems, "e2fsck -fn: "+string(out))
	}
	return strings.Join(problems, "\n")
}

// TestDirtyCard flashes a sparse image over a card full of random bytes:
// both filesystems must come out clean, because MustMapRanges maps the
// metadata that the image holds as holes.
func TestDirtyCard(t *testing.T) {
	testimage.Need(t, "fsck.fat", "e2fsck")
	for _, table := range []string{"mbr", "gpt"} {
		t.Run(table, func(t *testing.T) {
			img := sparsePiImage(t, table)
			st, _ := os.Stat(img)
			src, err := OpenSource(context.Background(), img, SourceOptions{})
			if err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(t.TempDir(), "card")
			garbage(t, target, st.Size(), 7)
			mustOK(t, Flash(context.Background(), src, []string{target}, testOptions()))
			checkMapped(t, img, target, src.Map, nil)
			if problems := fsckTarget(t, target); problems != "" {
				t.Fatalf("filesystems damaged on a dirty card:\n%s", problems)
			}
			if table == "gpt" {
				// sfdisk reads both GPT headers without complaint.
				testimage.Run(t, "sfdisk", "--verify", target)
			}

			// The same image written with a holes-only map (what bmaptool
			// create produces) leaves garbage where the filesystems expect
			// zeros.
			holesOnly := openSource(t, img, SourceOptions{mustMap: func(string) ([]bmap.Range, error) { return nil, nil }})
			if holesOnly.Map.MappedBlocksCount >= src.Map.MappedBlocksCount {
				t.Fatalf("MustMapRanges added nothing: %d blocks either way", src.Map.MappedBlocksCount)
			}
			naive := filepath.Join(t.TempDir(), "naive")
			garbage(t, naive, st.Size(), 7)
			mustOK(t, Flash(context.Background(), holesOnly, []string{naive}, testOptions()))
			problems := fsckTarget(t, naive)
			if problems == "" {
				t.Fatal("a holes-only map left clean filesystems on a dirty card; the demonstration no longer holds")
			}
			t.Logf("holes-only map, as expected:\n%.600s", problems)

			// Given a map bmaptool made (data only) with a raw image,
			// bakery adds what the filesystems need: the card comes out
			// clean, and the map's own checksums are still checked.
			testimage.Need(t, "bmaptool")
			foreign := filepath.Join(t.TempDir(), "bmaptool.bmap")
			testimage.Run(t, "bmaptool", "create", "-o", foreign, img)
			withForeign := openSource(t, img, SourceOptions{BmapPath: foreign, mustMap: MustMapRanges})
			if withForeign.Map.Complete || withForeign.Map.MappedBlocksCount <= holesOnly.Map.MappedBlocksCount {
				t.Fatalf("the bmaptool map was not completed: %d blocks (holes only %d, ours %d, complete %v)", withForeign.Map.MappedBlocksCount, holesOnly.Map.MappedBlocksCount, src.Map.MappedBlocksCount, withForeign.Map.Complete)
			}
			card := filepath.Join(t.TempDir(), "foreign")
			garbage(t, card, st.Size(), 7)
			mustOK(t, Flash(context.Background(), withForeign, []string{card}, testOptions()))
			if problems := fsckTarget(t, card); problems != "" {
				t.Fatalf("a bmaptool map on a dirty card left damaged filesystems:\n%s", problems)
			}
		})
	}
}

// TestMustMapRanges checks the extra ranges against the image's layout:
// the partition table, and inside each partition (through fs.UsedMapper)
// the start of each filesystem.
func TestMustMapRanges(t *testing.T) {
	img := sparsePiImage(t, "gpt")
	st, _ := os.Stat(img)
	ranges, err := MustMapRanges(img)
	if err != nil {
		t.Fatal(err)
	}
	covered := func(off int64) bool {
		for _, r := range ranges {
			if off >= r.Off && off < r.End() {
				return true
			}
		}
		return false
	}
	for name, off := range map[string]int64{
		"protective MBR":       0,
		"GPT header":           512,
		"GPT entries":          1024,
		"backup GPT header":    st.Size() - 512,
		"FAT boot sector":      4 << 20,
		"ext4 superblock":      (4+dirtyBootMiB)<<20 + 1024,
		"ext4 group desc":      (4+dirtyBootMiB)<<20 + 4096,
		"FAT first FAT sector": 4<<20 + 32*512,
	} {
		if !covered(off) {
			t.Errorf("%s (byte %d) is not in the must-map ranges", name, off)
		}
	}
	for _, r := range ranges {
		if r.Off < 0 || r.Len <= 0 || r.End() > st.Size() {
			t.Errorf("range %+v outside the %d-byte image", r, st.Size())
		}
	}
	// Where a filesystem lists its used blocks, its free space stays
	// unmapped; elsewhere the partition is mapped whole.
	im, err := image.Open(img, image.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	for _, p := range im.Partitions {
		var inside int64
		for _, r := range ranges {
			inside += max(0, min(r.End(), p.End())-max(r.Off, p.Start))
		}
		f, err := im.Filesystem(p.Index)
		if err != nil {
			t.Fatal(err)
		}
		_, lists := f.(fs.UsedMapper)
		t.Logf("partition %d (%s): %d of %d bytes must be mapped; lists used extents: %v", p.Index, f.Type(), inside, p.Size, lists)
		if lists && inside > p.Size/2 {
			t.Errorf("partition %d: %d of %d bytes mapped although the filesystem is mostly free", p.Index, inside, p.Size)
		}
		if !lists && inside != p.Size {
			t.Errorf("partition %d: cannot list used blocks but only %d of %d bytes mapped", p.Index, inside, p.Size)
		}
	}
}
