package spec

import (
	"encoding/base64"
	"os"
	"strings"
)

// File writes one regular file into the root filesystem:
//
//	file "/etc/motd" {
//	  content = "Welcome to ${var.site}\n"
//	  mode    = "0644"
//	}
//
// Exactly one of content, content_base64 and source is given. Parent
// directories are created (root:root 0755) as needed.
type File struct {
	Block
	// Path is the absolute, cleaned path in the image.
	Path string `hcl:"path,label" json:"path"`
	// Content is the file's bytes. When content_base64 is given, Load
	// decodes it into Content.
	Content string `hcl:"content" json:"content,omitempty"`
	// ContentBase64 carries binary content (extension; see filebase64()).
	ContentBase64 string `hcl:"content_base64" json:"-"`
	// Source is a file on the build machine to copy, relative to the
	// spec's directory; Load makes it absolute.
	Source string `hcl:"source" json:"source,omitempty"`
	// Mode is the permission bits, an octal string such as "0644" (default).
	Mode Mode `hcl:"mode" json:"mode"`
	// Owner and Group are names (resolved in the image) or numeric ids;
	// both default to root.
	Owner string `hcl:"owner" json:"owner"`
	Group string `hcl:"group" json:"group"`
}

func (f *File) setDefaults() { f.Mode, f.Owner, f.Group = 0o644, "root", "root" }

func (f *File) check(c *checks) {
	b := &f.Block
	f.Path, _ = cleanImagePath(c, b, f.Path)
	given := 0
	for _, a := range []string{"content", "content_base64", "source"} {
		if b.IsSet(a) {
			given++
		}
	}
	if given != 1 {
		c.errorf(b, "", "give exactly one of content, content_base64 or source")
	}
	if b.Known("content_base64") {
		data, err := base64.StdEncoding.DecodeString(f.ContentBase64)
		if err != nil {
			c.errorf(b, "content_base64", "content_base64 is not valid base64")
		} else {
			f.Content = string(data)
			if b.IsSensitive("content_base64") {
				b.markSensitive("content")
			}
		}
	}
	if b.Known("source") {
		checkSource(c, b, &f.Source)
	}
	checkOwner(c, b, "owner", f.Owner)
	checkOwner(c, b, "group", f.Group)
}

func checkSource(c *checks, b *Block, src *string) {
	if *src == "" {
		c.errorf(b, "source", "source must not be empty")
		return
	}
	full := resolvePath(c.dir(), *src)
	fi, err := os.Stat(full)
	switch {
	case err != nil && os.IsNotExist(err):
		c.errorf(b, "source", "source file %q does not exist (looked for %s)", *src, full)
	case err != nil:
		c.errorf(b, "source", "source file %q: %v", *src, err)
	case !fi.Mode().IsRegular():
		c.errorf(b, "source", "source %q is not a regular file", *src)
	}
	*src = full
}

// Directory creates a directory (and its parents, root:root 0755):
//
//	directory "/srv/data" { mode = "0750"  owner = "ops" }
type Directory struct {
	Block
	Path  string `hcl:"path,label" json:"path"`
	Mode  Mode   `hcl:"mode" json:"mode"`   // default "0755"
	Owner string `hcl:"owner" json:"owner"` // default root
	Group string `hcl:"group" json:"group"` // default root
}

func (d *Directory) setDefaults() { d.Mode, d.Owner, d.Group = 0o755, "root", "root" }

func (d *Directory) check(c *checks) {
	d.Path, _ = cleanImagePath(c, &d.Block, d.Path)
	checkOwner(c, &d.Block, "owner", d.Owner)
	checkOwner(c, &d.Block, "group", d.Group)
}

// Symlink creates a symbolic link:
//
//	symlink "/etc/localtime" { target = "/usr/share/zoneinfo/Europe/Dublin" }
type Symlink struct {
	Block
	Path string `hcl:"path,label" json:"path"`
	// Target is stored as written (absolute or relative to the link's
	// directory); it may dangle.
	Target string `hcl:"target,required" json:"target"`
}

func (s *Symlink) check(c *checks) {
	s.Path, _ = cleanImagePath(c, &s.Block, s.Path)
	if s.Known("target") && s.Target == "" {
		c.errorf(&s.Block, "target", "target must not be empty")
	}
	if strings.ContainsRune(s.Target, 0) {
		c.errorf(&s.Block, "target", "target contains a NUL byte")
	}
}

// checkPaths reports a path given by two file, directory or symlink
// blocks, and content written below a path that is a file or symlink.
func checkPaths(c *checks, s *Spec) {
	type decl struct {
		b    *Block
		kind string
	}
	seen := map[string]decl{}
	add := func(p string, b *Block, kind string) {
		if prev, dup := seen[p]; dup {
			// The decoder already reported blocks with identical labels.
			if prev.kind != kind || prev.b.Labels[0] != b.Labels[0] {
				c.errorf(b, "", "path %s is also declared by %s at %s", p, prev.b.Describe(), FormatRange(prev.b.DeclRange))
			}
			return
		}
		seen[p] = decl{b, kind}
	}
	for i := range s.Files {
		add(s.Files[i].Path, &s.Files[i].Block, "file")
	}
	for i := range s.Directories {
		add(s.Directories[i].Path, &s.Directories[i].Block, "directory")
	}
	for i := range s.Symlinks {
		add(s.Symlinks[i].Path, &s.Symlinks[i].Block, "symlink")
	}
	for p, d := range seen {
		for parent := parentDir(p); parent != "/"; parent = parentDir(parent) {
			if pd, ok := seen[parent]; ok && pd.kind != "directory" {
				c.errorf(d.b, "", "path %s is below %s, which %s declares as a %s", p, parent, pd.b.Describe(), pd.kind)
				break
			}
		}
	}
}

func parentDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}
