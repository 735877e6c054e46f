//go:build unix

package bmap

import (
	"errors"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// DataRanges lists the parts of a file that hold data according to
// SEEK_DATA/SEEK_HOLE. Where the filesystem cannot tell, the whole file is
// data.
func DataRanges(f *os.File, size int64) ([]Range, error) {
	var out []Range
	for off := int64(0); off < size; {
		data, err := f.Seek(off, unix.SEEK_DATA)
		if errors.Is(err, syscall.ENXIO) {
			break // only a hole remains
		}
		if err != nil {
			if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) || errors.Is(err, syscall.EOPNOTSUPP) {
				return []Range{{Off: 0, Len: size}}, nil
			}
			return nil, err
		}
		hole, err := f.Seek(data, unix.SEEK_HOLE)
		if err != nil || hole > size {
			hole = size
		}
		if hole <= data {
			break
		}
		out = append(out, Range{Off: data, Len: hole - data})
		off = hole
	}
	_, err := f.Seek(0, io.SeekStart)
	return out, err
}
