package ext4

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fs"
)

func formatImage(t testing.TB, size int64, p FormatParams) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fmt.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	d, err := disk.Open(img, disk.OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := d.Region(0, d.Size())
	if err := Format(r, p); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	d.Close()
	return img
}

// TestFormatDefaultFeatures formats with the defaults and checks the result
// with e2fsck and dumpe2fs, then writes to it.
func TestFormatDefaultFeatures(t *testing.T) {
	needTools(t, "dumpe2fs")
	uuid := [16]byte{0x6b, 0x5c, 0xbd, 0x6e, 0x5f, 0x0b, 0x4a, 0x39, 0x9d, 0x4b, 0x0d, 0x7a, 0x4c, 0x3e, 0x2f, 0x11}
	img := formatImage(t, 256<<20, FormatParams{Label: "rootfs", UUID: uuid, Time: testTime})
	fsck(t, img)
	out := runCmd(t, "dumpe2fs", "-h", img)
	wantFeatures := "has_journal ext_attr resize_inode dir_index filetype extent 64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum"
	for _, line := range []string{
		"Filesystem features:      " + wantFeatures,
		"Filesystem volume name:   rootfs",
		"Filesystem UUID:          6b5cbd6e-5f0b-4a39-9d4b-0d7a4c3e2f11",
		"Block size:               4096",
		"Inode size:\t          256",
		"Journal inode:            8",
		"Journal start:            0",
		"Filesystem state:         clean",
		"Checksum type:            crc32c",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("dumpe2fs lacks %q:\n%s", line, out)
		}
	}
	if st := debugfsStat(t, img, "/lost+found"); st.mode != 0o700 || st.links != 2 || st.size != 16384 {
		t.Errorf("lost+found: %+v", st)
	}
	if st := debugfsStat(t, img, "/"); st.links != 3 || st.mtime != testTime.Unix() {
		t.Errorf("root: %+v", st)
	}
	o := openImage(t, img, fs.Options{})
	if o.fs.Type() != "ext4" || o.fs.Label() != "rootfs" || o.fs.UUID() != "6b5cbd6e-5f0b-4a39-9d4b-0d7a4c3e2f11" {
		t.Errorf("Type %s Label %s UUID %s", o.fs.Type(), o.fs.Label(), o.fs.UUID())
	}
	must(t, o.fs.MkdirAll("/etc", fs.Attr{Mode: 0o755}))
	for i := 0; i < 300; i++ {
		must(t, o.fs.WriteFile(fmt.Sprintf("/etc/f%03d", i), strings.NewReader("x"), fs.Attr{Mode: 0o644}))
	}
	must(t, o.fs.WriteFile("/big", &patternReader{n: 50 << 20, seed: 1}, fs.Attr{Mode: 0o644}))
	o.commit()
	fsck(t, img)
}

// TestFormatIsDeterministic formats the same device twice: the bytes must
// be identical.
func TestFormatIsDeterministic(t *testing.T) {
	p := FormatParams{Label: "x", UUID: [16]byte{9, 9, 9}, Time: testTime}
	a := formatImage(t, 64<<20, p)
	b := formatImage(t, 64<<20, p)
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Fatal("two formats with the same parameters differ")
	}
}

// TestFormatVariants covers block sizes, sizes and feature sets.
func TestFormatVariants(t *testing.T) {
	cases := []struct {
		size int64
		p    FormatParams
	}{
		{4 << 20, FormatParams{}},
		{20 << 20, FormatParams{BlockSize: 1024}},
		{100 << 20, FormatParams{BlockSize: 2048, InodeRatio: 4096}},
		{300 << 20, FormatParams{BlockSize: 1024}},
		{300 << 20, FormatParams{Features: []string{"^64bit", "^metadata_csum", "uninit_bg"}}},
		{200 << 20, FormatParams{Features: []string{"has_journal", "ext_attr", "resize_inode", "dir_index", "filetype", "sparse_super", "large_file"}}}, // ext3
		{64 << 20, FormatParams{Features: []string{"ext_attr", "resize_inode", "dir_index", "filetype", "sparse_super", "large_file"}, InodeSize: 128}}, // ext2
		{130 << 20, FormatParams{Features: []string{"+orphan_file"}, ReservedPercent: -1}},
		{600 << 20, FormatParams{Features: []string{"^resize_inode", "+metadata_csum_seed"}, BlockSize: 1024}},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%dM-%d-%v", c.size>>20, c.p.BlockSize, c.p.Features), func(t *testing.T) {
			c.p.UUID = [16]byte{1, 2, 3, 4}
			c.p.Time = testTime
			img := formatImage(t, c.size, c.p)
			fsck(t, img)
			o := openImage(t, img, fs.Options{})
			must(t, o.fs.MkdirAll("/a/b", fs.Attr{Mode: 0o755}))
			must(t, o.fs.WriteFile("/a/b/f", &patternReader{n: 1 << 20, seed: 2}, fs.Attr{Mode: 0o644}))
			o.commit()
			fsck(t, img)
			mustEqual(t, "/a/b/f", debugfsCat(t, img, "/a/b/f"), patternBytes(1<<20, 2))
		})
	}
}
