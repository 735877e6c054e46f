package step

import (
	"context"
	"os"
	"strconv"

	"github.com/bakeryhq/bakery/internal/accounts"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/spec"
)

// Files writes the spec's file, directory and symlink blocks into the
// root filesystem. Owners and groups are names looked up in the image's
// own /etc/passwd and /etc/group (after the users step, so new users
// count) or numeric ids. Missing parents are created root:root 0755.
// Directories come first, then files, then symlinks, each in spec order.
func Files(ctx context.Context, c *Context) error {
	db, err := accounts.LoadDB(c.Root)
	if err != nil {
		return err
	}
	for i := range c.Spec.Directories {
		d := &c.Spec.Directories[i]
		uid, gid, err := resolveIDs(db, &d.Block, d.Owner, d.Group)
		if err != nil {
			return err
		}
		if fi, err := c.Root.Lstat(d.Path); err == nil && !fi.IsDir() {
			return d.Errorf("", "%s exists in the base image and is not a directory", d.Path)
		}
		if err := c.MkdirAll(c.Root, fs.Dir(d.Path)); err != nil {
			return err
		}
		if err := c.Root.MkdirAll(d.Path, c.Attr(d.Mode.FileMode(), uid, gid)); err != nil {
			return d.Errorf("", "create %s: %v", d.Path, err)
		}
		// An existing directory keeps its attributes under MkdirAll; the
		// spec states them.
		if err := c.Root.Chmod(d.Path, d.Mode.FileMode()); err != nil {
			return err
		}
		if err := c.Root.Chown(d.Path, uid, gid); err != nil {
			return err
		}
	}
	for i := range c.Spec.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		f := &c.Spec.Files[i]
		uid, gid, err := resolveIDs(db, &f.Block, f.Owner, f.Group)
		if err != nil {
			return err
		}
		if fi, err := c.Root.Lstat(f.Path); err == nil && fi.IsDir() {
			return f.Errorf("", "%s is a directory in the base image", f.Path)
		}
		if f.Source != "" {
			src, err := os.Open(f.Source)
			if err != nil {
				return f.Errorf("source", "open source: %v", err)
			}
			err = c.WriteReader(c.Root, f.Path, src, f.Mode.FileMode(), uid, gid)
			src.Close()
			if err != nil {
				return f.Errorf("", "%v", err)
			}
			continue
		}
		if err := c.WriteFile(c.Root, f.Path, f.Content, f.Mode.FileMode(), uid, gid); err != nil {
			return f.Errorf("", "%v", err)
		}
	}
	for i := range c.Spec.Symlinks {
		s := &c.Spec.Symlinks[i]
		if fi, err := c.Root.Lstat(s.Path); err == nil {
			if fi.IsDir() {
				return s.Errorf("", "%s is a directory in the base image", s.Path)
			}
			if err := c.Root.Remove(s.Path); err != nil {
				return err
			}
		}
		if err := c.MkdirAll(c.Root, fs.Dir(s.Path)); err != nil {
			return err
		}
		if err := c.Root.Symlink(s.Target, s.Path, c.Attr(0o777, 0, 0)); err != nil {
			return s.Errorf("", "create symlink %s: %v", s.Path, err)
		}
	}
	return nil
}

// resolveIDs turns owner and group (names or numbers) into ids.
func resolveIDs(db *accounts.DB, b *spec.Block, owner, group string) (uint32, uint32, error) {
	var uid, gid uint32
	if n, err := strconv.ParseUint(owner, 10, 32); err == nil {
		uid = uint32(n)
	} else if u, ok := db.LookupUser(owner); ok {
		uid = u.UID
	} else {
		return 0, 0, b.Errorf("owner", "user %q does not exist in the image (after the spec's users are added)", owner)
	}
	if n, err := strconv.ParseUint(group, 10, 32); err == nil {
		gid = uint32(n)
	} else if g, ok := db.GroupID(group); ok {
		gid = g
	} else {
		return 0, 0, b.Errorf("group", "group %q does not exist in the image (after the spec's users are added)", group)
	}
	return uid, gid, nil
}
