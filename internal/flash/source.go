package flash

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/bakeryhq/bakery/internal/bmap"
	"github.com/bakeryhq/bakery/internal/compress"
)

// Source is an image ready to be streamed: where its bytes come from, how
// large it is and which byte ranges have to be written.
type Source struct {
	Path string
	// Format is the compression format ("" for a raw image).
	Format string
	// Size is the image size in bytes, or -1 while unknown (a compressed
	// image without a block map: known once the stream ends).
	Size int64
	// Map lists the ranges to write; nil means every byte.
	Map *bmap.Bmap
	// MapOrigin says where Map came from, for logs and results.
	MapOrigin string

	// goDecoders forces the Go decompressors even where the reference
	// tools are installed (tests cover both).
	goDecoders bool
}

// SourceOptions configure OpenSource.
type SourceOptions struct {
	// BmapPath is an explicit .bmap file (--bmap).
	BmapPath string
	Logger   *slog.Logger
	// mustMap replaces MustMapRanges; tests use it to show what a
	// holes-only map does to a dirty card.
	mustMap func(string) ([]bmap.Range, error)
	// goDecoders: see Source.
	goDecoders bool
}

// OpenSource inspects an image and finds its block map: the one given, a
// .bmap beside the image (IMAGE.bmap, NAME.img.bmap for NAME.img.xz,
// NAME.bmap), or for a raw image its data (SEEK_DATA/SEEK_HOLE) together
// with everything its filesystems need to read back (MustMapRanges). A
// compressed image without a .bmap is written whole.
func OpenSource(ctx context.Context, imagePath string, opts SourceOptions) (*Source, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	f, err := os.Open(imagePath)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", imagePath, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("image %s is not a regular file", imagePath)
	}
	head := make([]byte, 8)
	n, _ := io.ReadFull(f, head)
	format := compress.Detect(head[:n])
	if format == compress.Zip {
		return nil, fmt.Errorf("image %s is a zip archive: unzip it first (zip needs random access, flashing streams)", imagePath)
	}
	s := &Source{Path: imagePath, Format: format, Size: -1, goDecoders: opts.goDecoders}
	if format == compress.None {
		s.Size = st.Size()
		if s.Size == 0 {
			return nil, fmt.Errorf("image %s is empty", imagePath)
		}
	}

	bmapPath := opts.BmapPath
	if bmapPath == "" {
		bmapPath = findBmap(imagePath)
	}
	switch {
	case bmapPath != "":
		m, err := bmap.ParseFile(bmapPath)
		if err != nil {
			return nil, err
		}
		if s.Size >= 0 && m.ImageSize != s.Size {
			return nil, fmt.Errorf("bmap %s describes a %d-byte image but %s has %d bytes: it belongs to another image", bmapPath, m.ImageSize, imagePath, s.Size)
		}
		s.Map, s.Size, s.MapOrigin = m, m.ImageSize, bmapPath
		if format != compress.None {
			if !m.Complete {
				log.Warn("this bmap was not made by bakery build: if it maps only the image's data (as bmaptool's do), zero-filled filesystem metadata is not written, and a used card keeps its old bytes there; flash such cards from the raw image, or with bakery's .bmap",
					"bmap", bmapPath)
			}
			break
		}
		// A raw image tells what its filesystems need: add whatever the
		// map leaves out, so a used card reads back clean.
		extra, err := mustMapOf(opts)(imagePath)
		if err != nil {
			log.Warn("cannot list the filesystems' metadata; writing the bmap's ranges only", "image", imagePath, "error", err)
			break
		}
		if added, err := m.Add(extra); err != nil {
			return nil, err
		} else if added > 0 {
			log.Info("the bmap leaves out blocks a used card needs (zero-filled filesystem metadata); writing them too",
				"bmap", bmapPath, "blocks", added)
		}
	case format == compress.None:
		extra, err := mustMapOf(opts)(imagePath)
		if err != nil {
			// Without knowing what the filesystems need, a hole might be
			// metadata that must read as zeros: write everything.
			log.Warn("cannot list the filesystems' metadata; writing every block", "image", imagePath, "error", err)
			extra = []bmap.Range{{Off: 0, Len: s.Size}}
		}
		m, err := bmap.Scan(imagePath, extra, 0)
		if err != nil {
			return nil, err
		}
		s.Map, s.MapOrigin = m, "data ranges and filesystem metadata of "+imagePath
	default:
		s.MapOrigin = "none"
		log.Info("compressed image without a .bmap: writing every block", "image", imagePath, "hint", "bakery build writes IMAGE.bmap beside its images")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

func mustMapOf(opts SourceOptions) func(string) ([]bmap.Range, error) {
	if opts.mustMap != nil {
		return opts.mustMap
	}
	return MustMapRanges
}

// findBmap returns the first existing candidate block map for an image.
func findBmap(imagePath string) string {
	base := compress.TrimExt(imagePath)
	candidates := []string{imagePath + ".bmap", base + ".bmap"}
	if trimmed, ok := strings.CutSuffix(base, ".img"); ok {
		candidates = append(candidates, trimmed+".bmap")
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			return c
		}
	}
	return ""
}

