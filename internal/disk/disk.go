// Package disk opens raw disk images and block devices and gives transactional,
// bounds-checked byte access to them and to the partitions inside. Partition
// tables are parsed and written with go-diskfs after our own bounds checks.
package disk

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrNotDiskImage is returned when a file holds no partition table and no
// filesystem we recognise.
var ErrNotDiskImage = errors.New("not a disk image: no MBR or GPT partition table and no filesystem at offset 0")

// OpenOptions choose how a disk is opened.
type OpenOptions struct {
	// Writable opens the file read-write. Writes are buffered until Commit.
	Writable bool
	// SectorSize overrides detection (512 or 4096).
	SectorSize int
}

// Disk is an open image file or block device.
type Disk struct {
	path       string
	file       *os.File
	size       int64
	sectorSize int
	writable   bool
	ov         *overlay
}

// Open opens path, which may be a regular image file or a block device.
func Open(path string, opts OpenOptions) (*Disk, error) {
	flag := os.O_RDONLY
	if opts.Writable {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("open image %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat image %s: %w", path, err)
	}
	if st.IsDir() {
		f.Close()
		return nil, fmt.Errorf("open image %s: is a directory", path)
	}
	size := st.Size()
	if st.Mode()&os.ModeDevice != 0 {
		// Block devices report size 0 from stat; their end is their size.
		if size, err = f.Seek(0, io.SeekEnd); err != nil {
			f.Close()
			return nil, fmt.Errorf("size of device %s: %w", path, err)
		}
	}
	d := &Disk{path: path, file: f, size: size, writable: opts.Writable}
	d.ov = newOverlay(f, size)
	d.sectorSize = opts.SectorSize
	if d.sectorSize == 0 {
		d.sectorSize = detectSectorSize(d, f)
	}
	if d.sectorSize != 512 && d.sectorSize != 4096 {
		f.Close()
		return nil, fmt.Errorf("open image %s: unsupported sector size %d (want 512 or 4096)", path, d.sectorSize)
	}
	return d, nil
}

// FromBytes wraps an in-memory image, read-only. Used for uploads that are
// already in memory, tests and fuzzing.
func FromBytes(name string, b []byte) *Disk {
	d := &Disk{path: name, size: int64(len(b))}
	d.ov = newOverlay(memRA{b, int64(len(b))}, d.size)
	d.sectorSize = detectSectorSize(d, d.ov)
	return d
}

// Path is the file the disk was opened from.
func (d *Disk) Path() string { return d.path }

// Size is the image or device size in bytes.
func (d *Disk) Size() int64 { return d.size }

// SectorSize is the logical sector size used for partition tables.
func (d *Disk) SectorSize() int { return d.sectorSize }

// Writable reports whether the disk was opened for writing.
func (d *Disk) Writable() bool { return d.writable }

// File exposes the underlying file for sparse-aware copies and fsync; it is
// nil for in-memory disks.
func (d *Disk) File() *os.File { return d.file }

// ReadAt reads through the write buffer.
func (d *Disk) ReadAt(p []byte, off int64) (int, error) { return d.ov.ReadAt(p, off) }

// WriteAt buffers a write until Commit.
func (d *Disk) WriteAt(p []byte, off int64) (int, error) {
	if !d.writable {
		return 0, fmt.Errorf("write %s: image opened read-only", d.path)
	}
	return d.ov.WriteAt(p, off)
}

// WriteThrough writes directly, bypassing the buffer. Only for regions that
// the committed state does not reference (fresh data blocks).
func (d *Disk) WriteThrough(p []byte, off int64) (int, error) {
	if !d.writable {
		return 0, fmt.Errorf("write %s: image opened read-only", d.path)
	}
	return d.ov.writeThrough(p, off)
}

// Dirty reports whether buffered writes are waiting for Commit.
func (d *Disk) Dirty() bool { return d.ov.dirty() }

// Commit writes the buffered changes (only pages whose bytes differ) and
// syncs the file. It returns the number of bytes written.
func (d *Disk) Commit() (int64, error) {
	if !d.writable {
		return 0, nil
	}
	n, err := d.ov.commit()
	if err != nil {
		return n, fmt.Errorf("commit %s: %w", d.path, err)
	}
	if n > 0 && d.file != nil {
		if err := d.file.Sync(); err != nil {
			return n, fmt.Errorf("sync %s: %w", d.path, err)
		}
	}
	return n, nil
}

// Discard drops buffered writes; the file stays as it was at the last Commit.
func (d *Disk) Discard() { d.ov.discard() }

// Close discards anything not committed and closes the file.
func (d *Disk) Close() error {
	d.ov.discard()
	if d.file == nil {
		return nil
	}
	if err := d.file.Close(); err != nil {
		return fmt.Errorf("close %s: %w", d.path, err)
	}
	return nil
}

// Region returns a bounds-checked window [off, off+size) of the disk.
func (d *Disk) Region(off, size int64) (*Region, error) {
	if off < 0 || size < 0 || off > d.size || size > d.size-off {
		return nil, fmt.Errorf("region [%d, +%d) lies outside the %d-byte image %s", off, size, d.size, d.path)
	}
	return &Region{d: d, off: off, size: size}, nil
}

// Region is a window of a disk, usually one partition. All I/O is relative to
// its start and refused outside it.
type Region struct {
	d    *Disk
	off  int64
	size int64
}

// Size is the window length in bytes.
func (r *Region) Size() int64 { return r.size }

// Offset is the window start within the disk.
func (r *Region) Offset() int64 { return r.off }

// Disk is the disk the region belongs to.
func (r *Region) Disk() *Disk { return r.d }

func (r *Region) check(n int, off int64) error {
	if off < 0 || int64(n) > r.size || off > r.size-int64(n) {
		return fmt.Errorf("access of %d bytes at offset %d is outside the %d-byte region: %w", n, off, r.size, io.ErrUnexpectedEOF)
	}
	return nil
}

// ReadAt reads within the region. Reads that run past its end return io.EOF
// with the bytes that fit, like a file.
func (r *Region) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at negative offset %d", off)
	}
	if off >= r.size {
		return 0, io.EOF
	}
	var eof error
	if int64(len(p)) > r.size-off {
		p = p[:r.size-off]
		eof = io.EOF
	}
	n, err := r.d.ReadAt(p, r.off+off)
	if err == nil {
		err = eof
	}
	return n, err
}

// WriteAt buffers a write within the region.
func (r *Region) WriteAt(p []byte, off int64) (int, error) {
	if err := r.check(len(p), off); err != nil {
		return 0, err
	}
	return r.d.WriteAt(p, r.off+off)
}

// WriteThrough writes unbuffered within the region; see Disk.WriteThrough.
func (r *Region) WriteThrough(p []byte, off int64) (int, error) {
	if err := r.check(len(p), off); err != nil {
		return 0, err
	}
	return r.d.WriteThrough(p, r.off+off)
}
