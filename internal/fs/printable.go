package fs

import (
	"strings"
	"unicode"
)

// Printable replaces control characters (escape sequences, carriage
// returns, tabs, newlines) in a name or text read from an image with
// U+FFFD, so that an untrusted image cannot drive the terminal that shows
// it. JSON output needs no such care: the encoder escapes them.
func Printable(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return unicode.ReplacementChar
		}
		return r
	}, s)
}
