package fat

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/bakeryhq/bakery/internal/fs"
)

// cp437 maps OEM bytes 0x80-0xFF of 8.3 names to Unicode (the code page
// mtools, dosfstools and Linux use by default).
var cp437 = []rune("ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0")

// shortChars are the characters allowed in an 8.3 name besides A-Z and 0-9
// (bytes 0x80-0xFF are allowed by the spec too, but we never write them).
const shortChars = "!#$%&'()-@^_`{}~"

func validShortChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(shortChars, c) >= 0
}

// checkName reports whether name can be stored as a FAT long file name. FAT
// forbids control characters and "*/:<>?\| and Windows strips trailing dots
// and spaces, so names ending in them could not be found again.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > fs.MaxNameLen || !utf8.ValidString(name) {
		return fs.ErrInvalidPath
	}
	units := 0
	for _, r := range name {
		switch {
		case r < 0x20, r == 0x7f, r == 0xFFFE, r == 0xFFFF, strings.ContainsRune(`"*/:<>?\|`, r), r == utf8.RuneError:
			return fs.ErrInvalidPath
		case r > 0xFFFF:
			// go-diskfs encodes each rune as one UTF-16 unit, so it cannot
			// store characters outside the Basic Multilingual Plane.
			return fs.ErrInvalidPath
		}
		units++
	}
	if units > 255 {
		return fs.ErrInvalidPath
	}
	if last := name[len(name)-1]; last == '.' || last == ' ' {
		return fs.ErrInvalidPath
	}
	return nil
}

// shortDisplay renders an 8.3 name the way mtools and Linux list it: OEM
// bytes through CP437, 0x05 as 0xE5, and the NT lower-case flags applied.
func shortDisplay(sfn [11]byte, nt byte) string {
	conv := func(b []byte, lower bool) string {
		var sb strings.Builder
		for i, c := range b {
			if i == 0 && c == 0x05 {
				c = 0xE5
			}
			switch {
			case c >= 0x80:
				sb.WriteRune(cp437[c-0x80])
			case lower && c >= 'A' && c <= 'Z':
				sb.WriteByte(c + 'a' - 'A')
			default:
				sb.WriteByte(c)
			}
		}
		return sb.String()
	}
	name := conv([]byte(strings.TrimRight(string(sfn[:8]), " ")), nt&0x08 != 0)
	ext := conv([]byte(strings.TrimRight(string(sfn[8:]), " ")), nt&0x10 != 0)
	if ext != "" {
		return name + "." + ext
	}
	return name
}

// lfnChecksum is the checksum of an 8.3 name stored in every LFN slot.
func lfnChecksum(sfn [11]byte) byte {
	var sum byte
	for _, c := range sfn {
		sum = (sum&1)<<7 + sum>>1 + c
	}
	return sum
}

// encodeLFN returns the LFN slots for units, in on-disk order (highest
// sequence number first), padded the canonical way: a NUL after the last
// character, then 0xFFFF.
func encodeLFN(units []uint16, sum byte) [][32]byte {
	n := (len(units) + 12) / 13
	out := make([][32]byte, n)
	for i := 0; i < n; i++ {
		seq := n - i // slot out[i] carries characters of sequence number seq
		var s [32]byte
		s[0] = byte(seq)
		if i == 0 {
			s[0] |= 0x40
		}
		s[11] = 0x0F
		s[13] = sum
		for k := 0; k < 13; k++ {
			idx := (seq-1)*13 + k
			var u uint16
			switch {
			case idx < len(units):
				u = units[idx]
			case idx == len(units):
				u = 0
			default:
				u = 0xFFFF
			}
			off := lfnOffsets[k]
			s[off] = byte(u)
			s[off+1] = byte(u >> 8)
		}
		out[i] = s
	}
	return out
}

// lfnOffsets are the byte offsets of the 13 UTF-16 units in an LFN slot.
var lfnOffsets = [13]int{1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30}

func lfnUnits(s []byte) [13]uint16 {
	var u [13]uint16
	for k, off := range lfnOffsets {
		u[k] = uint16(s[off]) | uint16(s[off+1])<<8
	}
	return u
}

// needsLFN reports whether name must be stored with a long name entry: it is
// not an upper-case 8.3 name made only of valid short-name characters.
func needsLFN(name string) bool {
	base, ext := name, ""
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		base, ext = name[:i], name[i+1:]
	}
	if base == "" || len(base) > 8 || len(ext) > 3 || strings.Contains(name, "..") {
		return true
	}
	if strings.IndexByte(name, '.') >= 0 && ext == "" {
		return true
	}
	for i := 0; i < len(base); i++ {
		if !validShortChar(base[i]) {
			return true
		}
	}
	for i := 0; i < len(ext); i++ {
		if !validShortChar(ext[i]) {
			return true
		}
	}
	return false
}

// makeShortName generates a unique 8.3 alias for name following the basis
// name and numeric tail rules of the FAT spec (upper case, invalid characters
// replaced by "_", "~N" tail when the name was lossy), avoiding every name
// for which taken reports true.
func makeShortName(name string, taken func([11]byte) bool) ([11]byte, error) {
	up := strings.ToUpper(strings.TrimLeft(name, ". "))
	lossy := up != strings.ToUpper(name)
	var base, ext []byte
	dot := strings.LastIndexByte(up, '.')
	conv := func(s string, max int) []byte {
		var out []byte
		for _, r := range s {
			if r == ' ' || r == '.' {
				lossy = true
				continue
			}
			c := byte('_')
			if r < 0x80 && validShortChar(byte(r)) {
				c = byte(r)
			} else {
				lossy = true
			}
			if len(out) == max {
				lossy = true
				break
			}
			out = append(out, c)
		}
		return out
	}
	if dot >= 0 {
		base, ext = conv(up[:dot], 8), conv(up[dot+1:], 3)
	} else {
		base = conv(up, 8)
	}
	if len(base) == 0 {
		base, lossy = []byte("_"), true
	}
	var sfn [11]byte
	fill := func(b []byte) {
		for i := range sfn {
			sfn[i] = ' '
		}
		copy(sfn[:8], b)
		copy(sfn[8:], ext)
	}
	if !lossy {
		fill(base)
		if !taken(sfn) {
			return sfn, nil
		}
	}
	for n := 1; n < 1000000; n++ {
		tail := "~" + strconv.Itoa(n)
		b := base
		if len(b) > 8-len(tail) {
			b = b[:8-len(tail)]
		}
		fill(append(append([]byte{}, b...), tail...))
		if !taken(sfn) {
			return sfn, nil
		}
	}
	return sfn, fmt.Errorf("no free 8.3 alias for %q: %w", name, fs.ErrNoSpace)
}

// validStoredShort reports whether an 8.3 name go-diskfs generated is one we
// keep: a non-empty base of valid characters, padded with spaces.
func validStoredShort(sfn [11]byte) bool {
	if sfn[0] == ' ' {
		return false
	}
	for _, part := range [][]byte{sfn[:8], sfn[8:]} {
		end := len(part)
		for end > 0 && part[end-1] == ' ' {
			end--
		}
		for _, c := range part[:end] {
			if !validShortChar(c) {
				return false
			}
		}
	}
	return true
}

func utf16Of(s string) []uint16 { return utf16.Encode([]rune(s)) }
