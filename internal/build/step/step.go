// Package step holds bakery build's customisations, one file per
// customisation. Each is a Step whose Apply edits the image's root (and
// boot) filesystem through internal/fs; the pipeline (internal/build) runs
// them in the fixed order of All, then Golden, then Finalize.
//
// Adding a customisation means adding one file here with an Apply
// function, registering it in All, and adding its schema block in
// internal/spec.
package step

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/fetch"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/image"
	"github.com/bakeryhq/bakery/internal/spec"
	"github.com/bakeryhq/bakery/internal/systemd"
	"github.com/bakeryhq/bakery/internal/textedit"
)

// Step is one customisation.
type Step struct {
	// Name appears in logs and in the build result.
	Name string
	// Wanted reports whether the spec asks for the step; nil means it
	// always runs (it decides itself what to do).
	Wanted func(*spec.Spec) bool
	// Apply does the work.
	Apply func(context.Context, *Context) error
}

// All returns the customisations in the order they run. The order
// matters: users exist before files name their owners, files (which may
// add units) come before systemd enables units, and everything that
// queues first-boot work comes before Finalize.
func All() []Step {
	return []Step{
		{Name: "layout", Apply: Layout},
		{Name: "users", Wanted: func(s *spec.Spec) bool { return len(s.Users) > 0 }, Apply: Users},
		{Name: "hostname", Apply: Hostname},
		{Name: "ssh", Apply: SSH},
		{Name: "network", Wanted: func(s *spec.Spec) bool { return s.Network != nil }, Apply: Network},
		{Name: "wifi", Wanted: func(s *spec.Spec) bool { return s.Wifi != nil }, Apply: Wifi},
		{Name: "locale", Wanted: func(s *spec.Spec) bool { return s.Timezone != "" || s.Locale != "" || s.Keyboard != nil }, Apply: Locale},
		{Name: "files", Wanted: func(s *spec.Spec) bool { return len(s.Files)+len(s.Directories)+len(s.Symlinks) > 0 }, Apply: Files},
		// Bundles and packages add units, so they run before systemd.
		{Name: "bundle", Wanted: WantBundles, Apply: Bundles},
		{Name: "deb", Wanted: WantDebs, Apply: Debs},
		{Name: "systemd", Wanted: func(s *spec.Spec) bool {
			return len(s.Systemd.Enable)+len(s.Systemd.Disable)+len(s.Systemd.Mask) > 0
		}, Apply: Systemd},
		{Name: "packages", Wanted: func(s *spec.Spec) bool { return len(s.Packages) > 0 }, Apply: Packages},
	}
}

// Context is what a step works with.
type Context struct {
	Spec  *spec.Spec
	Image *image.Image
	// Root is the root filesystem; Boot the boot (FAT) filesystem, nil
	// when the base has none.
	Root, Boot fs.Filesystem
	Flavour    *Flavour
	// Time stamps everything written (SOURCE_DATE_EPOCH or derived from
	// the base), so builds are reproducible.
	Time time.Time
	IDs  *IDs
	Log  *slog.Logger
	// FirstBoot collects work for the first boot; Finalize writes it out.
	FirstBoot *FirstBoot
	// Layout is what the pipeline did to the partition table.
	Layout *LayoutResult
	// Sources are the SHA-256 sums of the spec's source files (keyed by
	// their path relative to the spec), for identifiers that depend on
	// them; the pipeline fills it before Finalize.
	Sources map[string][32]byte
	// Fetcher is the build's download cache, shared with steps that
	// fetch release archives; nil means a default cache.
	Fetcher *fetch.Fetcher

	warnings []string
}

// Warnf records a warning for the build result and logs it.
func (c *Context) Warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	c.warnings = append(c.warnings, msg)
	if c.Log != nil {
		c.Log.Warn(msg)
	}
}

// Warnings returns the warnings recorded so far.
func (c *Context) Warnings() []string { return append([]string(nil), c.warnings...) }

// Attr is an attribute set stamped with the build time.
func (c *Context) Attr(mode iofs.FileMode, uid, gid uint32) fs.Attr {
	return fs.Attr{Mode: mode, UID: uid, GID: gid, ModTime: c.Time}
}

// maxConfigBytes bounds reads of configuration files from the image.
const maxConfigBytes = 4 << 20

// ReadFile reads a (bounded) configuration file; missing reads as nil,
// with ok false.
func ReadFile(f fs.Filesystem, p string) (data []byte, ok bool, err error) {
	b, err := fs.ReadLimited(f, p, maxConfigBytes)
	if err != nil {
		if fs.IsMissing(err) {
			return nil, false, nil
		}
		return nil, false, err
	}
	return b, true, nil
}

