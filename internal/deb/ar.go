// Package deb installs Debian packages into an image root without dpkg
// and without emulation: it reads the .deb (an ar archive holding
// debian-binary, control.tar.* and data.tar.*), unpacks the data through
// fs.Filesystem, and registers the package in /var/lib/dpkg as "install
// ok unpacked", so that `dpkg --configure -a` at first boot runs its
// postinst on the real machine. Everything read is bounded and checked:
// no path may leave the root, no symlink the package creates may be
// written through.
package deb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits on what a .deb may hold.
const (
	arMagic         = "!<arch>\n"
	arHeaderSize    = 60
	maxMembers      = 16
	maxControlBytes = 64 << 20 // control.tar, compressed or not
	maxControlFile  = 4 << 20  // one file inside control.tar
)

// ErrFormat is wrapped by every error about a malformed package.
var ErrFormat = errors.New("not a valid Debian package")

// Member is one ar archive member.
type Member struct {
	Name   string
	Offset int64 // of the data
	Size   int64
}

// ReadMembers lists the members of an ar archive of the given size. Only
// the "common" format dpkg writes is accepted: names up to 16 bytes,
// optionally ending in "/" (GNU), no symbol table, no long-name table.
func ReadMembers(r io.ReaderAt, size int64) ([]Member, error) {
	magic := make([]byte, len(arMagic))
	if _, err := r.ReadAt(magic, 0); err != nil || string(magic) != arMagic {
		return nil, fmt.Errorf("%w: no ar archive signature", ErrFormat)
	}
	var out []Member
	off := int64(len(arMagic))
	hdr := make([]byte, arHeaderSize)
	for off < size {
		if len(out) >= maxMembers {
			return nil, fmt.Errorf("%w: more than %d archive members", ErrFormat, maxMembers)
		}
		if size-off < arHeaderSize {
			return nil, fmt.Errorf("%w: truncated ar member header at byte %d", ErrFormat, off)
		}
		if _, err := r.ReadAt(hdr, off); err != nil {
			return nil, fmt.Errorf("%w: read ar header at byte %d: %v", ErrFormat, off, err)
		}
		if hdr[58] != '`' || hdr[59] != '\n' {
			return nil, fmt.Errorf("%w: corrupt ar member header at byte %d", ErrFormat, off)
		}
		name := strings.TrimRight(string(hdr[0:16]), " ")
		name = strings.TrimSuffix(name, "/")
		if name == "" || strings.ContainsAny(name, "/\x00") {
			return nil, fmt.Errorf("%w: ar member name %q", ErrFormat, name)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: ar member %s has size %q", ErrFormat, name, bytes.TrimSpace(hdr[48:58]))
		}
		data := off + arHeaderSize
		if n > size-data {
			return nil, fmt.Errorf("%w: ar member %s (%d bytes) runs past the end of the file", ErrFormat, name, n)
		}
		out = append(out, Member{Name: name, Offset: data, Size: n})
		off = data + n
		if off%2 == 1 {
			off++ // members are 2-byte aligned
		}
	}
	return out, nil
}
