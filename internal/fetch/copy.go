package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bakeryhq/bakery/internal/atomicfile"
)

// CopySparse copies the image src to dst (mode 0644) so that the cost
// grows with the data in src, not its size: a reflink (a copy-on-write
// clone: FICLONE on Linux btrfs/XFS, clonefile on macOS APFS) when the
// filesystem offers one, else a copy of only the data regions that
// SEEK_DATA/SEEK_HOLE report, leaving holes as holes. dst appears
// atomically (written under a temporary name, then renamed), so an
// interrupted copy never leaves a file that looks complete. It is not
// fsynced: dst is a working copy, and the build syncs what it publishes.
func CopySparse(ctx context.Context, src, dst string) error {
	_, err := copySparse(ctx, src, dst, copyOptions{perm: 0o644})
	return err
}

type copyOptions struct {
	perm      os.FileMode
	noReflink bool // tests: force the data-region copy
	// sparsify reads the data regions through user space and leaves
	// their all-zero blocks as holes too (used when filling the cache
	// from a local image that may not be sparse).
	sparsify bool
	// durable fsyncs the copy before the rename (cache files).
	durable bool
}

type copyStats struct {
	reflinked bool
	dataBytes int64 // bytes read from src (data regions)
}

// CopySparseInto copies the image src into dst, an empty file the caller
// created under its own temporary name, the same way as CopySparse, and
// sets its mode to 0644. The caller owns dst's name: no second temporary
// file appears beside it, so a killed copy leaves only what the caller
// knows to clean up.
func CopySparseInto(ctx context.Context, src string, dst *os.File) error {
	in, size, err := openCopySource(src)
	if err != nil {
		return err
	}
	defer in.Close()
	_, err = copyInto(ctx, in, size, dst, dst.Name(), copyOptions{perm: 0o644})
	return err
}

func openCopySource(src string) (*os.File, int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, 0, fmt.Errorf("copy image: %w", err)
	}
	fi, err := in.Stat()
	if err != nil {
		in.Close()
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		in.Close()
		return nil, 0, fmt.Errorf("copy image: %s is not a regular file", src)
	}
	return in, fi.Size(), nil
}

func copySparse(ctx context.Context, src, dst string, opt copyOptions) (copyStats, error) {
	in, size, err := openCopySource(src)
	if err != nil {
		return copyStats{}, err
	}
	defer in.Close()
	out, err := createTemp(dst, opt.perm, opt.durable)
	if err != nil {
		return copyStats{}, err
	}
	defer out.abort()
	st, err := copyInto(ctx, in, size, out.File, dst, opt)
	if err != nil {
		return st, err
	}
	return st, out.commit()
}

// copyInto fills the empty file out (to be named dst) with in's size
// bytes: a reflink where possible, else the data regions.
func copyInto(ctx context.Context, in *os.File, size int64, out *os.File, dst string, opt copyOptions) (copyStats, error) {
	var st copyStats
	if !opt.noReflink && reflink(out, in) == nil {
		st.reflinked = true
		// A clone may carry src's permissions (macOS).
		return st, os.Chmod(out.Name(), opt.perm)
	}
	if err := out.Chmod(opt.perm); err != nil {
		return st, err
	}
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		start, end, err := nextData(in, off, size)
		if err != nil {
			return st, fmt.Errorf("copy image %s: %w", in.Name(), err)
		}
		if start >= size {
			break
		}
		n, err := copyRange(out, in, start, end-start, opt.sparsify)
		st.dataBytes += n
		if err != nil {
			return st, fmt.Errorf("copy image %s to %s: %w", in.Name(), dst, err)
		}
		off = end
	}
	return st, out.Truncate(size)
}

// tempFile is dst being written under a temporary name in its directory.
// Durable copies (cache files) go through atomicfile, which fsyncs; a
// working copy skips the fsync, which costs more than copying a sparse
// image's data.
type tempFile struct {
	*os.File
	atomic *atomicfile.File // when durable
	final  string
	done   bool
}

func createTemp(dst string, perm os.FileMode, durable bool) (*tempFile, error) {
	if durable {
		f, err := atomicfile.Create(dst, perm)
		if err != nil {
			return nil, err
		}
		return &tempFile{File: f.File, atomic: f, final: dst}, nil
	}
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*.partial")
	if err != nil {
		return nil, fmt.Errorf("create temporary file for %s: %w", dst, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &tempFile{File: f, final: dst}, nil
}

func (t *tempFile) commit() error {
	t.done = true
	if t.atomic != nil {
		return t.atomic.Commit()
	}
	if err := t.Close(); err != nil {
		os.Remove(t.Name())
		return fmt.Errorf("close %s: %w", t.final, err)
	}
	if err := os.Rename(t.Name(), t.final); err != nil {
		os.Remove(t.Name())
		return fmt.Errorf("rename into %s: %w", t.final, err)
	}
	return nil
}

func (t *tempFile) abort() {
	if t.done {
		return
	}
	t.done = true
	if t.atomic != nil {
		t.atomic.Abort()
		return
	}
	t.Close()
	os.Remove(t.Name())
}

// copyRange copies n bytes at off from in to out at the same offset,
// in the kernel where it can (copy_file_range), else (or when sparsify)
// through a buffer that skips all-zero blocks so they stay holes.
func copyRange(out, in *os.File, off, n int64, sparsify bool) (int64, error) {
	var done int64
	if !sparsify {
		var err error
		done, err = kernelCopy(out, in, off, n)
		if err == nil || !errors.Is(err, errNoKernelCopy) {
			return done, err
		}
	}
	buf := make([]byte, 4<<20)
	for done < n {
		chunk := buf[:min(int64(len(buf)), n-done)]
		r, err := in.ReadAt(chunk, off+done)
		if r > 0 {
			w := &sparseWriter{f: out, off: off + done}
			if _, werr := w.Write(chunk[:r]); werr != nil {
				return done, werr
			}
			done += int64(r)
		}
		if err == io.EOF {
			return done, nil // the file shrank under us; the truncate fixes the size
		}
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

var errNoKernelCopy = errors.New("no in-kernel copy")
