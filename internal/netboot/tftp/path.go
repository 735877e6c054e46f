package tftp

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/bakeryhq/bakery/internal/netboot"
)

// Limits on requested file names. Real boot file names are short; anything
// beyond these is an attack or a broken client.
const (
	MaxNameLen    = 255 // bytes in the whole requested name
	MaxComponents = 8   // slash-separated components
)

// ErrBadPath is wrapped by every ParsePath error; the server answers it with
// TFTP error 2 (access violation).
var ErrBadPath = errors.New("refused file name")

// Path is a requested file name, checked and split into the machine prefix
// the Pi bootloader puts in front (its serial, or its MAC with
// TFTP_PREFIX=2) and the file inside the machine's boot files.
type Path struct {
	// File is the path inside the boot files: "start4.elf", "overlays/x.dtbo".
	File string
	// Serial is the normalised serial prefix ("3a7f91c2"), or "".
	Serial string
	// MAC is the normalised MAC prefix ("dc:a6:32:01:02:03"), or "".
	MAC string
}

// Prefixed reports whether the request named a machine.
func (p Path) Prefixed() bool { return p.Serial != "" || p.MAC != "" }

// ParsePath validates a TFTP file name and extracts the machine prefix. It
// refuses absolute paths, "." and ".." components, empty components,
// backslashes, NUL and other control bytes, invalid UTF-8, names over
// MaxNameLen bytes and more than MaxComponents components, so that a name
// can never reach outside the boot files it is resolved in.
func ParsePath(name string) (Path, error) {
	refuse := func(why string) (Path, error) {
		return Path{}, fmt.Errorf("%w %q: %s", ErrBadPath, truncate(name), why)
	}
	switch {
	case name == "":
		return refuse("empty")
	case len(name) > MaxNameLen:
		return refuse(fmt.Sprintf("longer than %d bytes", MaxNameLen))
	case name[0] == '/':
		return refuse("absolute path")
	case !utf8.ValidString(name):
		return refuse("not UTF-8")
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == '\\':
			return refuse("backslash")
		case c < 0x20 || c == 0x7f:
			return refuse("control character")
		}
	}
	parts := strings.Split(name, "/")
	if len(parts) > MaxComponents {
		return refuse(fmt.Sprintf("more than %d components", MaxComponents))
	}
	for _, p := range parts {
		switch p {
		case "":
			return refuse("empty component")
		case ".", "..":
			return refuse("dot component")
		}
	}
	var out Path
	if len(parts) > 1 {
		if serial, ok := serialPrefix(parts[0]); ok {
			out.Serial, parts = serial, parts[1:]
		} else if mac, ok := macPrefix(parts[0]); ok {
			out.MAC, parts = mac, parts[1:]
		}
	}
	out.File = strings.Join(parts, "/")
	return out, nil
}

// serialPrefix recognises the bootloader's serial prefix: 8 hex digits, or 16
// with the leading 10000000 some tools print.
func serialPrefix(s string) (string, bool) {
	if len(s) != 8 && len(s) != 16 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	serial, err := netboot.NormalizeSerial(s)
	return serial, err == nil
}

// macPrefix recognises TFTP_PREFIX=2: the MAC as dc-a6-32-01-02-03.
func macPrefix(s string) (string, bool) {
	if len(s) != 17 || strings.Count(s, "-") != 5 {
		return "", false
	}
	mac, err := netboot.NormalizeMAC(s)
	return mac, err == nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
