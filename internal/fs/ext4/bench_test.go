package ext4

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fs"
)

func benchImage(b *testing.B, size int64) string {
	b.Helper()
	img := filepath.Join(b.TempDir(), "bench.img")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, size)
	d, err := disk.Open(img, disk.OpenOptions{Writable: true})
	if err != nil {
		b.Fatal(err)
	}
	r, _ := d.Region(0, d.Size())
	if err := Format(r, FormatParams{Label: "bench", UUID: [16]byte{7}, Time: testTime}); err != nil {
		b.Fatal(err)
	}
	d.Commit()
	d.Close()
	return img
}

// BenchmarkWriteSmallFiles writes b.N small files (spread over 100
// directories) in one session, including Close and Commit.
func BenchmarkWriteSmallFiles(b *testing.B) {
	img := benchImage(b, 4<<30)
	b.ResetTimer()
	o := openImage(b, img, fs.Options{})
	for i := 0; i < b.N; i++ {
		dir := fmt.Sprintf("/d%02d", i%100)
		if i < 100 {
			if err := o.fs.MkdirAll(dir, fs.Attr{Mode: 0o755}); err != nil {
				b.Fatal(err)
			}
		}
		if err := o.fs.WriteFile(fmt.Sprintf("%s/f%07d", dir, i), strings.NewReader("small file content\n"), fs.Attr{Mode: 0o644}); err != nil {
			b.Fatal(err)
		}
	}
	o.commit()
}

// BenchmarkWriteLargeFile writes one 256 MiB file per iteration into a
// 2 GiB image (open, write, Close, Commit), replacing the previous one.
func BenchmarkWriteLargeFile(b *testing.B) {
	const size = 256 << 20
	img := benchImage(b, 2<<30)
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		o := openImage(b, img, fs.Options{})
		if err := o.fs.WriteFile("/big", &patternReader{n: size, seed: uint64(i)}, fs.Attr{Mode: 0o644}); err != nil {
			b.Fatal(err)
		}
		o.commit()
	}
}

// BenchmarkRawWrite is the baseline: writing the same bytes to a file.
func BenchmarkRawWrite(b *testing.B) {
	const size = 256 << 20
	path := filepath.Join(b.TempDir(), "raw")
	buf := make([]byte, writeChunk)
	b.SetBytes(size)
	for i := 0; i < b.N; i++ {
		fh, _ := os.Create(path)
		r := &patternReader{n: size, seed: uint64(i)}
		for {
			n, _ := r.Read(buf)
			if n == 0 {
				break
			}
			fh.Write(buf[:n])
		}
		fh.Sync()
		fh.Close()
	}
}

// BenchmarkReadFile reads a file through the path lookup.
func BenchmarkReadFile(b *testing.B) {
	img := benchImage(b, 256<<20)
	o := openImage(b, img, fs.Options{})
	o.fs.MkdirAll("/etc", fs.Attr{Mode: 0o755})
	for i := 0; i < 3000; i++ {
		o.fs.WriteFile(fmt.Sprintf("/etc/f%04d", i), strings.NewReader("content"), fs.Attr{Mode: 0o644})
	}
	o.commit()
	o = openImage(b, img, fs.Options{ReadOnly: true})
	defer o.discard()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := o.fs.ReadFile(fmt.Sprintf("/etc/f%04d", i%3000)); err != nil {
			b.Fatal(err)
		}
	}
}
