package fat

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/disk"
)

// formatImage formats a fresh image file of size bytes through the
// production path and commits it.
func formatImage(t testing.TB, size int64, p FormatParams) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fmt.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	d, err := disk.Open(path, disk.OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r, _ := d.Region(0, d.Size())
	if err := Format(r, p); err != nil {
		return path, err
	}
	if _, err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	return path, nil
}

// TestFormat: for each type and several sizes (including the 64 MiB FAT32
// for which go-diskfs makes the FAT too small, "Too few sectors in FAT", and
// leaves FSInfo "uninitialized"), the result passes fsck.fat -n without a
// word, mtools reads the label and serial, and files written afterwards
// read back.
func TestFormat(t *testing.T) {
	needTools(t)
	cases := []struct {
		typ  string
		size int64
		want string
	}{
		{"fat12", 1440 << 10, "fat12"},
		{"fat12", 7 << 20, "fat12"},
		{"fat16", 16 << 20, "fat16"},
		{"fat16", 100<<20 + 12345, "fat16"},
		{"fat32", 34 << 20, "fat32"},
		{"fat32", 64 << 20, "fat32"},
		{"", 256 << 20, "fat32"},
		{"fat32", 300<<20 + 512*3, "fat32"},
		{"auto", 4 << 20, "fat12"},
		{"auto", 200 << 20, "fat16"},
		{"auto", 600 << 20, "fat32"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s-%d", c.typ, c.size), func(t *testing.T) {
			t.Parallel()
			img, err := formatImage(t, c.size, FormatParams{Type: c.typ, Label: "bootfs", VolumeID: 0xCAFE1234, Time: testTime})
			if err != nil {
				t.Fatal(err)
			}
			fsck(t, img)
			out, err := exec.Command("minfo", "-i", img, "::").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "serial number: CAFE1234") || !strings.Contains(string(out), `disk label="bootfs     "`) {
				t.Fatalf("minfo: %v\n%s", err, out)
			}
			out, _ = exec.Command("mdir", "-i", img, "::/").CombinedOutput()
			if !strings.Contains(string(out), "Volume in drive : is bootfs") || !strings.Contains(string(out), "1234-CAFE") && !strings.Contains(string(out), "CAFE-1234") {
				t.Fatalf("mdir:\n%s", out)
			}
			s := open(t, img)
			if s.f.Type() != c.want || s.f.Label() != "bootfs" || s.f.UUID() != "CAFE-1234" {
				t.Fatalf("opened as %s %q %s", s.f.Type(), s.f.Label(), s.f.UUID())
			}
			s.mkdir("/overlays")
			s.write("/overlays/x.dtbo", pattern(5000, 1))
			s.write("/config.txt", []byte("x"))
			s.commit()
			checkOracles(t, img, map[string][]byte{"/overlays/x.dtbo": pattern(5000, 1), "/config.txt": []byte("x")})
		})
	}
}

// TestFormatDeterministic: Format depends only on the size and parameters,
// not on the clock or on what the device held before.
func TestFormatDeterministic(t *testing.T) {
	for _, typ := range []string{"fat12", "fat16", "fat32"} {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			size := map[string]int64{"fat12": 2 << 20, "fat16": 20 << 20, "fat32": 40 << 20}[typ]
			p := FormatParams{Type: typ, Label: "EFI", VolumeID: 0x01020304, Time: testTime}
			a, err := formatImage(t, size, p)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(2100 * time.Millisecond)
			// Over garbage this time.
			b := filepath.Join(t.TempDir(), "b.img")
			os.WriteFile(b, pattern(int(size), 9), 0o644)
			d, _ := disk.Open(b, disk.OpenOptions{Writable: true})
			r, _ := d.Region(0, d.Size())
			if err := Format(r, p); err != nil {
				t.Fatal(err)
			}
			d.Commit()
			d.Close()
			x, _ := os.ReadFile(a)
			y, _ := os.ReadFile(b)
			s := open(t, a)
			meta := s.f.g.dataOffset // everything but free clusters
			if s.f.g.bits == 32 {
				meta += s.f.g.bytesPerCluster // the root directory
			}
			s.discard()
			if !bytes.Equal(x[:meta], y[:meta]) {
				t.Fatalf("metadata differs between two formats")
			}
			fsck(t, b)
		})
	}
}

func TestFormatNoLabel(t *testing.T) {
	for _, typ := range []string{"fat12", "fat16", "fat32"} {
		size := map[string]int64{"fat12": 2 << 20, "fat16": 20 << 20, "fat32": 40 << 20}[typ]
		img, err := formatImage(t, size, FormatParams{Type: typ})
		if err != nil {
			t.Fatal(err)
		}
		fsck(t, img)
		out, _ := exec.Command("mdir", "-i", img, "::/").CombinedOutput()
		if !strings.Contains(string(out), "has no label") {
			t.Fatalf("%s: mdir:\n%s", typ, out)
		}
		s := open(t, img)
		if s.f.Label() != "" || s.f.UUID() != "0000-0000" {
			t.Fatalf("%s: label %q uuid %s", typ, s.f.Label(), s.f.UUID())
		}
		s.discard()
	}
}

func TestFormatErrors(t *testing.T) {
	for _, c := range []struct {
		size int64
		p    FormatParams
		want string
	}{
		{20 << 20, FormatParams{Type: "fat32"}, "too small for FAT32"},
		{2 << 20, FormatParams{Type: "fat16"}, "too small"},
		{200 << 20, FormatParams{Type: "fat12"}, "FAT12"},
		{2 << 20, FormatParams{Type: "ntfs"}, "unknown type"},
		{2 << 20, FormatParams{Type: "fat12", Label: "twelve chars"}, "longer than 11"},
		{2 << 20, FormatParams{Type: "fat12", Label: "a/b"}, "not allowed"},
	} {
		_, err := formatImage(t, c.size, c.p)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Format(%d, %+v) = %v, want %q", c.size, c.p, err, c.want)
		}
	}
}