// MappedBytes is the number of bytes that will be written, or -1 when the
// size is unknown.
func (s *Source) MappedBytes() int64 {
	if s.Map != nil {
		return s.Map.MappedBytes()
	}
	return s.Size
}

// verifiesAgainstMap reports whether verify can use the block map's own
// checksums: every range has one.
func (s *Source) verifiesAgainstMap() bool {
	return s.Map != nil && s.Map.HasChecksums()
}

// piece is a part of the image to be emitted as one chunk.
type piece struct {
	off, len   int64
	rng        int // index in Map.Ranges; -1 without a map
	endOfRange bool
}

// pieces cuts the mapped ranges into chunks: at most chunkSize long, split
// on the chunkSize grid (so device writes stay aligned) and at headLen (the
// head is written last). Without a map it returns nil: the whole stream is
// cut as it is read.
func (s *Source) pieces(chunkSize, headLen int64) []piece {
	if s.Map == nil {
		return nil
	}
	var out []piece
	for i, r := range s.Map.Ranges {
		br := s.Map.ByteRange(r)
		for off := br.Off; off < br.End(); {
			end := min((off/chunkSize+1)*chunkSize, br.End())
			if off < headLen && end > headLen {
				end = headLen
			}
			out = append(out, piece{off: off, len: end - off, rng: i, endOfRange: end == br.End()})
			off = end
		}
	}
	return out
}

// streamResult is how the stream ended.
type streamResult struct {
	size int64 // image size seen
	err  error
}

// stream reads the image and hands every mapped chunk to emit, in order.
// finish is called once the last chunk is emitted, before the rest of a
// compressed stream is read to its end (to detect truncation and trailing
// corruption while the targets sync and verify).
func (s *Source) stream(ctx context.Context, pool *bufferPool, headLen int64, emit func(*chunk) bool, finish func()) streamResult {
	f, err := os.Open(s.Path)
	if err != nil {
		finish()
		return streamResult{err: fmt.Errorf("image: %w", err)}
	}
	defer f.Close()
	if s.Format == compress.None {
		defer finish()
		return s.streamRaw(ctx, f, pool, headLen, emit)
	}
	dec, err := s.decompressor(ctx, f)
	if err != nil {
		finish()
		return streamResult{err: fmt.Errorf("image %s: %w", s.Path, err)}
	}
	defer dec.Close()
	return s.streamCompressed(ctx, dec, pool, headLen, emit, finish)
}

