package fat

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"sync"

	"github.com/bakeryhq/bakery/internal/fs"
)

// File is a regular file open for reading. Reads go straight to the device
// through the file's cluster extents, so concurrent readers (the netboot TFTP
// server) do not serialise on anything but the filesystem's read lock. If
// an operation frees or reuses any of the file's clusters (the file is
// replaced or removed) while it is open, later reads fail rather than return
// other bytes; renames and changes to other files do not disturb it.
type File struct {
	fs      *FS
	path    string
	size    int64
	cluster uint32
	ext     []extent

	mu     sync.Mutex // pos, closed and stale
	pos    int64
	closed bool
	stale  bool
}

var _ fs.File = (*File)(nil)

var errChanged = fmt.Errorf("file was replaced or removed while open: %w", fs.ErrNotExist)

// mapClusters records the extents holding the file's bytes. Only as many
// clusters as the size needs are followed, so a chain that loops cannot make
// the walk run away; a chain shorter than the size is corruption.
func (h *File) mapClusters() error {
	h.ext = nil
	if h.size == 0 {
		return nil
	}
	bpc := h.fs.g.bytesPerCluster
	need := (h.size + bpc - 1) / bpc
	if need > int64(h.fs.g.clusters) {
		return corruptf("file size %d exceeds the volume", h.size)
	}
	ext, n, err := h.fs.t.chain(h.cluster, uint32(need))
	if err != nil {
		return err
	}
	if int64(n) < need {
		return corruptf("file of %d bytes has only %d clusters", h.size, n)
	}
	h.ext = ext
	return nil
}

// Size is the file's length in bytes.
func (h *File) Size() int64 { return h.size }

// ReadAt reads len(p) bytes at off, returning io.EOF at the end of the file.
func (h *File) ReadAt(p []byte, off int64) (n int, err error) {
	f := h.fs
	f.mu.RLock()
	defer f.mu.RUnlock()
	defer guard("read", h.path, &err)
	h.mu.Lock()
	closed, stale := h.closed, h.stale
	h.mu.Unlock()
	if closed || f.closed {
		return 0, fs.PathErr("read", h.path, iofs.ErrClosed)
	}
	if stale {
		return 0, fs.PathErr("read", h.path, errChanged)
	}
	n, err = h.readAtLocked(p, off)
	if err != nil && err != io.EOF {
		err = fs.PathErr("read", h.path, err)
	}
	return n, err
}

func (h *File) readAtLocked(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= h.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > h.size-off {
		want = int(h.size - off)
	}
	g := h.fs.g
	bpc := g.bytesPerCluster
	done := 0
	pos := off // file offset of p[done]
	var base int64
	for _, e := range h.ext {
		extBytes := int64(e.count) * bpc
		if pos >= base+extBytes {
			base += extBytes
			continue
		}
		in := pos - base
		k := min(int64(want-done), extBytes-in)
		if err := readFull(h.fs.dev, p[done:done+int(k)], g.clusterOffset(e.first)+in); err != nil {
			return done, err
		}
		done += int(k)
		pos += k
		base += extBytes
		if done == want {
			break
		}
	}
	if done < len(p) {
		return done, io.EOF
	}
	return done, nil
}

// Read reads from the current position.
func (h *File) Read(p []byte) (int, error) {
	h.mu.Lock()
	pos := h.pos
	h.mu.Unlock()
	n, err := h.ReadAt(p, pos)
	h.mu.Lock()
	h.pos = pos + int64(n)
	h.mu.Unlock()
	if n > 0 && err == io.EOF {
		err = nil
	}
	return n, err
}

// Close releases the handle.
func (h *File) Close() error {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.fs.filesMu.Lock()
	delete(h.fs.files, h)
	h.fs.filesMu.Unlock()
	return nil
}
