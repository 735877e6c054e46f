//go:build linux || darwin || freebsd

package fetch

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// nextData finds the data region at or after off: [start, end). start is
// size when only a hole remains. Filesystems without SEEK_DATA report the
// whole rest as data.
func nextData(f *os.File, off, size int64) (start, end int64, err error) {
	start, err = unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return size, size, nil
	}
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTSUP) {
		return off, size, nil
	}
	if err != nil {
		return 0, 0, err
	}
	end, err = unix.Seek(int(f.Fd()), start, unix.SEEK_HOLE)
	if err != nil {
		return start, size, nil
	}
	return start, min(end, size), nil
}
