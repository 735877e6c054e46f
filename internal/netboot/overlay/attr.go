package overlay

import (
	"errors"
	iofs "io/fs"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
)

// Unix file type and mode bits, as in st_mode (and NFS fattr3).
const (
	TypeMask   = 0o170000
	TypeSocket = 0o140000
	TypeLink   = 0o120000
	TypeReg    = 0o100000
	TypeBlock  = 0o060000
	TypeDir    = 0o040000
	TypeChar   = 0o020000
	TypeFIFO   = 0o010000

	ModeSetuid = 0o4000
	ModeSetgid = 0o2000
	ModeSticky = 0o1000
	PermMask   = 0o7777
)

// Errors beyond the fs package's sentinels, tested with errors.Is.
var (
	// ErrPermission: the credential may not do this (EACCES).
	ErrPermission = iofs.ErrPermission
	// ErrNotOwner: only the owner or root may (EPERM).
	ErrNotOwner = errors.New("operation not permitted")
	// ErrNameTooLong: a name over 255 bytes.
	ErrNameTooLong = errors.New("file name too long")
	// ErrInvalid: an argument that makes no sense here (EINVAL).
	ErrInvalid = errors.New("invalid argument")
	// ErrFileTooBig: beyond the largest file size.
	ErrFileTooBig = errors.New("file too large")
	// ErrClosed: the layer was reset or closed under the caller.
	ErrClosed = errors.New("layer closed")
)

// MaxFileSize bounds offsets of writes and truncates (ext4's limit with 4k
// blocks is 16 TiB).
const MaxFileSize = int64(16) << 40

// Attr is what a client sees of an object.
type Attr struct {
	ID     uint64
	Mode   uint32 // type | permissions (setuid, setgid, sticky included)
	UID    uint32
	GID    uint32
	Nlink  uint32
	Size   int64
	Rdev   uint64
	Atime  time.Time
	Mtime  time.Time
	Ctime  time.Time
	Target string // symlinks
}

// Type is the file type bits.
func (a Attr) Type() uint32 { return a.Mode & TypeMask }

// IsDir reports a directory.
func (a Attr) IsDir() bool { return a.Type() == TypeDir }

// IsRegular reports a regular file.
func (a Attr) IsRegular() bool { return a.Type() == TypeReg }

// GoMode converts to Go's FileMode.
func (a Attr) GoMode() iofs.FileMode {
	m := fs.FromUnixPerm(a.Mode & PermMask)
	switch a.Type() {
	case TypeDir:
		m |= iofs.ModeDir
	case TypeLink:
		m |= iofs.ModeSymlink
	case TypeChar:
		m |= iofs.ModeDevice | iofs.ModeCharDevice
	case TypeBlock:
		m |= iofs.ModeDevice
	case TypeFIFO:
		m |= iofs.ModeNamedPipe
	case TypeSocket:
		m |= iofs.ModeSocket
	}
	return m
}

// Major and Minor split Rdev (Linux dev_t encoding, as ext4 stores it).
func (a Attr) Major() uint32 { return uint32((a.Rdev>>8)&0xfff | (a.Rdev>>32)&^0xfff) }

// Minor is the minor device number.
func (a Attr) Minor() uint32 { return uint32(a.Rdev&0xff | (a.Rdev>>12)&^0xff) }

// Mkdev builds a Linux dev_t from major and minor numbers.
func Mkdev(major, minor uint32) uint64 {
	return uint64(major&0xfff)<<8 | uint64(major&^0xfff)<<32 | uint64(minor&0xff) | uint64(minor&^0xff)<<12
}

// unixMode converts a Go FileMode to st_mode bits.
func unixMode(m iofs.FileMode) uint32 {
	perm := fs.UnixPerm(m)
	switch {
	case m&iofs.ModeDir != 0:
		return TypeDir | perm
	case m&iofs.ModeSymlink != 0:
		return TypeLink | perm
	case m&iofs.ModeCharDevice != 0:
		return TypeChar | perm
	case m&iofs.ModeDevice != 0:
		return TypeBlock | perm
	case m&iofs.ModeNamedPipe != 0:
		return TypeFIFO | perm
	case m&iofs.ModeSocket != 0:
		return TypeSocket | perm
	}
	return TypeReg | perm
}

