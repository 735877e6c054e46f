package fetch

import (
	"bytes"
	"context"
	"os"
	"testing"

	"github.com/bakeryhq/bakery/internal/compress"
)

// FuzzDecompress feeds arbitrary bytes through format detection and the
// decode-to-sparse-file path (zip, tar, every compressor), with the output
// bounded: it must return an error or a file, never panic or hang.
func FuzzDecompress(f *testing.F) {
	img := make([]byte, 8<<10)
	copy(img[1000:], "some data")
	for _, format := range []string{"raw", compress.Xz, compress.Gzip, compress.Zstd, "zip", "tar.xz"} {
		f.Add(compressWith(f, img, format))
	}
	f.Add(zipOf(f, map[string][]byte{"a.img": {1}, "b.img": {2}}))
	f.Add([]byte("PK\x05\x06" + string(make([]byte, 18))))
	f.Add([]byte("QFI\xfb"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		head := data
		if len(head) > 512 {
			head = head[:512]
		}
		format := detectFormat(head)
		if format == formatQcow2 {
			return // handed to qemu-img, not parsed here
		}
		out, err := os.CreateTemp(dir, "out")
		if err != nil {
			t.Fatal(err)
		}
		defer os.Remove(out.Name())
		defer out.Close()
		n, err := decodeImage(context.Background(), bytes.NewReader(data), int64(len(data)), format, out, 16<<20, nil)
		if err != nil {
			return
		}
		fi, _ := out.Stat()
		if fi.Size() != n {
			t.Fatalf("size %d, reported %d", fi.Size(), n)
		}
		if format == formatRaw {
			// Raw input passes through unchanged, holes or not.
			got, _ := os.ReadFile(out.Name())
			if !bytes.Equal(got, data) {
				t.Fatal("raw data changed on the way through")
			}
		}
	})
}