func (s *Source) streamRaw(ctx context.Context, f *os.File, pool *bufferPool, headLen int64, emit func(*chunk) bool) streamResult {
	for seq, p := range s.pieces(int64(pool.size), headLen) {
		b, err := pool.get(ctx)
		if err != nil {
			return streamResult{err: err}
		}
		data := b.mem[:p.len]
		if err := readAtSplit(f, data, p.off); err != nil {
			b.drop()
			return streamResult{err: fmt.Errorf("read image %s at byte %d: %w", s.Path, p.off, err)}
		}
		if !emit(&chunk{seq: seq, piece: p, data: data, head: p.off < headLen, buf: b}) {
			return streamResult{err: context.Cause(ctx)}
		}
	}
	return streamResult{size: s.Size}
}

func (s *Source) streamCompressed(ctx context.Context, r io.Reader, pool *bufferPool, headLen int64, emit func(*chunk) bool, finish func()) streamResult {
	finished := false
	done := func() {
		if !finished {
			finished = true
			finish()
		}
	}
	defer done()
	var pos int64
	scratch := make([]byte, 1<<20)
	skip := func(to int64) error {
		if d, ok := r.(discarder); ok && pos < to {
			n, err := d.discard(to - pos)
			pos += n
			if !errors.Is(err, errors.ErrUnsupported) {
				if err == nil {
					err = ctx.Err()
				}
				return err
			}
		}
		for pos < to {
			n, err := io.ReadFull(r, scratch[:min(int64(len(scratch)), to-pos)])
			pos += int64(n)
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		return nil
	}
	streamErr := func(err error) streamResult {
		if ctx.Err() != nil {
			return streamResult{err: context.Cause(ctx)}
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			if s.Size >= 0 {
				return streamResult{err: fmt.Errorf("image %s is truncated: the %s stream ends at byte %d of %d", s.Path, s.Format, pos, s.Size)}
			}
			return streamResult{err: fmt.Errorf("image %s is truncated: the %s stream ends unexpectedly at byte %d", s.Path, s.Format, pos)}
		}
		return streamResult{err: fmt.Errorf("image %s: %s stream corrupt near byte %d: %w", s.Path, s.Format, pos, err)}
	}

	if s.Map != nil {
		for seq, p := range s.pieces(int64(pool.size), headLen) {
			if err := skip(p.off); err != nil {
				return streamErr(err)
			}
			b, err := pool.get(ctx)
			if err != nil {
				return streamResult{err: err}
			}
			data := b.mem[:p.len]
			n, err := io.ReadFull(r, data)
			pos += int64(n)
			if err != nil {
				b.drop()
				return streamErr(err)
			}
			if !emit(&chunk{seq: seq, piece: p, data: data, head: p.off < headLen, buf: b}) {
				return streamResult{err: context.Cause(ctx)}
			}
		}
		done()
		// Read to the end: the size must match the map, and the
		// decompressor checks its own integrity data only at the end.
		if err := skip(s.Size); err != nil {
			return streamErr(err)
		}
		switch n, err := readFull(r, scratch[:1]); {
		case n > 0:
			return streamResult{err: fmt.Errorf("image %s holds more than the %d bytes its bmap %s describes: the bmap belongs to another image", s.Path, s.Size, s.MapOrigin)}
		case err != io.EOF:
			return streamErr(err)
		}
		return streamResult{size: s.Size}
	}

	// No map: every byte, cut into chunks as it arrives.
	for seq := 0; ; seq++ {
		b, err := pool.get(ctx)
		if err != nil {
			return streamResult{err: err}
		}
		size := int64(pool.size)
		if pos < headLen {
			size = headLen - pos
		}
		data := b.mem[:size]
		n, err := readFull(r, data)
		if n > 0 {
			p := piece{off: pos, len: int64(n), rng: -1}
			pos += int64(n)
			if !emit(&chunk{seq: seq, piece: p, data: data[:n], head: p.off < headLen, buf: b}) {
				return streamResult{err: context.Cause(ctx)}
			}
		} else {
			b.drop()
		}
		if err == io.EOF {
			break // the decoder saw the stream's proper end
		}
		if err != nil {
			return streamErr(err)
		}
	}
	if pos == 0 {
		return streamResult{err: fmt.Errorf("image %s decompresses to nothing", s.Path)}
	}
	return streamResult{size: pos}
}

// readFull fills p like io.ReadFull but passes the reader's own error
// through: io.EOF only when the stream ended properly, so a decoder's
// io.ErrUnexpectedEOF (truncated input) is not mistaken for the end.
func readFull(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		m, err := r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// decompressor streams the decompressed image. XZ Utils and zstd, when
// installed, decode several times faster than the Go packages (xz uses
// every core), so they are used as helper processes; otherwise, and for
// gzip and bzip2, internal/compress decodes in-process.
func (s *Source) decompressor(ctx context.Context, f *os.File) (io.ReadCloser, error) {
	if !s.goDecoders {
		var argv []string
		switch s.Format {
		case compress.Xz:
			argv = []string{"xz", "--decompress", "--stdout", "--threads=0", "--", s.Path}
		case compress.Zstd:
			argv = []string{"zstd", "--decompress", "--stdout", "--quiet", "--no-progress", "--", s.Path}
		}
		if argv != nil {
			if tool, err := exec.LookPath(argv[0]); err == nil {
				return startHelper(ctx, tool, argv[1:])
			}
		}
	}
	return compress.ReaderFor(bufio.NewReaderSize(f, 1<<20), s.Format)
}

// helperReader reads a decompressor process's output. At the end of the
// output it waits for the process, so a truncated or corrupt input (which
// the tool reports by its exit status) is an error, not a short image.
type helperReader struct {
	cmd    *exec.Cmd
	out    io.ReadCloser
	stderr *bytes.Buffer
	waited bool
	err    error
}

func startHelper(ctx context.Context, tool string, args []string) (*helperReader, error) {
	cmd := exec.CommandContext(ctx, tool, args...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// A larger pipe means far fewer reads and context switches for
	// gigabytes of output (64 KiB by default on Linux).
	growPipe(pw)
	cmd.Stdout = pw
	h := &helperReader{cmd: cmd, out: pr, stderr: &bytes.Buffer{}}
	cmd.Stderr = h.stderr
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, fmt.Errorf("start %s: %w", tool, err)
	}
	return h, nil
}

func (h *helperReader) Read(p []byte) (int, error) {
	n, err := h.out.Read(p)
	if err == io.EOF {
		if werr := h.wait(); werr != nil {
			return n, werr
		}
	}
	return n, err
}

// discarder skips bytes without copying them out.
type discarder interface {
	discard(n int64) (int64, error)
}

// discard drops n bytes of output. Like Read it reports the tool's failure
// at the end of the output.
func (h *helperReader) discard(n int64) (int64, error) {
	pr, ok := h.out.(*os.File)
	if !ok {
		return 0, errors.ErrUnsupported
	}
	m, err := discardPipe(pr, n)
	if err == io.EOF {
		if werr := h.wait(); werr != nil {
			return m, werr
		}
		return m, io.ErrUnexpectedEOF
	}
	return m, err
}

func (h *helperReader) wait() error {
	if !h.waited {
		h.waited = true
		err := h.cmd.Wait()
		h.out.Close()
		if err != nil {
			msg := strings.TrimSpace(h.stderr.String())
			if msg == "" {
				msg = err.Error()
			}
			h.err = fmt.Errorf("%s: %s", filepath.Base(h.cmd.Path), msg)
			// xz: "Unexpected end of input"; zstd: "truncated input" or
			// "premature end".
			low := strings.ToLower(msg)
			if strings.Contains(low, "unexpected end") || strings.Contains(low, "truncated") || strings.Contains(low, "premature end") {
				h.err = fmt.Errorf("%w (%s)", io.ErrUnexpectedEOF, h.err)
			}
		}
	}
	return h.err
}

// Close stops the process if its output was not read to the end.
func (h *helperReader) Close() error {
	if !h.waited {
		h.cmd.Process.Kill()
		h.out.Close()
		h.waited = true
		h.cmd.Wait()
	}
	return nil
}
