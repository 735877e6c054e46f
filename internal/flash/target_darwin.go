//go:build darwin

package flash

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Disk ioctls from <sys/disk.h>.
const (
	dkiocGetBlockSize  = 0x40046418 // _IOR('d', 24, uint32_t)
	dkiocGetBlockCount = 0x40086419 // _IOR('d', 25, uint64_t)
)

// isDevice accepts block devices and the raw /dev/rdiskN character devices,
// which are much faster to write on macOS.
func isDevice(st os.FileInfo) bool { return st.Mode()&os.ModeDevice != 0 }

// openDevice opens a disk with the cache disabled (F_NOCACHE). Raw disks
// take only whole sectors, so unaligned pieces are read-modify-written.
func openDevice(path string) (*Target, error) {
	// O_EXLOCK fails at once (O_NONBLOCK) when someone else holds the disk.
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_EXLOCK|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s exclusively (unmount it with diskutil unmountDisk first): %w", path, err)
	}
	_, _ = unix.FcntlInt(f.Fd(), unix.F_NOCACHE, 1)
	bs, err1 := unix.IoctlGetInt(int(f.Fd()), dkiocGetBlockSize)
	count, err2 := unix.IoctlGetInt(int(f.Fd()), dkiocGetBlockCount)
	if err1 != nil || err2 != nil || bs <= 0 {
		f.Close()
		return nil, fmt.Errorf("size of %s: %v", path, firstErr(err1, err2))
	}
	sector := 512
	if bs >= 512 && bs <= ioAlign {
		sector = bs
	}
	return &Target{Path: path, Device: true, Size: int64(count) * int64(bs), sector: sector, direct: f}, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// Sync flushes to stable storage with F_FULLFSYNC (plain fsync on macOS
// does not flush the drive's cache).
func (t *Target) Sync() error {
	for _, f := range []*os.File{t.direct, t.buffered} {
		if f == nil {
			continue
		}
		if _, err := unix.FcntlInt(f.Fd(), unix.F_FULLFSYNC, 0); err != nil {
			if err := f.Sync(); err != nil {
				return fmt.Errorf("sync %s: %w", t.Path, err)
			}
		}
	}
	return nil
}

// openReaders opens the target with the cache disabled for verify. A raw
// disk takes only whole sectors, so it is the direct reader alone.
func (t *Target) openReaders() (direct, plain *os.File, err error) {
	f, err := os.Open(t.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s for verify: %w", t.Path, err)
	}
	_, _ = unix.FcntlInt(f.Fd(), unix.F_NOCACHE, 1)
	if t.Device {
		return f, nil, nil
	}
	return nil, f, nil
}

// startWriteback: the final sync writes everything; no early-writeback
// hint is used here.
func startWriteback(*os.File, int64, int64) {}
