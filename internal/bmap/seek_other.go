//go:build !unix

package bmap

import "os"

// DataRanges reports the whole file as data where SEEK_DATA is unavailable.
func DataRanges(f *os.File, size int64) ([]Range, error) {
	return []Range{{Off: 0, Len: size}}, nil
}
