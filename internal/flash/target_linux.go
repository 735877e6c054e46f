//go:build linux

package flash

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

func isDevice(st os.FileInfo) bool {
	return st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0
}

// openDevice opens a block device exclusively (the kernel refuses while a
// partition is mounted or the disk is otherwise claimed) with O_DIRECT,
// plus an ordinary descriptor for unaligned pieces.
func openDevice(path string) (*Target, error) {
	direct, err := os.OpenFile(path, os.O_RDWR|os.O_EXCL|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) {
		direct = nil
	} else if err != nil {
		return nil, fmt.Errorf("open %s exclusively: %w", path, err)
	}
	flags := os.O_RDWR
	if direct == nil {
		flags |= os.O_EXCL
	}
	buffered, err := os.OpenFile(path, flags, 0)
	if err != nil {
		if direct != nil {
			direct.Close()
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	size, err := buffered.Seek(0, io.SeekEnd)
	if err != nil {
		buffered.Close()
		if direct != nil {
			direct.Close()
		}
		return nil, fmt.Errorf("size of %s: %w", path, err)
	}
	sector := 512
	if s, err := unix.IoctlGetInt(int(buffered.Fd()), unix.BLKSSZGET); err == nil && s >= 512 && s <= ioAlign {
		sector = s
	}
	return &Target{Path: path, Device: true, Size: size, sector: sector, direct: direct, buffered: buffered}, nil
}

// Sync makes everything written durable: fdatasync on each descriptor (on
// a block device this also flushes the device's write cache) and, for
// devices, BLKFLSBUF to drop the kernel's cached copy so verify and the
// image engine read what the card holds.
func (t *Target) Sync() error {
	for _, f := range []*os.File{t.direct, t.buffered} {
		if f == nil {
			continue
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return fmt.Errorf("sync %s: %w", t.Path, err)
		}
	}
	if t.Device {
		f := t.buffered
		if f == nil {
			f = t.direct
		}
		// Not fatal: some devices (and containers) refuse the ioctl; the
		// verify read is O_DIRECT anyway.
		_ = unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0)
	}
	return nil
}

// openReaders opens the target for reading back around the page cache:
// an O_DIRECT descriptor where possible, and an ordinary one for unaligned
// pieces after asking the kernel to drop its cached pages (fdatasync made
// them clean, so they can be dropped).
func (t *Target) openReaders() (direct, plain *os.File, err error) {
	if f, err := os.OpenFile(t.Path, os.O_RDONLY|unix.O_DIRECT, 0); err == nil {
		direct = f
	}
	plain, err = os.Open(t.Path)
	if err != nil {
		if direct != nil {
			direct.Close()
		}
		return nil, nil, fmt.Errorf("open %s for verify: %w", t.Path, err)
	}
	_ = unix.Fadvise(int(plain.Fd()), 0, 0, unix.FADV_DONTNEED)
	if t.Device {
		_ = unix.IoctlSetInt(int(plain.Fd()), unix.BLKFLSBUF, 0)
	}
	return direct, plain, nil
}

// startWriteback asks the kernel to start writing a range of the page
// cache to disk now, without waiting. Left alone, the kernel would hold
// the dirty pages until the final fdatasync (far below its dirty limits for
// a card-sized image), so reading the image and writing the disk would not
// overlap. Errors are ignored: fdatasync still makes everything durable.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
