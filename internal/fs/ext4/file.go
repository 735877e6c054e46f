package ext4

import (
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/bakeryhq/bakery/internal/fs"
)

// maxReadFile caps ReadFile; larger files are streamed with Open.
const maxReadFile = 1 << 30

// file is an open regular file. It holds a snapshot of the block mapping,
// so reads go straight to the device without the filesystem lock. Blocks
// freed while it is open are not reused before Close, so its content stays
// readable until then.
type file struct {
	fs     *FS
	ino    uint32
	size   int64
	m      *fileMap
	inline []byte

	mu  sync.Mutex
	off int64
}

func (f *FS) openInode(in *inode) (*file, error) {
	size := in.size()
	if size > 1<<62 {
		return nil, corruptf("inode %d has implausible size %d", in.ino, size)
	}
	fl := &file{fs: f, ino: in.ino, size: int64(size)}
	if in.flags()&flagInlineData != 0 {
		b, err := f.inlineData(in)
		if err != nil {
			return nil, err
		}
		fl.inline = b
		fl.m = &fileMap{}
		return fl, nil
	}
	m, err := f.readMap(in)
	if err != nil {
		return nil, err
	}
	fl.m = m
	return fl, nil
}

func (fl *file) Size() int64 { return fl.size }

func (fl *file) Close() error { return nil }

func (fl *file) Read(p []byte) (int, error) {
	fl.mu.Lock()
	defer fl.mu.Unlock()
	n, err := fl.ReadAt(p, fl.off)
	fl.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (fl *file) ReadAt(p []byte, off int64) (int, error) {
	if fl.fs.closed.Load() {
		return 0, errClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("ext4: read at negative offset %d", off)
	}
	if off >= fl.size {
		return 0, io.EOF
	}
	want := len(p)
	if int64(want) > fl.size-off {
		p = p[:fl.size-off]
	}
	if fl.inline != nil {
		n := copy(p, fl.inline[off:])
		if n < want {
			return n, io.EOF
		}
		return n, nil
	}
	bs := int64(fl.fs.blockSize)
	done := 0
	runs := fl.m.runs
	for done < len(p) {
		pos := off + int64(done)
		lb := uint64(pos / bs)
		i := sort.Search(len(runs), func(i int) bool { return runs[i].logical+runs[i].length > lb })
		var chunk int
		if i < len(runs) && runs[i].logical <= lb {
			r := runs[i]
			end := int64(r.logical+r.length) * bs
			chunk = int(min(int64(len(p)-done), end-pos))
			if r.uninit {
				clear(p[done : done+chunk])
			} else {
				dev := int64(r.phys+lb-r.logical)*bs + pos%bs
				if err := fl.fs.readDev(p[done:done+chunk], dev); err != nil {
					return done, fmt.Errorf("ext4: inode %d: %w", fl.ino, err)
				}
			}
		} else {
			holeEnd := fl.size
			if i < len(runs) {
				holeEnd = min(holeEnd, int64(runs[i].logical)*bs)
			}
			chunk = int(min(int64(len(p)-done), holeEnd-pos))
			clear(p[done : done+chunk])
		}
		done += chunk
	}
	if done < want {
		return done, io.EOF
	}
	return done, nil
}

// Open opens a regular file for reading, following symlinks.
func (f *FS) Open(path string) (fs.File, error) {
	if err := f.rlock(); err != nil {
		return nil, fs.PathErr("open", path, err)
	}
	defer f.mu.RUnlock()
	fl, err := f.openPath(path)
	if err != nil {
		return nil, fs.PathErr("open", path, err)
	}
	return fl, nil
}

func (f *FS) openPath(path string) (*file, error) {
	r, err := f.resolve(path, true)
	if err != nil {
		return nil, err
	}
	if r.in == nil {
		return nil, fs.ErrNotExist
	}
	if r.in.isDir() {
		return nil, fs.ErrIsDir
	}
	if !r.in.isReg() {
		return nil, fmt.Errorf("not a regular file: %w", fs.ErrNotSupported)
	}
	return f.openInode(r.in)
}

// ReadFile returns the content of a regular file, following symlinks.
func (f *FS) ReadFile(path string) ([]byte, error) {
	if err := f.rlock(); err != nil {
		return nil, fs.PathErr("read", path, err)
	}
	fl, err := f.openPath(path)
	f.mu.RUnlock()
	if err != nil {
		return nil, fs.PathErr("read", path, err)
	}
	if fl.size > min(f.devSize, maxReadFile) {
		return nil, fs.PathErr("read", path, fmt.Errorf("file of %d bytes is too large to read into memory; use Open to stream it: %w", fl.size, fs.ErrNotSupported))
	}
	buf := make([]byte, fl.size)
	if _, err := fl.ReadAt(buf, 0); err != nil && err != io.EOF {
		return nil, fs.PathErr("read", path, err)
	}
	return buf, nil
}
