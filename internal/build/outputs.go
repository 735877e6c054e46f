package build

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/bakeryhq/bakery/internal/bmap"
	"github.com/bakeryhq/bakery/internal/compress"
	"github.com/bakeryhq/bakery/internal/flash"
	"github.com/bakeryhq/bakery/internal/progress"
	"github.com/bakeryhq/bakery/internal/spec"
	"github.com/bakeryhq/bakery/internal/streams"
)

// SumsFile is the checksum list written for the sha256 format.
const SumsFile = "SHA256SUMS"

// compressed output formats and their file suffixes.
var compressors = []struct{ format, codec string }{{"zst", compress.Zstd}, {"xz", compress.Xz}, {"gz", compress.Gzip}}

// writeOutputs writes every requested output under a temporary name and
// marks it for publishing. The image is read once for its checksum and
// all compressed forms together (holes are fed as zeros without reading
// them); the block map is made at the same time.
func writeOutputs(ctx context.Context, s *spec.Spec, work, outDir string, tmps *tempFiles, rep *progress.Reporter, log *slog.Logger) ([]Output, error) {
	o := &s.Output
	imgName := o.Name + ".img"
	var outs []Output
	var mu sync.Mutex
	add := func(out Output) {
		mu.Lock()
		outs = append(outs, out)
		mu.Unlock()
	}
	fi, err := os.Stat(work)
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if o.Has("img") {
		tmps.keep(work)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	fail := func(err error) {
		select {
		case errc <- err:
		default:
		}
		cancel()
	}

	if o.Has("bmap") {
		wg.Add(1)
		go func() {
			defer wg.Done()
			task := rep.Start("block map", 0)
			out, err := writeBmap(ctx, work, filepath.Join(outDir, imgName+".bmap"), tmps)
			task.Done(err)
			if err != nil {
				fail(err)
				return
			}
			add(out)
		}()
	}

	// One pass over the image feeds the image checksum and the
	// compressors.
	var sinks []io.Writer
	var imgHash hash.Hash
	if o.Has("sha256") {
		imgHash = sha256.New()
		sinks = append(sinks, imgHash)
	}
	type pending struct {
		format, tmp, final string
		file               *os.File
		buf                *bufio.Writer
		zw                 io.WriteCloser
		h                  hash.Hash
		n                  *streams.CountingWriter
	}
	var comps []*pending
	for _, c := range compressors {
		if !o.Has(c.format) {
			continue
		}
		final := imgName + "." + c.format
		tmp, err := tmps.reserve(outDir, final)
		if err != nil {
			return nil, err
		}
		f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return nil, err
		}
		p := &pending{format: c.format, tmp: tmp, final: filepath.Join(outDir, final), file: f, h: sha256.New()}
		p.n = &streams.CountingWriter{W: io.MultiWriter(f, p.h)}
		p.buf = bufio.NewWriterSize(p.n, 1<<20)
		if p.zw, err = compress.Writer(p.buf, c.codec); err != nil {
			f.Close()
			return nil, err
		}
		comps = append(comps, p)
		sinks = append(sinks, p.zw)
	}
	defer func() {
		for _, p := range comps {
			p.file.Close()
		}
	}()
	if len(sinks) > 0 {
		task := rep.Start("write outputs", size)
		err := streamImage(ctx, work, size, sinks, task)
		for _, p := range comps {
			if cerr := p.zw.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("compress %s: %w", p.final, cerr)
			}
			if ferr := p.buf.Flush(); err == nil && ferr != nil {
				err = ferr
			}
		}
		task.Done(err)
		if err != nil {
			cancel()
			wg.Wait()
			return nil, err
		}
		for _, p := range comps {
			tmps.keep(p.tmp)
			add(Output{Format: p.format, Path: p.final, Size: p.n.N, SHA256: hex.EncodeToString(p.h.Sum(nil))})
		}
	}
	if o.Has("img") {
		out := Output{Format: "img", Path: filepath.Join(outDir, imgName), Size: size}
		if imgHash != nil {
			out.SHA256 = hex.EncodeToString(imgHash.Sum(nil))
		}
		add(out)
	}
	wg.Wait()
	select {
	case err := <-errc:
		return nil, err
	default:
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	if o.Has("qcow2") {
		task := rep.Start("qcow2", 0)
		out, err := writeQcow2(ctx, work, filepath.Join(outDir, o.Name+".qcow2"), tmps)
		task.Done(err)
		if err != nil {
			return nil, err
		}
		add(out)
	}

	sort.Slice(outs, func(i, j int) bool { return outs[i].Path < outs[j].Path })
	if o.Has("sha256") {
		var b strings.Builder
		for i := range outs {
			if outs[i].SHA256 == "" {
				sum, err := fileSHA256(ctx, outs[i].Path, tmps)
				if err != nil {
					return nil, err
				}
				outs[i].SHA256 = sum
			}
			fmt.Fprintf(&b, "%s  %s\n", outs[i].SHA256, filepath.Base(outs[i].Path))
		}
		tmp, err := tmps.reserve(outDir, SumsFile)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
			return nil, err
		}
		tmps.keep(tmp)
		sum := sha256.Sum256([]byte(b.String()))
		outs = append(outs, Output{Format: "sha256", Path: filepath.Join(outDir, SumsFile), Size: int64(b.Len()), SHA256: hex.EncodeToString(sum[:])})
	} else {
		// Without the sha256 format the image is not hashed: hashing
		// costs a pass over every byte, holes included, and would
		// dominate the build. The other outputs are small or were
		// hashed while written.
		for i := range outs {
			if outs[i].SHA256 == "" && outs[i].Format != "img" {
				sum, err := fileSHA256(ctx, outs[i].Path, tmps)
				if err != nil {
					return nil, err
				}
				outs[i].SHA256 = sum
			}
		}
	}
	log.Debug("outputs written", "count", len(outs))
	return outs, nil
}

