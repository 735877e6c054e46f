package overlay

import (
	"errors"
	"fmt"
	"io"

	"github.com/bakeryhq/bakery/internal/fs"
)

// Path-based helpers, used by provisioning (as root, nil credential).
// Paths are absolute and clean ("/etc/hostname").

func splitParent(p string) (string, string, error) {
	clean, err := fs.Clean(p)
	if err != nil {
		return "", "", err
	}
	if clean == "/" {
		return "", "", fmt.Errorf("%s: %w", p, ErrInvalid)
	}
	return fs.Dir(clean), fs.Base(clean), nil
}

// Stat returns the attributes at path, following a final symlink if follow.
func (r *Root) Stat(p string, follow bool) (Attr, error) {
	id, err := r.Resolve(nil, p, follow)
	if err != nil {
		return Attr{}, fs.PathErr("stat", p, err)
	}
	return r.Getattr(id)
}

// ReadFile reads a whole file of at most limit bytes.
func (r *Root) ReadFile(p string, limit int64) ([]byte, error) {
	id, err := r.Resolve(nil, p, true)
	if err != nil {
		return nil, fs.PathErr("read", p, err)
	}
	a, err := r.Getattr(id)
	if err != nil {
		return nil, fs.PathErr("read", p, err)
	}
	if !a.IsRegular() {
		return nil, fs.PathErr("read", p, ErrInvalid)
	}
	if a.Size > limit {
		return nil, fs.PathErr("read", p, fmt.Errorf("%d bytes is over the %d-byte limit: %w", a.Size, limit, ErrFileTooBig))
	}
	buf := make([]byte, a.Size)
	n, err := r.ReadAt(nil, id, buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fs.PathErr("read", p, err)
	}
	return buf[:n], nil
}

// ReadDirPath lists the directory at path (following symlinks).
func (r *Root) ReadDirPath(p string) ([]Entry, error) {
	id, err := r.Resolve(nil, p, true)
	if err != nil {
		return nil, fs.PathErr("readdir", p, err)
	}
	return r.ReadDir(nil, id)
}

// WriteFile replaces the content of the regular file at path, keeping its
// owner and mode, or creates it with perm, uid and gid.
func (r *Root) WriteFile(p string, data []byte, perm, uid, gid uint32) error {
	dirPath, name, err := splitParent(p)
	if err != nil {
		return err
	}
	dir, err := r.Resolve(nil, dirPath, true)
	if err != nil {
		return fs.PathErr("write", p, err)
	}
	if old, err := r.Lookup(nil, dir, name); err == nil {
		a, err := r.Getattr(old)
		if err != nil {
			return fs.PathErr("write", p, err)
		}
		if !a.IsRegular() {
			if err := r.Remove(nil, dir, name, RemoveFile); err != nil {
				return fs.PathErr("write", p, err)
			}
		}
	}
	id, existed, err := r.Create(nil, dir, name, perm, false)
	if err != nil {
		return fs.PathErr("write", p, err)
	}
	zero := int64(0)
	sa := SetAttr{Size: &zero}
	if !existed && (uid != 0 || gid != 0) {
		sa.UID, sa.GID = &uid, &gid
	}
	if _, err := r.Setattr(nil, id, sa); err != nil {
		return fs.PathErr("write", p, err)
	}
	if len(data) > 0 {
		if _, err := r.WriteAt(nil, id, data, 0); err != nil {
			return fs.PathErr("write", p, err)
		}
	}
	return nil
}

// MkdirAll creates a directory and missing parents (root-owned).
func (r *Root) MkdirAll(p string, perm uint32) error {
	clean, err := fs.Clean(p)
	if err != nil {
		return err
	}
	cur, prefix := r.RootID(), ""
	for _, name := range fs.Split(clean) {
		prefix += "/" + name
		id, err := r.Resolve(nil, prefix, true)
		if errors.Is(err, fs.ErrNotExist) {
			id, err = r.Mkdir(nil, cur, name, perm)
		}
		if err != nil {
			return fs.PathErr("mkdir", p, err)
		}
		a, err := r.Getattr(id)
		if err != nil {
			return fs.PathErr("mkdir", p, err)
		}
		if !a.IsDir() {
			return fs.PathErr("mkdir", p, fs.ErrNotDir)
		}
		cur = id
	}
	return nil
}

// RemovePath deletes the file, link or empty directory at path; a missing
// path is not an error.
func (r *Root) RemovePath(p string) error {
	dirPath, name, err := splitParent(p)
	if err != nil {
		return err
	}
	dir, err := r.Resolve(nil, dirPath, true)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fs.PathErr("remove", p, err)
	}
	if err := r.Remove(nil, dir, name, RemoveAny); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fs.PathErr("remove", p, err)
	}
	return nil
}

// SymlinkPath makes path a symbolic link to target, replacing a file or
// link there.
func (r *Root) SymlinkPath(target, p string) error {
	if err := r.RemovePath(p); err != nil {
		return err
	}
	dirPath, name, err := splitParent(p)
	if err != nil {
		return err
	}
	dir, err := r.Resolve(nil, dirPath, true)
	if err != nil {
		return fs.PathErr("symlink", p, err)
	}
	if _, err := r.Symlink(nil, dir, name, target); err != nil {
		return fs.PathErr("symlink", p, err)
	}
	return nil
}
