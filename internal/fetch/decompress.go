package fetch

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"sort"
	"strings"

	"github.com/bakeryhq/bakery/internal/atomicfile"
	"github.com/bakeryhq/bakery/internal/compress"
	"github.com/bakeryhq/bakery/internal/progress"
	"github.com/bakeryhq/bakery/internal/streams"
)

// Formats a base image can come in, detected from its first bytes (never
// from its name).
const (
	formatRaw   = "raw"
	formatQcow2 = "qcow2"
	formatTar   = "tar"
)

var errTooLarge = errors.New("decompressed image is larger than the limit")

func detectFormat(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		return formatQcow2
	case bytes.HasPrefix(head, []byte("PK\x05\x06")): // an empty zip
		return compress.Zip
	case isTar(head):
		return formatTar
	}
	if f := compress.Detect(head); f != compress.None {
		return f
	}
	return formatRaw
}

func isTar(head []byte) bool {
	return len(head) >= 262 && string(head[257:262]) == "ustar"
}

// decompress writes the raw image held in src to rawPath: atomically,
// sparse, read-only. A local uncompressed file is copied with CopySparse
// (a reflink where possible). It returns the detected format.
func (f *Fetcher) decompress(ctx context.Context, src, rawPath string, local bool) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("open base image: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return "", err
	}
	head := make([]byte, 512)
	n, _ := in.ReadAt(head, 0)
	format := detectFormat(head[:n])
	switch {
	case format == formatQcow2:
		return format, f.convertQcow2(ctx, src, rawPath)
	case format == formatRaw && local:
		task := f.Progress.Start("decompress", fi.Size())
		_, err := copySparse(ctx, src, rawPath, copyOptions{perm: 0o444, sparsify: true, durable: true})
		task.Add(fi.Size())
		task.Done(err)
		return format, err
	}

	out, err := atomicfile.Create(rawPath, 0o444)
	if err != nil {
		return "", err
	}
	defer out.Abort()
	task := f.Progress.Start("decompress", fi.Size())
	size, err := decodeImage(ctx, in, fi.Size(), format, out.File, 0, task)
	task.Done(err)
	if err != nil {
		return format, fmt.Errorf("base image %s: %w", src, err)
	}
	if size == 0 {
		return format, fmt.Errorf("base image %s: the decompressed image is empty", src)
	}
	return format, out.Commit()
}

// decodeImage decodes the image in r (size bytes, in format) into dst as a
// sparse file and returns the raw size. limit > 0 bounds the output.
func decodeImage(ctx context.Context, r io.ReaderAt, size int64, format string, dst *os.File, limit int64, task *progress.Task) (int64, error) {
	w := &sparseWriter{f: dst, limit: limit}
	var err error
	if format == compress.Zip {
		err = decodeZip(ctx, r, size, w, task)
	} else {
		err = decodeStream(ctx, task.Reader(io.NewSectionReader(r, 0, size)), format, w)
	}
	if err != nil {
		return 0, err
	}
	return w.off, w.finish()
}

func decodeStream(ctx context.Context, r io.Reader, format string, w *sparseWriter) error {
	name := format
	var dec io.Reader = r
	if format != formatRaw && format != formatTar {
		rc, err := compress.ReaderFor(bufio.NewReaderSize(r, 1<<20), format)
		if err != nil {
			return corrupt(name, err)
		}
		defer rc.Close()
		dec = rc
	}
	br := bufio.NewReaderSize(dec, 1<<20)
	head, err := br.Peek(512)
	if err != nil && err != io.EOF {
		return corrupt(name, err)
	}
	switch inner := detectFormat(head); {
	case inner == formatTar:
		return decodeTar(ctx, br, name, w)
	case format != formatRaw && inner != formatRaw:
		return fmt.Errorf("the %s stream holds %s data; an image compressed twice is not supported", name, inner)
	}
	if err := copyCtx(ctx, w, br); err != nil {
		return corrupt(name, err)
	}
	return nil
}

// decodeTar streams the one disk image (*.img or *.raw) in a tar archive,
// as Debian and GCE ship them (disk.raw).
func decodeTar(ctx context.Context, r io.Reader, outer string, w *sparseWriter) error {
	tr := tar.NewReader(r)
	var names []string
	found := ""
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return corrupt(outer+"/tar", err)
		}
		names = append(names, hdr.Name)
		if hdr.Typeflag != tar.TypeReg || !isDiskName(hdr.Name) {
			continue
		}
		if found != "" {
			return fmt.Errorf("the tar archive holds several disk images (%s and %s); want exactly one", found, hdr.Name)
		}
		found = hdr.Name
		if err := copyCtx(ctx, w, tr); err != nil {
			return corrupt(outer+"/tar", err)
		}
	}
	if found == "" {
		return fmt.Errorf("the tar archive holds no disk image (*.img or *.raw); it holds: %s", listNames(names))
	}
	return nil
}

func isDiskName(name string) bool {
	base := strings.ToLower(path.Base(name))
	return (strings.HasSuffix(base, ".img") || strings.HasSuffix(base, ".raw")) && !strings.HasPrefix(base, "._")
}

