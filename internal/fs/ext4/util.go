package ext4

import (
	"encoding/binary"
	"fmt"

	"github.com/bakeryhq/bakery/internal/fs"
)

var le = binary.LittleEndian

func get16(b []byte, off int) uint16    { return le.Uint16(b[off:]) }
func get32(b []byte, off int) uint32    { return le.Uint32(b[off:]) }
func put16(b []byte, off int, v uint16) { le.PutUint16(b[off:], v) }
func put32(b []byte, off int, v uint32) { le.PutUint32(b[off:], v) }
func put64(b []byte, off int, v uint64) { le.PutUint64(b[off:], v) }

// corruptf reports a structural problem in the image; it wraps fs.ErrCorrupt.
func corruptf(format string, a ...any) error {
	return fmt.Errorf("ext4: "+format+": %w", append(a, fs.ErrCorrupt)...)
}

// unsupportedf reports something valid we decline to do; it wraps
// fs.ErrNotSupported.
func unsupportedf(format string, a ...any) error {
	return fmt.Errorf("ext4: "+format+": %w", append(a, fs.ErrNotSupported)...)
}

func divCeil(a, b uint64) uint64 { return (a + b - 1) / b }

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if le.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
