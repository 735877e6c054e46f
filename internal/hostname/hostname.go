// Package hostname checks host names and writes a system's own name into
// /etc/hosts, for every place bakery names a machine (build, flash,
// netboot roots).
package hostname

import (
	"fmt"
	"strings"

	"github.com/bakeryhq/bakery/internal/textedit"
)

// Valid checks an RFC 1123 host name: dot-separated labels of 1 to 63
// letters, digits and inner hyphens, 253 characters in all.
func Valid(name string) error {
	if name == "" || len(name) > 253 {
		return fmt.Errorf("hostname %q: want 1 to 253 characters", name)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("hostname %q: label %q must be 1 to 63 characters and not start or end with '-'", name, label)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("hostname %q: only letters, digits, '-' and '.' are allowed", name)
			}
		}
	}
	return nil
}

// Hosts points Debian's own-name line, 127.0.1.1, at names in the text of
// an /etc/hosts file: the first such line is replaced where it stands and
// any others are dropped; without one, the line goes after 127.0.0.1 (or
// at the end). The result ends in a newline.
func Hosts(hosts string, names ...string) string {
	line := "127.0.1.1\t" + strings.Join(names, " ")
	var lines []string
	if trimmed := strings.TrimRight(hosts, "\n"); trimmed != "" {
		lines = strings.Split(trimmed, "\n")
	}
	out, replaced := textedit.ReplaceFirst(lines, func(l string) bool {
		f := strings.Fields(l)
		return len(f) > 0 && f[0] == "127.0.1.1"
	}, line)
	if !replaced {
		at := len(out)
		for i, l := range out {
			if f := strings.Fields(l); len(f) > 0 && f[0] == "127.0.0.1" {
				at = i + 1
				break
			}
		}
		out = append(out[:at], append([]string{line}, out[at:]...)...)
	}
	return strings.Join(out, "\n") + "\n"
}