// decodeZip streams the one *.img entry of a zip archive.
func decodeZip(ctx context.Context, r io.ReaderAt, size int64, w *sparseWriter, task *progress.Task) error {
	zr, err := zip.NewReader(r, size)
	if err != nil {
		return corrupt("zip", err)
	}
	var names []string
	var images []*zip.File
	for _, zf := range zr.File {
		names = append(names, zf.Name)
		if zf.FileInfo().IsDir() || strings.HasPrefix(zf.Name, "__MACOSX/") || !isDiskName(zf.Name) {
			continue
		}
		images = append(images, zf)
	}
	if len(images) != 1 {
		return fmt.Errorf("the zip archive holds %d disk images; want exactly one *.img (entries: %s)", len(images), listNames(names))
	}
	zf := images[0]
	rc, err := zf.Open()
	if err != nil {
		return corrupt("zip", err)
	}
	defer rc.Close()
	task.SetTotal(int64(zf.UncompressedSize64))
	if err := copyCtx(ctx, w, task.Reader(rc)); err != nil {
		return corrupt("zip entry "+zf.Name, err)
	}
	return nil
}

func listNames(names []string) string {
	if len(names) == 0 {
		return "nothing"
	}
	sorted := append([]string(nil), names...)
	sort.Strings(sorted)
	if len(sorted) > 20 {
		sorted = append(sorted[:20], fmt.Sprintf("... %d more", len(names)-20))
	}
	return strings.Join(sorted, ", ")
}

// corrupt explains a decoding failure; truncation and corruption are the
// usual causes.
func corrupt(format string, err error) error {
	switch {
	case errors.Is(err, errTooLarge), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("the %s data is truncated (it ends early): %w", format, err)
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return err // a write error on our side, not corrupt input
	}
	return fmt.Errorf("the %s data is corrupt: %w", format, err)
}

func copyCtx(ctx context.Context, w io.Writer, r io.Reader) error {
	_, err := io.CopyBuffer(w, streams.WithContext(ctx, r), make([]byte, 1<<20))
	return err
}

// sparseWriter writes a stream into a new, empty file, skipping every
// all-zero 4 KiB block so that it stays a hole; finish sets the size.
type sparseWriter struct {
	f     *os.File
	off   int64
	limit int64
}

const sparseBlock = 4096

var zeroBlock = make([]byte, sparseBlock)

func (w *sparseWriter) Write(p []byte) (int, error) {
	if w.limit > 0 && w.off+int64(len(p)) > w.limit {
		return 0, errTooLarge
	}
	i := 0
	for i < len(p) {
		n := int(sparseBlock - (w.off+int64(i))%sparseBlock)
		n = min(n, len(p)-i)
		if bytes.Equal(p[i:i+n], zeroBlock[:n]) {
			i += n
			continue
		}
		j := i + n // block-aligned from here: extend over non-zero blocks
		for j < len(p) {
			m := min(sparseBlock, len(p)-j)
			if bytes.Equal(p[j:j+m], zeroBlock[:m]) {
				break
			}
			j += m
		}
		if _, err := w.f.WriteAt(p[i:j], w.off+int64(i)); err != nil {
			return i, err
		}
		i = j
	}
	w.off += int64(len(p))
	return len(p), nil
}

func (w *sparseWriter) finish() error { return w.f.Truncate(w.off) }

// convertQcow2 turns a qcow2 base into a raw image with qemu-img, after
// refusing images that point at other files (a backing file or external
// data file would let a downloaded image read files of the build host).
func (f *Fetcher) convertQcow2(ctx context.Context, src, rawPath string) error {
	qemu, err := exec.LookPath("qemu-img")
	if err != nil {
		return fmt.Errorf("base image %s is qcow2: converting it needs qemu-img (Debian: apt install qemu-utils), or use the image's .raw or .tar.xz form", src)
	}
	info, err := exec.CommandContext(ctx, qemu, "info", "--output=json", "-f", "qcow2", src).Output()
	if err != nil {
		return fmt.Errorf("base image %s: qemu-img info: %w%s", src, err, stderrOf(err))
	}
	var meta struct {
		Backing        string `json:"backing-filename"`
		FormatSpecific struct {
			Data struct {
				DataFile string `json:"data-file"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal(info, &meta); err != nil {
		return fmt.Errorf("base image %s: qemu-img info: %w", src, err)
	}
	if meta.Backing != "" || meta.FormatSpecific.Data.DataFile != "" {
		return fmt.Errorf("base image %s is a qcow2 image that refers to another file (%s%s); refusing it", src, meta.Backing, meta.FormatSpecific.Data.DataFile)
	}
	out, err := atomicfile.Create(rawPath, 0o644)
	if err != nil {
		return err
	}
	defer out.Abort()
	task := f.Progress.Start("decompress", 0)
	cmd := exec.CommandContext(ctx, qemu, "convert", "-q", "-f", "qcow2", "-O", "raw", src, out.TempPath())
	if b, err := cmd.CombinedOutput(); err != nil {
		task.Done(err)
		return fmt.Errorf("base image %s: qemu-img convert: %w: %s", src, err, strings.TrimSpace(string(b)))
	}
	task.Done(nil)
	if err := out.Chmod(0o444); err != nil {
		return err
	}
	return out.Commit()
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return ": " + strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}
