// Package fs defines the filesystem contract every bakery filesystem
// implementation (FAT, ext4) satisfies, so that build, flash and serve edit
// images without knowing which filesystem they are talking to.
//
// Paths are absolute, slash-separated and rooted at the filesystem's own root
// (like a chroot): "/etc/hostname". Symbolic links in intermediate components
// are followed but never escape the root; the final component is followed only
// by Stat, Open and ReadFile (Lstat, WriteFile, Remove, Chmod, Chown and
// Symlink act on the link itself).
package fs

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"time"
)

// Errors shared by all implementations. They are always returned wrapped in
// an *iofs.PathError naming the operation and path, so messages read
// "remove /etc: directory not empty"; test with errors.Is.
var (
	ErrNotExist     = iofs.ErrNotExist
	ErrExist        = iofs.ErrExist
	ErrInvalidPath  = errors.New("invalid path")
	ErrNotDir       = errors.New("not a directory")
	ErrIsDir        = errors.New("is a directory")
	ErrNotEmpty     = errors.New("directory not empty")
	ErrNoSpace      = errors.New("no space left on filesystem")
	ErrNotSupported = errors.New("not supported by this filesystem")
	ErrCorrupt      = errors.New("filesystem structure is corrupt")
	ErrReadOnly     = errors.New("filesystem is opened read-only")
	ErrTooManyLinks = errors.New("too many levels of symbolic links")
)

// IsMissing reports whether err says a path is not there: it does not
// exist, or one of its parents is not a directory. Steps that remove or
// skip optional files treat both alike.
func IsMissing(err error) bool {
	return errors.Is(err, ErrNotExist) || errors.Is(err, ErrNotDir)
}

// Attr is the owner and mode (permission and special bits) of fi, with
// mtime: what a file written in fi's place keeps.
func (fi FileInfo) Attr(mtime time.Time) Attr {
	return Attr{Mode: fi.Mode & (iofs.ModePerm | iofs.ModeSetuid | iofs.ModeSetgid | iofs.ModeSticky), UID: fi.UID, GID: fi.GID, ModTime: mtime}
}

// ReadLimited reads a file, refusing one larger than limit, so that an
// untrusted image cannot make us allocate without bound.
func ReadLimited(f Filesystem, path string, limit int64) ([]byte, error) {
	fh, err := f.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	if fh.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes is more than the %d-byte limit", path, fh.Size(), limit)
	}
	return io.ReadAll(io.LimitReader(fh, limit))
}

// FileInfo describes one directory entry. Mode carries the Go type bits
// (iofs.ModeDir, iofs.ModeSymlink, ...) plus permission, setuid, setgid and
// sticky bits.
type FileInfo struct {
	Name    string
	Mode    iofs.FileMode
	Size    int64
	UID     uint32
	GID     uint32
	ModTime time.Time
	Nlink   uint32
	Ino     uint64
	// Target is the link target for symbolic links.
	Target string
	// Rdev is the device number for character and block devices.
	Rdev uint64
}

// IsDir reports whether the entry is a directory.
func (fi FileInfo) IsDir() bool { return fi.Mode.IsDir() }

// IsRegular reports whether the entry is a regular file.
func (fi FileInfo) IsRegular() bool { return fi.Mode.IsRegular() }

// Attr is the metadata a write applies. A zero ModTime means "use the
// filesystem's default time" (see Options.DefaultTime), never time.Now, so
// builds stay reproducible.
type Attr struct {
	// Mode holds permission bits plus optional iofs.ModeSetuid,
	// iofs.ModeSetgid and iofs.ModeSticky. Type bits are ignored.
	Mode    iofs.FileMode
	UID     uint32
	GID     uint32
	ModTime time.Time
}

// File is an open regular file for reading.
type File interface {
	io.Reader
	io.ReaderAt
	io.Closer
	Size() int64
}

// Usage reports space accounting of a filesystem.
type Usage struct {
	TotalBytes  int64
	FreeBytes   int64
	TotalInodes int64 // 0 where the filesystem has no inode limit (FAT)
	FreeInodes  int64
}

// Filesystem is the operation set bakery needs on any filesystem inside an
// image. Implementations buffer metadata and make their changes durable on
// Close; a failed operation leaves the filesystem as it was.
type Filesystem interface {
	// Type is "ext2", "ext3", "ext4", "fat12", "fat16" or "fat32".
	Type() string
	Label() string
	UUID() string
	Usage() (Usage, error)

	Stat(path string) (FileInfo, error)  // follows a final symlink
	Lstat(path string) (FileInfo, error) // does not
	ReadDir(path string) ([]FileInfo, error)
	Open(path string) (File, error)
	ReadFile(path string) ([]byte, error)
	ReadLink(path string) (string, error)

	// WriteFile creates or replaces a regular file with the bytes of r. The
	// parent directory must exist. Replacing a symlink replaces the link.
	WriteFile(path string, r io.Reader, attr Attr) error
	// MkdirAll creates path and any missing parents; parents it creates get
	// attr too. An existing directory is not an error and keeps its attributes.
	MkdirAll(path string, attr Attr) error
	Symlink(target, path string, attr Attr) error
	// Remove deletes a file, symlink or empty directory.
	Remove(path string) error
	Rename(oldPath, newPath string) error
	Chmod(path string, mode iofs.FileMode) error
	Chown(path string, uid, gid uint32) error
	Chtimes(path string, mtime time.Time) error

	// Close flushes buffered metadata. After Close the Filesystem is unusable.
	Close() error
}

// Linker is implemented by filesystems that support hard links.
type Linker interface {
	Link(oldPath, newPath string) error
}

// Mknoder is implemented by filesystems that support device nodes and FIFOs.
// mode carries the type bits (iofs.ModeDevice, iofs.ModeCharDevice,
// iofs.ModeNamedPipe, iofs.ModeSocket) and permissions.
type Mknoder interface {
	Mknod(path string, mode iofs.FileMode, rdev uint64, attr Attr) error
}

// Xattrer is implemented by filesystems with extended attributes.
type Xattrer interface {
	ListXattrs(path string) (map[string][]byte, error)
}

// Device is the byte range a filesystem lives in, usually a partition
// (*disk.Region). Writes may be buffered by the device until it is committed.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
}

// ThroughWriter is implemented by devices that can write unbuffered. A
// filesystem uses it only for space its committed state does not reference
// (data blocks of a new file), so large files need not sit in memory.
type ThroughWriter interface {
	WriteThrough(p []byte, off int64) (int, error)
}

// Extent is a byte range [Off, Off+Len) within a filesystem's device.
type Extent struct {
	Off int64
	Len int64
}

// UsedMapper is implemented by filesystems that can list the byte ranges
// they use: all metadata plus allocated data. Flashing must write these
// ranges even where the image file has a hole, because the filesystem
// expects the image's bytes (often zeros) there and a reused card holds
// garbage. Extents are sorted and do not overlap.
type UsedMapper interface {
	UsedExtents() ([]Extent, error)
}