// WriteFile writes content to p in f, creating parent directories
// (root:root 0755) first.
func (c *Context) WriteFile(f fs.Filesystem, p, content string, mode iofs.FileMode, uid, gid uint32) error {
	if err := c.MkdirAll(f, fs.Dir(p)); err != nil {
		return err
	}
	if err := f.WriteFile(p, strings.NewReader(content), c.Attr(mode, uid, gid)); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// WriteReader is WriteFile for streamed content.
func (c *Context) WriteReader(f fs.Filesystem, p string, r io.Reader, mode iofs.FileMode, uid, gid uint32) error {
	if err := c.MkdirAll(f, fs.Dir(p)); err != nil {
		return err
	}
	if err := f.WriteFile(p, r, c.Attr(mode, uid, gid)); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

// MkdirAll creates p and its parents as root:root 0755.
func (c *Context) MkdirAll(f fs.Filesystem, p string) error {
	if p == "/" {
		return nil
	}
	if err := f.MkdirAll(p, c.Attr(0o755, 0, 0)); err != nil {
		return fmt.Errorf("create directory %s: %w", p, err)
	}
	return nil
}

// EditFile rewrites an existing file with edit's result, keeping its
// mode and owner; a missing file is created with mode (root:root) when
// edit returns something for nil input. Unchanged content is not written.
func (c *Context) EditFile(f fs.Filesystem, p string, mode iofs.FileMode, edit func(old []byte, exists bool) ([]byte, error)) error {
	old, exists, err := ReadFile(f, p)
	if err != nil {
		return err
	}
	out, err := edit(old, exists)
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if out == nil || (exists && string(out) == string(old)) {
		return nil
	}
	uid, gid := uint32(0), uint32(0)
	if exists {
		if fi, err := f.Stat(p); err == nil {
			mode, uid, gid = fi.Mode&(iofs.ModePerm|iofs.ModeSetuid|iofs.ModeSetgid|iofs.ModeSticky), fi.UID, fi.GID
		}
		// Write through a symlink to its target, as an editor would.
		if fi, err := f.Lstat(p); err == nil && fi.Mode&iofs.ModeSymlink != 0 {
			if t, err := resolveLink(f, p); err == nil {
				p = t
			}
		}
	}
	return c.WriteFile(f, p, string(out), mode, uid, gid)
}

// resolveLink follows symlinks at p (within f) to the final path.
func resolveLink(f fs.Filesystem, p string) (string, error) {
	for i := 0; i < fs.MaxSymlinkHops; i++ {
		fi, err := f.Lstat(p)
		if err != nil {
			return "", err
		}
		if fi.Mode&iofs.ModeSymlink == 0 {
			return p, nil
		}
		t, err := f.ReadLink(p)
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(t, "/") {
			t = fs.Dir(p) + "/" + t
		}
		if p, err = fs.Clean(t); err != nil {
			return "", err
		}
	}
	return "", fs.ErrTooManyLinks
}

// Exists reports whether p exists (without following a final symlink).
func Exists(f fs.Filesystem, p string) bool {
	_, err := f.Lstat(p)
	return err == nil
}

// EnableUnit enables a unit as systemctl would and logs the links.
func (c *Context) EnableUnit(name string) error {
	changes, err := systemd.Enable(c.Root, name)
	for _, ch := range changes {
		c.Log.Debug("systemd", "change", ch.String())
	}
	return err
}

// DisableUnit disables a unit, ignoring one that does not exist.
func (c *Context) DisableUnit(name string) error {
	changes, err := systemd.Disable(c.Root, name)
	for _, ch := range changes {
		c.Log.Debug("systemd", "change", ch.String())
	}
	if errors.Is(err, systemd.ErrNotFound) {
		return nil
	}
	return err
}

// WriteUnit writes a bakery unit file into /etc/systemd/system.
func (c *Context) WriteUnit(name, content string) error {
	return systemd.WriteUnit(c.Root, name, content, fs.Attr{ModTime: c.Time})
}

// EditCmdline edits the kernel command line of a Raspberry Pi boot
// partition (cmdline.txt), if the image has one.
func (c *Context) EditCmdline(edit func(*Cmdline)) error {
	if c.Boot == nil || !Exists(c.Boot, "/cmdline.txt") {
		return nil
	}
	return c.EditFile(c.Boot, "/cmdline.txt", 0o755, func(old []byte, _ bool) ([]byte, error) {
		cl := ParseCmdline(string(old))
		edit(cl)
		return []byte(cl.String()), nil
	})
}

// Cmdline is a kernel command line: one line of space-separated tokens,
// edited in place so that untouched tokens keep their order.
type Cmdline struct {
	Tokens []string
}

// ParseCmdline reads cmdline.txt (only its first line counts).
func ParseCmdline(s string) *Cmdline {
	line, _, _ := strings.Cut(s, "\n")
	return &Cmdline{Tokens: strings.Fields(line)}
}

func (c *Cmdline) String() string { return strings.Join(c.Tokens, " ") + "\n" }

// Get returns the value of key=value (or "" and false).
func (c *Cmdline) Get(key string) (string, bool) {
	for _, t := range c.Tokens {
		if k, v, ok := strings.Cut(t, "="); ok && k == key {
			return v, true
		} else if !ok && t == key {
			return "", true
		}
	}
	return "", false
}

// Set replaces the first key=... token (removing later ones) or appends.
func (c *Cmdline) Set(key, value string) {
	tok := key
	if value != "" {
		tok = key + "=" + value
	}
	out, done := textedit.ReplaceFirst(c.Tokens, func(t string) bool {
		k, _, _ := strings.Cut(t, "=")
		return k == key
	}, tok)
	if !done {
		out = append(out, tok)
	}
	c.Tokens = out
}

// Remove drops every token whose key is key; match, when non-nil, must
// also accept the value.
func (c *Cmdline) Remove(key string, match func(value string) bool) bool {
	out := c.Tokens[:0:0]
	removed := false
	for _, t := range c.Tokens {
		k, v, _ := strings.Cut(t, "=")
		if k == key && (match == nil || match(v)) {
			removed = true
			continue
		}
		out = append(out, t)
	}
	c.Tokens = out
	return removed
}