// inode is the layer's record of an object: complete attributes, so that
// the image is not consulted for an object once the layer has changed it.
type inode struct {
	Mode   uint32 `json:"mode"`
	UID    uint32 `json:"uid"`
	GID    uint32 `json:"gid"`
	Nlink  uint32 `json:"nlink"`
	Rdev   uint64 `json:"rdev,omitempty"`
	Size   int64  `json:"size,omitempty"`
	Atime  int64  `json:"atime"` // Unix nanoseconds
	Mtime  int64  `json:"mtime"`
	Ctime  int64  `json:"ctime"`
	Target string `json:"target,omitempty"`
	// Data: the content lives in layer/data/<id> (created in the layer, or
	// copied up from the image).
	Data bool `json:"data,omitempty"`
}

func (in *inode) attr(id uint64) Attr {
	return Attr{
		ID: id, Mode: in.Mode, UID: in.UID, GID: in.GID, Nlink: in.Nlink, Size: in.Size, Rdev: in.Rdev,
		Atime: time.Unix(0, in.Atime), Mtime: time.Unix(0, in.Mtime), Ctime: time.Unix(0, in.Ctime), Target: in.Target,
	}
}

func (in *inode) typ() uint32 { return in.Mode & TypeMask }

func inodeFromInfo(fi fs.FileInfo) *inode {
	t := fi.ModTime.UnixNano()
	in := &inode{
		Mode: unixMode(fi.Mode), UID: fi.UID, GID: fi.GID, Nlink: fi.Nlink, Rdev: fi.Rdev, Size: fi.Size,
		Atime: t, Mtime: t, Ctime: t, Target: fi.Target,
	}
	if in.Nlink == 0 {
		in.Nlink = 1
	}
	return in
}

func attrFromInfo(id uint64, fi fs.FileInfo) Attr {
	return inodeFromInfo(fi).attr(id)
}

// Cred is the caller of an operation: the uid, gid and groups of an NFS
// request's AUTH_SYS credential. A nil *Cred is bakery itself (provisioning)
// and may do anything.
type Cred struct {
	UID    uint32
	GID    uint32
	Groups []uint32
}

func (c *Cred) isRoot() bool { return c == nil || c.UID == 0 }

func (c *Cred) inGroup(g uint32) bool {
	if c == nil {
		return true
	}
	if c.GID == g {
		return true
	}
	for _, x := range c.Groups {
		if x == g {
			return true
		}
	}
	return false
}

// Permission bits for May.
const (
	MayRead  = 4
	MayWrite = 2
	MayExec  = 1
)

// May reports whether c may read, write or execute/search (want, a mask of
// MayRead|MayWrite|MayExec) an object with attributes a, by its mode bits.
// Root may do anything except execute a file without any x bit.
func May(c *Cred, a Attr, want uint32) bool {
	if c.isRoot() {
		if want&MayExec != 0 && !a.IsDir() {
			return a.Mode&0o111 != 0
		}
		return true
	}
	var bits uint32
	switch {
	case c.UID == a.UID:
		bits = (a.Mode >> 6) & 7
	case c.inGroup(a.GID):
		bits = (a.Mode >> 3) & 7
	default:
		bits = a.Mode & 7
	}
	return bits&want == want
}

// mayData is May for reading or writing file content: like the kernel NFS
// server, the owner may always (a file chmodded after it was opened stays
// usable), and a file that may be executed may be read (to run it).
func mayData(c *Cred, a Attr, want uint32) bool {
	if c.isRoot() || c.UID == a.UID {
		return true
	}
	if want == MayRead && May(c, a, MayExec) {
		return true
	}
	return May(c, a, want)
}
