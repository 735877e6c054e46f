package fs

import (
	"fmt"
	iofs "io/fs"
	"strconv"
)

// ParseMode parses an octal permission string such as "0644", "755" or
// "4755" (setuid), as used in specs and on the command line.
func ParseMode(s string) (iofs.FileMode, error) {
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, fmt.Errorf("mode %q: want octal permissions such as 0644 or 0755", s)
	}
	return FromUnixPerm(uint32(n)), nil
}

// FromUnixPerm converts the low 12 bits of a Unix mode to Go's FileMode.
func FromUnixPerm(m uint32) iofs.FileMode {
	mode := iofs.FileMode(m & 0o777)
	if m&0o4000 != 0 {
		mode |= iofs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= iofs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= iofs.ModeSticky
	}
	return mode
}

// UnixPerm converts Go's permission and special bits to the low 12 bits of a
// Unix mode.
func UnixPerm(mode iofs.FileMode) uint32 {
	m := uint32(mode.Perm())
	if mode&iofs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if mode&iofs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if mode&iofs.ModeSticky != 0 {
		m |= 0o1000
	}
	return m
}

// FormatMode renders a mode like ls -l: "drwxr-xr-x", "-rwsr-xr-x".
func FormatMode(mode iofs.FileMode) string {
	b := []byte("----------")
	switch {
	case mode.IsDir():
		b[0] = 'd'
	case mode&iofs.ModeSymlink != 0:
		b[0] = 'l'
	case mode&iofs.ModeCharDevice != 0:
		b[0] = 'c'
	case mode&iofs.ModeDevice != 0:
		b[0] = 'b'
	case mode&iofs.ModeNamedPipe != 0:
		b[0] = 'p'
	case mode&iofs.ModeSocket != 0:
		b[0] = 's'
	}
	const rwx = "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if mode&(1<<uint(8-i)) != 0 {
			b[i+1] = rwx[i]
		}
	}
	special := func(pos int, set bool, lower, upper byte) {
		if !set {
			return
		}
		if b[pos] == 'x' {
			b[pos] = lower
		} else {
			b[pos] = upper
		}
	}
	special(3, mode&iofs.ModeSetuid != 0, 's', 'S')
	special(6, mode&iofs.ModeSetgid != 0, 's', 'S')
	special(9, mode&iofs.ModeSticky != 0, 't', 'T')
	return string(b)
}
