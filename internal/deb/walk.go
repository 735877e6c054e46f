package deb

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"

	"github.com/bakeryhq/bakery/internal/compress"
)

// WalkFiles calls fn for each regular file of the package's data.tar, in
// archive order, with its image path (as CleanName makes it), its size
// and a reader of its bytes valid until fn returns. fn returning
// io/fs.SkipAll stops the walk without an error; any other error stops
// it and is returned. Nothing is written anywhere: this is for
// inspecting what Install would put into an image.
func (p *Package) WalkFiles(ctx context.Context, fn func(name string, size int64, r io.Reader) error) error {
	err := p.walkData(ctx, func(tr *tar.Reader, h *tar.Header) error {
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA {
			return nil
		}
		name, err := CleanName(h.Name)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrFormat, err)
		}
		return fn(name, h.Size, tr)
	})
	if errors.Is(err, iofs.SkipAll) {
		return nil
	}
	return err
}

// walkData calls fn for every member of data.tar, bounded by maxEntries
// and stopping when ctx ends.
func (p *Package) walkData(ctx context.Context, fn func(*tar.Reader, *tar.Header) error) error {
	dec, err := compress.ReaderFor(io.NewSectionReader(p.r, p.Data.Offset, p.Data.Size), p.DataFormat)
	if err != nil {
		return fmt.Errorf("%w: data.tar: %v", ErrFormat, err)
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	for n := 0; ; n++ {
		if n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: data.tar: %v", ErrFormat, err)
		}
		if n >= maxEntries {
			return fmt.Errorf("%w: data.tar has more than %d entries", ErrFormat, maxEntries)
		}
		if err := fn(tr, h); err != nil {
			return err
		}
	}
}
