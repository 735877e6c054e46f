// Package compress detects and streams the compression formats images come
// in (xz, gzip, zstd, bzip2 for reading) and writes the ones bakery outputs.
// Everything streams: nothing is decompressed into a temporary file.
package compress

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Formats.
const (
	None  = ""
	Gzip  = "gz"
	Xz    = "xz"
	Zstd  = "zst"
	Bzip2 = "bz2"
	Zip   = "zip" // detected here; opened by callers with archive/zip since it needs random access
)

var magics = []struct {
	format string
	magic  []byte
}{
	{Xz, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{Gzip, []byte{0x1f, 0x8b}},
	{Zstd, []byte{0x28, 0xb5, 0x2f, 0xfd}},
	{Bzip2, []byte("BZh")},
	{Zip, []byte("PK\x03\x04")},
}

// Detect names the compression format from the first bytes of a stream.
func Detect(head []byte) string {
	for _, m := range magics {
		if bytes.HasPrefix(head, m.magic) {
			return m.format
		}
	}
	return None
}

// FromName guesses the format from a file name's extension.
func FromName(name string) string {
	lower := strings.ToLower(name)
	for _, ext := range []string{Xz, Gzip, Zstd, Bzip2, Zip} {
		if strings.HasSuffix(lower, "."+ext) {
			return ext
		}
	}
	if strings.HasSuffix(lower, ".zstd") {
		return Zstd
	}
	return None
}

// TrimExt removes a compression extension: "x.img.xz" -> "x.img".
func TrimExt(name string) string {
	if f := FromName(name); f != None {
		if strings.HasSuffix(strings.ToLower(name), ".zstd") {
			return name[:len(name)-5]
		}
		return name[:len(name)-len(f)-1]
	}
	return name
}

// Reader decompresses r according to its magic bytes; uncompressed input is
// passed through. Zip archives are refused here (they need random access).
// Close releases decoder resources; it does not close r.
func Reader(r io.Reader) (io.ReadCloser, string, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	head, err := br.Peek(8)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return nil, None, fmt.Errorf("read stream header: %w", err)
	}
	format := Detect(head)
	rc, err := ReaderFor(br, format)
	return rc, format, err
}

// ReaderFor decompresses r as the given format.
func ReaderFor(r io.Reader, format string) (io.ReadCloser, error) {
	switch format {
	case None:
		return io.NopCloser(r), nil
	case Gzip:
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case Xz:
		xr, err := xz.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		return io.NopCloser(xr), nil
	case Zstd:
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxWindow(1<<31))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zstdReadCloser{zr}, nil
	case Bzip2:
		return io.NopCloser(bzip2.NewReader(r)), nil
	case Zip:
		return nil, fmt.Errorf("zip archives must be opened with random access, not streamed")
	}
	return nil, fmt.Errorf("unknown compression format %q", format)
}

type zstdReadCloser struct{ d *zstd.Decoder }

func (z zstdReadCloser) Read(p []byte) (int, error) { return z.d.Read(p) }
func (z zstdReadCloser) Close() error               { z.d.Close(); return nil }

// Writer compresses into w. level is format-specific; 0 picks a good default
// for images (fast zstd level 3 with all cores, xz preset 6, gzip 6).
func Writer(w io.Writer, format string) (io.WriteCloser, error) {
	switch format {
	case Gzip:
		return gzip.NewWriterLevel(w, gzip.DefaultCompression)
	case Xz:
		cfg := xz.WriterConfig{DictCap: 8 << 20}
		xw, err := cfg.NewWriter(w)
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		return xw, nil
	case Zstd:
		zw, err := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zw, nil
	}
	return nil, fmt.Errorf("cannot write compression format %q (want gz, xz or zst)", format)
}
