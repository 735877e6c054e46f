package disk

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"time"

	"github.com/diskfs/go-diskfs/backend"
)

// RandomAccess is what a go-diskfs backend needs from us: positioned reads
// and writes over a known size (a partition Region, or bytes in memory).
type RandomAccess interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
}

// NewBackend adapts a RandomAccess (typically a *Region) to go-diskfs's
// backend.Storage, so go-diskfs filesystems read and write through our
// buffered, bounds-checked regions instead of a raw *os.File.
func NewBackend(ra RandomAccess, name string) backend.Storage {
	return &storage{ra: ra, name: name}
}

type storage struct {
	ra   RandomAccess
	name string
	pos  int64
}

var errNoOSFile = errors.New("no OS file behind this backend")

func (s *storage) Stat() (iofs.FileInfo, error) { return fileInfo{s.name, s.ra.Size()}, nil }
func (s *storage) Read(p []byte) (int, error) {
	n, err := s.ra.ReadAt(p, s.pos)
	s.pos += int64(n)
	return n, err
}
func (s *storage) ReadAt(p []byte, off int64) (int, error)  { return s.ra.ReadAt(p, off) }
func (s *storage) WriteAt(p []byte, off int64) (int, error) { return s.ra.WriteAt(p, off) }
func (s *storage) Close() error                             { return nil }
func (s *storage) Sys() (*os.File, error)                   { return nil, errNoOSFile }
func (s *storage) Writable() (backend.WritableFile, error)  { return s, nil }
func (s *storage) Path() string                             { return "" }
func (s *storage) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += s.pos
	case io.SeekEnd:
		off += s.ra.Size()
	default:
		return 0, fmt.Errorf("seek: bad whence %d", whence)
	}
	if off < 0 {
		return 0, fmt.Errorf("seek to negative offset %d", off)
	}
	s.pos = off
	return off, nil
}

type fileInfo struct {
	name string
	size int64
}

func (f fileInfo) Name() string        { return f.name }
func (f fileInfo) Size() int64         { return f.size }
func (f fileInfo) Mode() iofs.FileMode { return 0o600 }
func (f fileInfo) ModTime() time.Time  { return time.Time{} }
func (f fileInfo) IsDir() bool         { return false }
func (f fileInfo) Sys() any            { return nil }

// memRA is a read-only RandomAccess over bytes whose reported size may be
// larger than the bytes held (reads past them fail), used to hand go-diskfs
// exactly the table sectors we bounds-checked.
type memRA struct {
	b    []byte
	size int64
}

func (m memRA) Size() int64 { return m.size }
func (m memRA) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m.b)) {
		return 0, fmt.Errorf("read at %d outside the %d checked bytes: %w", off, len(m.b), io.ErrUnexpectedEOF)
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.ErrUnexpectedEOF
	}
	return n, nil
}
func (m memRA) WriteAt([]byte, int64) (int, error) { return 0, errors.New("read-only") }

func bytesFile(b []byte) backend.Storage { return NewBackend(memRA{b, int64(len(b))}, "mbr") }
func sizedBytesFile(b []byte, size int64) backend.Storage {
	return NewBackend(memRA{b, size}, "gpt")
}

// writerFile lets go-diskfs partition writers write into the disk buffer.
type writerFile struct{ d *Disk }

func (w writerFile) Stat() (iofs.FileInfo, error)             { return fileInfo{w.d.path, w.d.size}, nil }
func (w writerFile) Read([]byte) (int, error)                 { return 0, errors.New("not readable sequentially") }
func (w writerFile) ReadAt(p []byte, off int64) (int, error)  { return w.d.ReadAt(p, off) }
func (w writerFile) WriteAt(p []byte, off int64) (int, error) { return w.d.WriteAt(p, off) }
func (w writerFile) Seek(off int64, whence int) (int64, error) {
	if whence == io.SeekEnd {
		return w.d.size + off, nil
	}
	return off, nil
}
func (w writerFile) Close() error { return nil }
