package fs

import (
	iofs "io/fs"
	"strings"
	"time"
)

// Limits that every implementation enforces on names it is given or reads.
const (
	MaxNameLen     = 255  // bytes in one path component
	MaxPathLen     = 4096 // bytes in a whole path
	MaxSymlinkHops = 40   // as Linux's MAXSYMLINKS
)

// Options configure how a filesystem is opened.
type Options struct {
	// ReadOnly refuses every mutating call with ErrReadOnly.
	ReadOnly bool
	// DefaultTime stamps writes whose Attr.ModTime is zero. When it is zero
	// too, the Unix epoch is used, never the wall clock, so that the same
	// inputs give the same bytes.
	DefaultTime time.Time
}

// TimeFor returns the time a write with attr should record.
func (o Options) TimeFor(attr Attr) time.Time {
	if !attr.ModTime.IsZero() {
		return attr.ModTime
	}
	if !o.DefaultTime.IsZero() {
		return o.DefaultTime
	}
	return time.Unix(0, 0).UTC()
}

// Clean validates an in-image path and returns it in canonical form
// ("/a/b", or "/" for the root). It rejects relative paths, "..", NUL bytes,
// empty or over-long components, because paths come from specs, HTTP and TFTP
// and must never be able to name something outside the filesystem.
func Clean(path string) (string, error) {
	if path == "" || path[0] != '/' {
		return "", &iofs.PathError{Op: "path", Path: path, Err: ErrInvalidPath}
	}
	if len(path) > MaxPathLen || strings.IndexByte(path, 0) >= 0 {
		return "", &iofs.PathError{Op: "path", Path: path, Err: ErrInvalidPath}
	}
	parts := strings.Split(path, "/")
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		switch {
		case p == "" || p == ".":
			continue
		case p == "..":
			return "", &iofs.PathError{Op: "path", Path: path, Err: ErrInvalidPath}
		case len(p) > MaxNameLen:
			return "", &iofs.PathError{Op: "path", Path: path, Err: ErrInvalidPath}
		}
		out = append(out, p)
	}
	return "/" + strings.Join(out, "/"), nil
}

// Split returns the components of a cleaned path; the root has none.
func Split(clean string) []string {
	if clean == "/" {
		return nil
	}
	return strings.Split(clean[1:], "/")
}

// Dir and Base split a cleaned path into its parent and last component.
func Dir(clean string) string {
	i := strings.LastIndexByte(clean, '/')
	if i <= 0 {
		return "/"
	}
	return clean[:i]
}

// Base returns the last component of a cleaned path ("" for the root).
func Base(clean string) string {
	return clean[strings.LastIndexByte(clean, '/')+1:]
}

// Join joins a cleaned directory and a single component.
func Join(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// PathErr wraps err with op and path the way every implementation reports it.
func PathErr(op, path string, err error) error {
	return &iofs.PathError{Op: op, Path: path, Err: err}
}
