package spec

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
)

func elemKey(attr string, i int) string { return fmt.Sprintf("%s[%d]", attr, i) }

// checkEnum reports a value of attr outside allowed, suggesting the
// closest.
func checkEnum(c *checks, b *Block, attr, val string, allowed ...string) bool {
	if !b.Known(attr) || slices.Contains(allowed, val) {
		return true
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	msg := fmt.Sprintf("%s = %q is not allowed; want %s", attr, val, strings.Join(quoted, ", "))
	if s := suggest(val, allowed); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	c.errorf(b, attr, "%s", msg)
	return false
}

// checkAbsPath reports a path inside the image that is not absolute or
// that climbs with "..". key may name a list element.
func checkAbsPath(c *checks, b *Block, key, p string) bool {
	switch {
	case !strings.HasPrefix(p, "/"):
		c.errorf(b, key, "%s %q must be an absolute path inside the image", key, p)
		return false
	case slices.Contains(strings.Split(p, "/"), ".."):
		c.errorf(b, key, "%s %q must not contain \"..\"", key, p)
		return false
	}
	return true
}

// cleanImagePath validates a block-label path and returns its clean form
// ("/etc//x/" becomes "/etc/x").
func cleanImagePath(c *checks, b *Block, p string) (string, bool) {
	if !strings.HasPrefix(p, "/") {
		c.errorf(b, "", "path %q must be absolute (start with /)", p)
		return p, false
	}
	if slices.Contains(strings.Split(p, "/"), "..") {
		c.errorf(b, "", "path %q must not contain \"..\"", p)
		return p, false
	}
	if strings.ContainsRune(p, 0) {
		c.errorf(b, "", "path %q contains a NUL byte", p)
		return p, false
	}
	clean := path.Clean(p)
	if clean == "/" {
		c.errorf(b, "", "path must name something below /")
		return p, false
	}
	return clean, true
}

var ownerRE = regexp.MustCompile(`^([a-z_][a-z0-9_-]*\$?|[0-9]+)$`)

func checkOwner(c *checks, b *Block, attr, v string) {
	if b.Known(attr) && (!ownerRE.MatchString(v) || len(v) > 32) {
		c.errorf(b, attr, "%s %q is neither a user/group name nor a numeric id", attr, v)
	}
}
