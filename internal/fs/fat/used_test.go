package fat

import (
	"fmt"
	"os/exec"
	"testing"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/testimage"
)

// TestUsedExtentsOnReusedCard is the flashing oracle for FAT: a sparse
// image copied onto a "card" of random bytes through its data ranges plus
// UsedExtents must pass fsck.fat and read back intact, while the data
// ranges alone (what a plain bmap maps) leave a corrupt FAT, because the
// free part of a FAT is zeros and so holes in the image file.
func TestUsedExtentsOnReusedCard(t *testing.T) {
	testimage.Need(t, "fallocate")
	forEachType(t, func(t *testing.T, im image) {
		img := mkfs(t, im)
		s := open(t, img)
		want := map[string][]byte{}
		s.mkdir("/overlays")
		for i := 0; i < 12; i++ {
			p := fmt.Sprintf("/overlays/file%02d.dtbo", i)
			want[p] = pattern(1000+i*1500, byte(i))
			s.write(p, want[p])
		}
		want["/config.txt"] = []byte("dtparam=audio=on\n")
		s.write("/config.txt", want["/config.txt"])
		// A hole in the middle: removed files leave free clusters.
		if err := s.f.Remove("/overlays/file03.dtbo"); err != nil {
			t.Fatal(err)
		}
		delete(want, "/overlays/file03.dtbo")
		s.commit()
		testimage.MakeSparse(t, img)

		s = open(t, img)
		used, err := s.f.UsedExtents()
		s.discard()
		if err != nil {
			t.Fatal(err)
		}
		g := s.f.g
		for i, e := range used {
			if e.Len <= 0 || e.End() > g.totalSectors*g.bytesPerSector || (i > 0 && e.Off <= used[i-1].End()) {
				t.Fatalf("extent %d %+v: not sorted, merged and inside the filesystem", i, e)
			}
		}
		if used[0].Off != 0 || used[0].Len < g.dataOffset {
			t.Fatalf("first extent %+v does not cover the reserved sectors, FATs and root directory (%d bytes)", used[0], g.dataOffset)
		}
		data := testimage.DataRanges(t, img)
		card := testimage.ReusedCard(t, img, fs.MergeExtents(append(append([]fs.Extent(nil), data...), used...)), 7)
		checkOracles(t, card, want)

		bad := testimage.ReusedCard(t, img, data, 7)
		if out, err := exec.Command("fsck.fat", "-n", bad).CombinedOutput(); err == nil {
			t.Fatalf("data ranges alone: fsck.fat -n passed:\n%s", out)
		}
	})
}
