package fat

import (
	"bytes"
	"fmt"
	"os"
	"testing"

	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fs"
)

// BenchmarkWrite500SmallFiles writes 500 files of 100-600 bytes into one
// directory (the shape of a Pi boot partition's overlays/ directory) on a
// freshly formatted volume held in memory, then closes the filesystem. The
// cost is dominated by go-diskfs parsing and re-serialising the whole
// directory on every file, which makes it quadratic in the directory size.
func BenchmarkWrite500SmallFiles(b *testing.B) {
	for _, c := range []struct {
		typ  string
		size int64
	}{{"fat12", 8 << 20}, {"fat16", 64 << 20}, {"fat32", 256 << 20}} {
		b.Run(c.typ, func(b *testing.B) {
			base := newMemDev(c.size)
			if err := Format(base, FormatParams{Type: c.typ, Time: testTime}); err != nil {
				b.Fatal(err)
			}
			base.freeze()
			data := pattern(600, 1)
			b.ReportAllocs()
			for b.Loop() {
				f, err := Open(base.fork(), fs.Options{DefaultTime: testTime})
				if err != nil {
					b.Fatal(err)
				}
				if err := f.MkdirAll("/overlays", fs.Attr{}); err != nil {
					b.Fatal(err)
				}
				for i := 0; i < 500; i++ {
					p := fmt.Sprintf("/overlays/overlay-%03d.dtbo", i)
					if err := f.WriteFile(p, bytes.NewReader(data[:100+i]), fs.Attr{}); err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkWrite500SmallFilesImage is the same through the production
// path: an image file, disk.Open, a Region, and a Commit.
func BenchmarkWrite500SmallFilesImage(b *testing.B) {
	needTools(b)
	src := mkfs(b, image{bits: 32, sizeKB: 256 << 10})
	orig, _ := os.ReadFile(src)
	data := pattern(600, 1)
	for b.Loop() {
		b.StopTimer()
		os.WriteFile(src, orig, 0o644)
		b.StartTimer()
		d, err := disk.Open(src, disk.OpenOptions{Writable: true})
		if err != nil {
			b.Fatal(err)
		}
		r, _ := d.Region(0, d.Size())
		f, err := Open(r, fs.Options{DefaultTime: testTime})
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < 500; i++ {
			if err := f.WriteFile(fmt.Sprintf("/overlay-%03d.dtbo", i), bytes.NewReader(data[:100+i]), fs.Attr{}); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		if _, err := d.Commit(); err != nil {
			b.Fatal(err)
		}
		d.Close()
	}
}
