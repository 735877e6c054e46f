package flash

import (
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"
)

// ioAlign is the memory and offset alignment direct I/O gets: 4096 covers
// every logical sector size (512 and 4096) in use.
const ioAlign = 4096

// Target is an open card, disk or image file being written.
type Target struct {
	Path string
	// Device is true for block devices (and raw character disks on macOS).
	Device bool
	// Size is the device size, or the file size when opened.
	Size int64

	sector   int      // logical sector size; direct I/O needs this alignment
	direct   *os.File // O_DIRECT (or F_NOCACHE) descriptor, nil when unavailable
	buffered *os.File // ordinary descriptor for unaligned pieces; nil on raw devices
	origSize int64    // file size before we touched it (files only)
}

// openTarget opens path for writing. Regular files are created when
// missing; devices are opened exclusively where the OS supports it.
func openTarget(path string) (*Target, error) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("create target %s: %w", path, err)
		}
		return &Target{Path: path, buffered: f, sector: 512}, nil
	case err != nil:
		return nil, fmt.Errorf("target %s: %w", path, err)
	case st.Mode().IsRegular():
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("open target %s: %w", path, err)
		}
		return &Target{Path: path, buffered: f, Size: st.Size(), origSize: st.Size(), sector: 512}, nil
	case isDevice(st):
		return openDevice(path)
	}
	return nil, fmt.Errorf("target %s is neither a disk device nor a regular file (%s)", path, st.Mode().Type())
}

// alignedBuffer returns a zeroed n-byte slice whose start is ioAlign-aligned
// in memory, as O_DIRECT requires.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+ioAlign)
	shift := 0
	if r := int(uintptr(unsafe.Pointer(&b[0])) % ioAlign); r != 0 {
		shift = ioAlign - r
	}
	return b[shift : shift+n : shift+n]
}

func isAligned(p []byte, off int64, sector int) bool {
	return len(p) > 0 && off%int64(sector) == 0 && len(p)%sector == 0 &&
		uintptr(unsafe.Pointer(&p[0]))%ioAlign == 0
}

// WriteAt writes all of p at off: directly when p, off and the length are
// aligned, else through the ordinary descriptor (or by read-modify-write of
// whole sectors on raw devices that have none).
func (t *Target) WriteAt(p []byte, off int64) error {
	var err error
	switch {
	case t.direct != nil && isAligned(p, off, t.sector):
		_, err = t.direct.WriteAt(p, off)
	case t.buffered != nil:
		if err = writeAtSplit(t.buffered, p, off); err == nil {
			startWriteback(t.buffered, off, int64(len(p)))
		}
	default:
		err = t.writeSectors(p, off)
	}
	if err != nil {
		return fmt.Errorf("write %d bytes at byte %d of %s: %w", len(p), off, t.Path, err)
	}
	return nil
}

// pageCacheIO is the largest read or write bakery issues through the page
// cache. Copies of several MiB in one call cost several times more kernel
// time per byte than 1 MiB ones (measured: 4 MiB pwrite into ext4 ran at a
// quarter of the speed), so larger requests are split.
const pageCacheIO = 1 << 20

// writeAtSplit writes p at off in pageCacheIO pieces.
func writeAtSplit(f *os.File, p []byte, off int64) error {
	for len(p) > 0 {
		n := min(len(p), pageCacheIO)
		if _, err := f.WriteAt(p[:n], off); err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// readAtSplit fills p from off in pageCacheIO pieces.
func readAtSplit(f *os.File, p []byte, off int64) error {
	for len(p) > 0 {
		n := min(len(p), pageCacheIO)
		if _, err := f.ReadAt(p[:n], off); err != nil {
			return err
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// writeSectors does a read-modify-write of the sectors p touches.
func (t *Target) writeSectors(p []byte, off int64) error {
	s := int64(t.sector)
	start := off / s * s
	end := (off + int64(len(p)) + s - 1) / s * s
	buf := alignedBuffer(int(end - start))
	if _, err := t.direct.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	copy(buf[off-start:], p)
	_, err := t.direct.WriteAt(buf, start)
	return err
}

// prepareSize makes a regular file at least size bytes long.
func (t *Target) prepareSize(size int64) error {
	if t.Device || size <= t.Size {
		return nil
	}
	if err := t.buffered.Truncate(size); err != nil {
		return fmt.Errorf("extend %s to %d bytes: %w", t.Path, size, err)
	}
	t.Size = size
	return nil
}

// finishSize trims a regular file we grew past the image (the head marker
// of an image smaller than it, or an unknown-size stream).
func (t *Target) finishSize(imageSize int64) error {
	if t.Device || imageSize <= 0 {
		return nil
	}
	want := max(t.origSize, imageSize)
	st, err := t.buffered.Stat()
	if err != nil {
		return err
	}
	if st.Size() > want {
		return t.buffered.Truncate(want)
	}
	return nil
}

// shrinkAfterFailure truncates a regular file we grew back to its old
// size, but not below the head (HeadSize), whose zeros mark it
// incomplete. Errors are ignored: the flash has failed already.
func (t *Target) shrinkAfterFailure() {
	if t.Device || t.buffered == nil {
		return
	}
	if st, err := t.buffered.Stat(); err == nil && st.Size() > max(t.origSize, HeadSize) {
		t.buffered.Truncate(max(t.origSize, HeadSize))
	}
}

// Close closes the descriptors.
func (t *Target) Close() error {
	var errs []error
	if t.direct != nil {
		errs = append(errs, t.direct.Close())
	}
	if t.buffered != nil {
		errs = append(errs, t.buffered.Close())
	}
	return errors.Join(errs...)
}