func writeBmap(ctx context.Context, work, final string, tmps *tempFiles) (Output, error) {
	ranges, err := flash.MustMapRanges(work)
	if err != nil {
		return Output{}, fmt.Errorf("block map: %w", err)
	}
	b, err := bmap.Generate(ctx, work, ranges, 0)
	if err != nil {
		return Output{}, err
	}
	b.Complete = true // the must-map ranges are in
	data, err := b.Marshal()
	if err != nil {
		return Output{}, err
	}
	tmp, err := tmps.reserve(filepath.Dir(final), filepath.Base(final))
	if err != nil {
		return Output{}, err
	}
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return Output{}, err
	}
	tmps.keep(tmp)
	sum := sha256.Sum256(data)
	return Output{Format: "bmap", Path: final, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}, nil
}

func writeQcow2(ctx context.Context, work, final string, tmps *tempFiles) (Output, error) {
	tmp, err := tmps.reserve(filepath.Dir(final), filepath.Base(final))
	if err != nil {
		return Output{}, err
	}
	cmd := exec.CommandContext(ctx, "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", work, tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		if ctx.Err() != nil {
			return Output{}, ctx.Err()
		}
		return Output{}, fmt.Errorf("qemu-img convert to qcow2: %v: %s", err, strings.TrimSpace(string(out)))
	}
	tmps.keep(tmp)
	fi, err := os.Stat(tmp)
	if err != nil {
		return Output{}, err
	}
	return Output{Format: "qcow2", Path: final, Size: fi.Size()}, nil
}

// fileSHA256 hashes an output by its final path (reading its temporary
// file, since nothing is renamed yet).
func fileSHA256(ctx context.Context, final string, tmps *tempFiles) (string, error) {
	path := final
	tmps.mu.Lock()
	for _, f := range tmps.files {
		if f.final == final {
			path = f.tmp
		}
	}
	tmps.mu.Unlock()
	fh, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, streams.WithContext(ctx, fh)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// streamChunk is the unit of the output pass.
const streamChunk = 4 << 20

// streamImage feeds the whole image to every sink, in order, with each
// chunk written to all sinks in parallel while the next one is read.
// Holes (SEEK_HOLE) are fed from a zero buffer without reading them.
func streamImage(ctx context.Context, path string, size int64, sinks []io.Writer, task *progress.Task) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := bmap.DataRanges(f, size)
	if err != nil {
		return err
	}
	zero := make([]byte, streamChunk)
	free := make(chan []byte, 3)
	for range 3 {
		free <- make([]byte, streamChunk)
	}
	type chunk struct {
		b      []byte
		pooled bool
	}
	work := make(chan chunk, 2)
	errc := make(chan error, 1)
	go func() {
		var werr error
		for c := range work {
			if werr == nil {
				var wg sync.WaitGroup
				errs := make([]error, len(sinks))
				for i, s := range sinks {
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, errs[i] = s.Write(c.b)
					}()
				}
				wg.Wait()
				for _, e := range errs {
					if e != nil && werr == nil {
						werr = e
					}
				}
				task.Add(int64(len(c.b)))
			}
			if c.pooled {
				free <- c.b[:cap(c.b)]
			}
		}
		errc <- werr
	}()
	produce := func() error {
		defer close(work)
		pos := int64(0)
		zeros := func(until int64) error {
			for pos < until {
				if err := ctx.Err(); err != nil {
					return err
				}
				n := min(int64(streamChunk), until-pos)
				work <- chunk{b: zero[:n]}
				pos += n
			}
			return nil
		}
		for _, r := range data {
			if err := zeros(r.Off); err != nil {
				return err
			}
			for pos < r.End() {
				if err := ctx.Err(); err != nil {
					return err
				}
				n := min(int64(streamChunk), r.End()-pos)
				b := <-free
				if _, err := f.ReadAt(b[:n], pos); err != nil {
					return fmt.Errorf("read %s at %d: %w", path, pos, err)
				}
				work <- chunk{b: b[:n], pooled: true}
				pos += n
			}
		}
		return zeros(size)
	}
	perr := produce()
	werr := <-errc
	if perr != nil {
		return perr
	}
	return werr
}
