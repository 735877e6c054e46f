package spec

import (
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Base is the upstream image a build starts from:
//
//	base {
//	  url      = "https://downloads.raspberrypi.com/.../2024-11-19-raspios-bookworm-arm64-lite.img.xz"
//	  checksum = "sha256:6ac3a10a1f144c7e9d1f8e568d75ca809288280a593eb6ca053e49b539f465a4"
//	}
type Base struct {
	Block
	// URL is https://, http://, file:// or a plain path (relative to the
	// spec's directory). The image may be raw or xz/gz/zst/bz2-compressed,
	// or a zip holding one image.
	URL string `hcl:"url,required" json:"url"`
	// Checksum is "sha256:HEX" or "sha512:HEX" (lower-cased by Load).
	// Required for http(s) URLs; verified whenever given.
	Checksum string `hcl:"checksum" json:"checksum,omitempty"`
}

var checksumRE = regexp.MustCompile(`^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$`)

// IsRemote reports whether the image is downloaded (http or https).
func (b *Base) IsRemote() bool {
	u := strings.ToLower(b.URL)
	return strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")
}

// LocalPath is the absolute path of a file:// or plain-path base,
// resolving relative paths against dir (Spec.Dir); ok is false for remote
// URLs.
func (b *Base) LocalPath(dir string) (path string, ok bool) {
	if b.IsRemote() {
		return "", false
	}
	if strings.HasPrefix(strings.ToLower(b.URL), "file://") {
		if u, err := url.Parse(b.URL); err == nil {
			return resolvePath(dir, u.Path), true
		}
		return resolvePath(dir, b.URL[len("file://"):]), true
	}
	return resolvePath(dir, b.URL), true
}

func (b *Base) check(c *checks) {
	if b.Known("checksum") {
		b.Checksum = strings.ToLower(strings.TrimSpace(b.Checksum))
		if !checksumRE.MatchString(b.Checksum) {
			c.errorf(&b.Block, "checksum", `checksum must be "sha256:" followed by 64 hex digits or "sha512:" followed by 128`)
		}
	}
	if !b.Known("url") {
		return
	}
	if strings.TrimSpace(b.URL) == "" {
		c.errorf(&b.Block, "url", "url must not be empty")
		return
	}
	scheme := ""
	if i := strings.Index(b.URL, "://"); i > 0 {
		scheme = strings.ToLower(b.URL[:i])
	}
	switch scheme {
	case "http", "https":
		u, err := url.Parse(b.URL)
		if err != nil || u.Host == "" {
			c.errorf(&b.Block, "url", "url %q is not a valid %s URL", b.URL, scheme)
			return
		}
		if !b.IsSet("checksum") {
			c.errorf(&b.Block, "url", `a checksum is required for a downloaded base: add checksum = "sha256:..." (published next to the image)`)
		}
	case "file", "":
		p, _ := b.LocalPath(c.dir())
		if scheme == "file" {
			if u, err := url.Parse(b.URL); err != nil || (u.Host != "" && u.Host != "localhost") || u.Path == "" {
				c.errorf(&b.Block, "url", "url %q: want file:///absolute/path", b.URL)
				return
			}
		}
		// The base may be produced by an earlier step (make run builds
		// the demo base first), so a missing file is only a warning here.
		if fi, err := os.Stat(p); err != nil {
			c.warnf(&b.Block, "url", "base image %s does not exist (yet)", filepath.ToSlash(p))
		} else if fi.IsDir() {
			c.errorf(&b.Block, "url", "base image %s is a directory", p)
		}
	default:
		c.errorf(&b.Block, "url", "unsupported URL scheme %q: want https://, http://, file:// or a plain path", scheme)
	}
}
