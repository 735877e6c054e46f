package disk

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"sync"
)

// overlayPage is the granularity of buffered writes. It matches the usual
// filesystem block and flash page size, so one metadata update dirties one page.
const overlayPage = 4096

// backing is what an overlay sits on: the image file or block device.
type backing interface {
	io.ReaderAt
	io.WriterAt
}

// overlay buffers writes in memory until commit. It gives every edit
// all-or-nothing behaviour (a failed operation is discarded and the image is
// untouched) and it turns the many small rewrites of the same metadata (a FAT
// table rewritten per file, a bitmap per allocation) into one write per
// changed page at commit, so the bytes written track the bytes changed.
type overlay struct {
	mu    sync.RWMutex
	base  backing
	size  int64
	pages map[int64][]byte // page index -> overlayPage bytes
}

func newOverlay(base backing, size int64) *overlay {
	return &overlay{base: base, size: size, pages: map[int64][]byte{}}
}

func (o *overlay) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at negative offset %d", off)
	}
	if off >= o.size {
		return 0, io.EOF
	}
	want := len(p)
	var eof error
	if int64(want) > o.size-off {
		p = p[:o.size-off]
		eof = io.EOF
	}
	o.mu.RLock()
	defer o.mu.RUnlock()
	if len(o.pages) == 0 {
		n, err := o.base.ReadAt(p, off)
		if err == io.EOF && n == len(p) {
			err = nil
		}
		if err != nil {
			return n, err
		}
		return n, eof
	}
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		idx := pos / overlayPage
		inPage := int(pos % overlayPage)
		chunk := min(overlayPage-inPage, len(p)-done)
		if pg, ok := o.pages[idx]; ok {
			copy(p[done:done+chunk], pg[inPage:])
			done += chunk
			continue
		}
		// Extend the direct read over following pages that are not buffered.
		end := done + chunk
		for end < len(p) {
			if _, ok := o.pages[(off+int64(end))/overlayPage]; ok {
				break
			}
			end = min(end+overlayPage, len(p))
		}
		n, err := o.base.ReadAt(p[done:end], pos)
		if err == io.EOF && n == end-done {
			err = nil
		}
		if err != nil {
			return done + n, err
		}
		done = end
	}
	return done, eof
}

// WriteAt buffers p; nothing reaches the backing store before commit.
func (o *overlay) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > o.size {
		return 0, fmt.Errorf("write of %d bytes at offset %d is outside the %d-byte image", len(p), off, o.size)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	done := 0
	for done < len(p) {
		pos := off + int64(done)
		idx := pos / overlayPage
		inPage := int(pos % overlayPage)
		chunk := min(overlayPage-inPage, len(p)-done)
		pg, ok := o.pages[idx]
		if !ok {
			pg = make([]byte, overlayPage)
			if chunk < overlayPage {
				if err := o.readBase(pg, idx*overlayPage); err != nil {
					return done, err
				}
			}
			o.pages[idx] = pg
		}
		copy(pg[inPage:], p[done:done+chunk])
		done += chunk
	}
	return done, nil
}

// writeThrough writes p straight to the backing store. Callers use it only for
// space the committed state does not reference (data blocks of a file being
// created), which keeps large writes out of memory without losing atomicity.
func (o *overlay) writeThrough(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > o.size {
		return 0, fmt.Errorf("write of %d bytes at offset %d is outside the %d-byte image", len(p), off, o.size)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	// Keep any buffered page covering this range consistent with the new bytes.
	if len(o.pages) > 0 {
		for idx := off / overlayPage; idx <= (off+int64(len(p))-1)/overlayPage; idx++ {
			pg, ok := o.pages[idx]
			if !ok {
				continue
			}
			pageStart := idx * overlayPage
			from := max(off, pageStart)
			to := min(off+int64(len(p)), pageStart+overlayPage)
			copy(pg[from-pageStart:to-pageStart], p[from-off:to-off])
		}
	}
	return o.base.WriteAt(p, off)
}

func (o *overlay) readBase(pg []byte, off int64) error {
	n := len(pg)
	if off+int64(n) > o.size {
		n = int(o.size - off)
	}
	got, err := o.base.ReadAt(pg[:n], off)
	if err == io.EOF && got == n {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("read image at offset %d: %w", off, err)
	}
	clear(pg[n:])
	return nil
}

func (o *overlay) dirty() bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return len(o.pages) > 0
}

// commit writes every buffered page whose bytes differ from the backing store,
// coalescing adjacent pages into single writes, and empties the buffer.
func (o *overlay) commit() (written int64, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	idxs := make([]int64, 0, len(o.pages))
	for idx := range o.pages {
		idxs = append(idxs, idx)
	}
	sort.Slice(idxs, func(i, j int) bool { return idxs[i] < idxs[j] })
	cur := make([]byte, overlayPage)
	var run []byte
	var runStart int64 = -1
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		n := int64(len(run))
		if runStart+n > o.size {
			n = o.size - runStart
		}
		if _, err := o.base.WriteAt(run[:n], runStart); err != nil {
			return fmt.Errorf("write image at offset %d: %w", runStart, err)
		}
		written += n
		run = run[:0]
		runStart = -1
		return nil
	}
	for _, idx := range idxs {
		pg := o.pages[idx]
		if err := o.readBase(cur, idx*overlayPage); err != nil {
			return written, err
		}
		if bytes.Equal(cur, pg) {
			if err := flush(); err != nil {
				return written, err
			}
			continue
		}
		if runStart >= 0 && runStart+int64(len(run)) != idx*overlayPage {
			if err := flush(); err != nil {
				return written, err
			}
		}
		if runStart < 0 {
			runStart = idx * overlayPage
		}
		run = append(run, pg...)
		if len(run) >= 8<<20 {
			if err := flush(); err != nil {
				return written, err
			}
		}
	}
	if err := flush(); err != nil {
		return written, err
	}
	o.pages = map[int64][]byte{}
	return written, nil
}

func (o *overlay) discard() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pages = map[int64][]byte{}
}
