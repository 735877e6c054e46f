package nfs

import (
	"errors"
	"hash/fnv"
	"io"
	iofs "io/fs"
	"os"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/netboot/overlay"
	billy "github.com/go-git/go-billy/v5"
	"github.com/willscott/go-nfs/file"
)

// fileInfo is what go-nfs turns into NFS attributes. Sys returns go-nfs's
// own file.FileInfo, so uid, gid, link count, device numbers and the file
// id are exact; Mode carries the setuid, setgid and sticky bits in the low
// bits (0o7000), where go-nfs passes them to the wire unchanged (Go keeps
// them in high bits, which NFS clients drop).
type fileInfo struct {
	name string
	a    overlay.Attr
}

func (f *fileInfo) Name() string { return f.name }
func (f *fileInfo) Size() int64  { return f.a.Size }
func (f *fileInfo) Mode() os.FileMode {
	return (f.a.GoMode() &^ (os.ModeSetuid | os.ModeSetgid | os.ModeSticky)) | os.FileMode(f.a.Mode&overlay.PermMask)
}
func (f *fileInfo) ModTime() time.Time { return f.a.Mtime }
func (f *fileInfo) IsDir() bool        { return f.a.IsDir() }
func (f *fileInfo) Sys() any {
	return &file.FileInfo{Nlink: f.a.Nlink, UID: f.a.UID, GID: f.a.GID, Major: f.a.Major(), Minor: f.a.Minor(), Fileid: f.a.ID}
}

// splitPath turns a path built by Join back into components.
func splitPath(p string) ([]string, error) {
	if strings.IndexByte(p, 0) >= 0 {
		return nil, fs.ErrInvalidPath
	}
	p = strings.Trim(p, "/")
	if p == "" {
		return nil, nil
	}
	return strings.Split(p, "/"), nil
}

// rootFS is a machine's root as go-nfs sees it: a billy filesystem of
// paths, on top of the id-based overlay, acting with the credential of the
// request being served.
type rootFS struct{ s *session }

func (f *rootFS) root() (*overlay.Root, error) { return f.s.currentRoot() }

// Join joins path components; a component that is not a plain name (a
// client may send "..", "a/b" or NUL as a name) makes the path invalid.
func (f *rootFS) Join(elem ...string) string {
	var b strings.Builder
	for _, e := range elem {
		if e == "" {
			continue
		}
		if e == "." || e == ".." || strings.ContainsAny(e, "/\x00") {
			return "/\x00invalid"
		}
		b.WriteByte('/')
		b.WriteString(e)
	}
	if b.Len() == 0 {
		return "/"
	}
	return b.String()
}

// walk resolves a path without following symbolic links.
func (f *rootFS) walk(p string) (*overlay.Root, uint64, error) {
	root, err := f.root()
	if err != nil {
		return nil, 0, err
	}
	comps, err := splitPath(p)
	if err != nil {
		return nil, 0, err
	}
	id, err := root.Walk(comps)
	return root, id, err
}

// parent resolves the directory of p and returns the last name.
func (f *rootFS) parent(p string) (*overlay.Root, uint64, string, error) {
	root, err := f.root()
	if err != nil {
		return nil, 0, "", err
	}
	comps, err := splitPath(p)
	if err != nil {
		return nil, 0, "", err
	}
	if len(comps) == 0 {
		return nil, 0, "", fs.ErrInvalidPath
	}
	dir, err := root.Walk(comps[:len(comps)-1])
	return root, dir, comps[len(comps)-1], err
}

func pathErr(op, p string, err error) error {
	if err == nil {
		return nil
	}
	return &iofs.PathError{Op: op, Path: p, Err: err}
}

func (f *rootFS) stat(p string, follow bool) (os.FileInfo, error) {
	root, err := f.root()
	if err != nil {
		return nil, pathErr("stat", p, err)
	}
	var id uint64
	if follow {
		id, err = root.Resolve(nil, p, true)
	} else {
		_, id, err = f.walk(p)
	}
	if err != nil {
		return nil, pathErr("stat", p, err)
	}
	a, err := root.Getattr(id)
	if err != nil {
		return nil, pathErr("stat", p, err)
	}
	comps, _ := splitPath(p)
	name := ""
	if len(comps) > 0 {
		name = comps[len(comps)-1]
	}
	return &fileInfo{name: name, a: a}, nil
}

func (f *rootFS) Stat(p string) (os.FileInfo, error)  { return f.stat(p, true) }
func (f *rootFS) Lstat(p string) (os.FileInfo, error) { return f.stat(p, false) }

func (f *rootFS) ReadDir(p string) ([]os.FileInfo, error) {
	root, id, err := f.walk(p)
	if err != nil {
		return nil, pathErr("readdir", p, err)
	}
	ents, err := root.ReadDir(f.s.cred(), id)
	if err != nil {
		return nil, pathErr("readdir", p, err)
	}
	out := make([]os.FileInfo, len(ents))
	for i, e := range ents {
		out[i] = &fileInfo{name: e.Name, a: e.Attr}
	}
	return out, nil
}

// requested returns the mode the current CREATE/MKDIR asked for, with the
// bits go-nfs drops, or def.
func (f *rootFS) requested(def uint32) uint32 {
	if sa := f.s.cur.sattr; sa != nil && sa.mode != nil {
		return *sa.mode & overlay.PermMask
	}
	return def
}

func (f *rootFS) Create(p string) (billy.File, error) {
	return f.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
}

func (f *rootFS) Open(p string) (billy.File, error) { return f.OpenFile(p, os.O_RDONLY, 0) }

// OpenFile opens a regular file. Creating (go-nfs's CREATE) never
// truncates an existing file: go-nfs applies a requested size afterwards.
func (f *rootFS) OpenFile(p string, flag int, perm os.FileMode) (billy.File, error) {
	if flag&os.O_CREATE != 0 {
		root, dir, name, err := f.parent(p)
		if err != nil {
			return nil, pathErr("create", p, err)
		}
		excl := flag&os.O_EXCL != 0 || f.s.cur.proc == procCreate && f.s.cur.createHow != createUnchecked
		id, existed, err := root.Create(f.s.cred(), dir, name, f.requested(uint32(perm.Perm())), excl)
		if err != nil {
			return nil, pathErr("create", p, err)
		}
		f.s.cur.existed = existed
		return &rootFile{fs: f, root: root, id: id, name: p}, nil
	}
	root, err := f.root()
	if err != nil {
		return nil, pathErr("open", p, err)
	}
	id, err := root.Resolve(nil, p, true)
	if err != nil {
		return nil, pathErr("open", p, err)
	}
	a, err := root.Getattr(id)
	if err != nil {
		return nil, pathErr("open", p, err)
	}
	if a.IsDir() {
		return nil, pathErr("open", p, fs.ErrIsDir)
	}
	want := uint32(overlay.MayRead)
	if flag&(os.O_WRONLY|os.O_RDWR) != 0 {
		want = overlay.MayWrite
	}
	if a.IsRegular() {
		if err := root.Permit(f.s.cred(), id, want); err != nil {
			return nil, pathErr("open", p, err)
		}
	}
	return &rootFile{fs: f, root: root, id: id, name: p}, nil
}

func (f *rootFS) Rename(from, to string) error {
	root, sdir, sname, err := f.parent(from)
	if err != nil {
		return pathErr("rename", from, err)
	}
	_, ddir, dname, err := f.parent(to)
	if err != nil {
		return pathErr("rename", to, err)
	}
	return pathErr("rename", from, root.Rename(f.s.cred(), sdir, sname, ddir, dname))
}

func (f *rootFS) Remove(p string) error {
	root, dir, name, err := f.parent(p)
	if err != nil {
		return pathErr("remove", p, err)
	}
	return pathErr("remove", p, root.Remove(f.s.cred(), dir, name, overlay.RemoveAny))
}

// MkdirAll makes the last component only (go-nfs's MKDIR checked the parent).
func (f *rootFS) MkdirAll(p string, perm os.FileMode) error {
	root, dir, name, err := f.parent(p)
	if err != nil {
		return pathErr("mkdir", p, err)
	}
	if id, err := root.Lookup(nil, dir, name); err == nil {
		if a, err := root.Getattr(id); err == nil && a.IsDir() {
			return nil
		}
		return pathErr("mkdir", p, fs.ErrExist)
	}
	_, err = root.Mkdir(f.s.cred(), dir, name, f.requested(uint32(perm.Perm())))
	return pathErr("mkdir", p, err)
}

func (f *rootFS) Symlink(target, link string) error {
	root, dir, name, err := f.parent(link)
	if err != nil {
		return pathErr("symlink", link, err)
	}
	_, err = root.Symlink(f.s.cred(), dir, name, target)
	return pathErr("symlink", link, err)
}

func (f *rootFS) Readlink(p string) (string, error) {
	root, id, err := f.walk(p)
	if err != nil {
		return "", pathErr("readlink", p, err)
	}
	t, err := root.Readlink(id)
	return t, pathErr("readlink", p, err)
}

func (f *rootFS) TempFile(string, string) (billy.File, error) { return nil, billy.ErrNotSupported }
func (f *rootFS) Chroot(string) (billy.Filesystem, error)     { return nil, billy.ErrNotSupported }
func (f *rootFS) Root() string                                { return "/" }
func (f *rootFS) Capabilities() billy.Capability              { return billy.DefaultCapabilities }

// setattr applies go-nfs's attribute changes, except to a file an
// unchecked CREATE found existing (that keeps its attributes).
func (f *rootFS) setattr(p string, follow bool, sa overlay.SetAttr) error {
	if f.s.cur.proc == procCreate && f.s.cur.existed && sa.Size == nil {
		return nil
	}
	root, err := f.root()
	if err != nil {
		return err
	}
	var id uint64
	if follow {
		id, err = root.Resolve(nil, p, true)
	} else {
		_, id, err = f.walk(p)
	}
	if err != nil {
		return pathErr("setattr", p, err)
	}
	_, err = root.Setattr(f.s.cred(), id, sa)
	return pathErr("setattr", p, err)
}

// Chmod sets permission bits; go-nfs passes only rwx bits, so the
// special bits come from the request itself when it carried a mode.
func (f *rootFS) Chmod(p string, mode os.FileMode) error {
	m := uint32(mode.Perm())
	if sa := f.s.cur.sattr; sa != nil && sa.mode != nil {
		m = *sa.mode & overlay.PermMask
	}
	return f.setattr(p, false, overlay.SetAttr{Mode: &m})
}

func ownerChange(uid, gid int) overlay.SetAttr {
	var sa overlay.SetAttr
	if uid >= 0 {
		u := uint32(uid)
		sa.UID = &u
	}
	if gid >= 0 {
		g := uint32(gid)
		sa.GID = &g
	}
	return sa
}

func (f *rootFS) Lchown(p string, uid, gid int) error {
	return f.setattr(p, false, ownerChange(uid, gid))
}

func (f *rootFS) Chown(p string, uid, gid int) error {
	return f.setattr(p, true, ownerChange(uid, gid))
}

func (f *rootFS) Chtimes(p string, atime, mtime time.Time) error {
	return f.setattr(p, false, overlay.SetAttr{Atime: &atime, Mtime: &mtime})
}

// The UnixChange calls: bakery answers MKNOD and LINK itself (go-nfs's are
// broken), so these serve only callers other than go-nfs.

func (f *rootFS) Mknod(p string, mode, major, minor uint32) error {
	return f.mknod(p, overlay.TypeBlock|mode&overlay.PermMask, overlay.Mkdev(major, minor))
}

func (f *rootFS) Mkfifo(p string, mode uint32) error {
	return f.mknod(p, overlay.TypeFIFO|mode&overlay.PermMask, 0)
}

func (f *rootFS) Socket(p string) error { return f.mknod(p, overlay.TypeSocket|0o755, 0) }

func (f *rootFS) mknod(p string, mode uint32, rdev uint64) error {
	root, dir, name, err := f.parent(p)
	if err != nil {
		return pathErr("mknod", p, err)
	}
	_, err = root.Mknod(f.s.cred(), dir, name, mode, rdev)
	return pathErr("mknod", p, err)
}

func (f *rootFS) Link(target, link string) error {
	root, id, err := f.walk(target)
	if err != nil {
		return pathErr("link", target, err)
	}
	_, dir, name, err := f.parent(link)
	if err != nil {
		return pathErr("link", link, err)
	}
	return pathErr("link", link, root.Link(f.s.cred(), id, dir, name))
}

// rootFile is an open regular file of a root; every read and write is
// checked against the credential of the request doing it.
type rootFile struct {
	fs   *rootFS
	root *overlay.Root
	id   uint64
	name string
	off  int64
}

func (r *rootFile) Name() string { return r.name }
func (r *rootFile) ReadAt(p []byte, off int64) (int, error) {
	return r.root.ReadAt(r.fs.s.cred(), r.id, p, off)
}
func (r *rootFile) Read(p []byte) (int, error) {
	n, err := r.ReadAt(p, r.off)
	r.off += int64(n)
	return n, err
}
func (r *rootFile) Write(p []byte) (int, error) {
	n, err := r.root.WriteAt(r.fs.s.cred(), r.id, p, r.off)
	r.off += int64(n)
	return n, err
}
func (r *rootFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += r.off
	case io.SeekEnd:
		a, err := r.root.Getattr(r.id)
		if err != nil {
			return 0, err
		}
		off += a.Size
	}
	if off < 0 {
		return 0, overlay.ErrInvalid
	}
	r.off = off
	return off, nil
}
func (r *rootFile) Truncate(size int64) error {
	_, err := r.root.Setattr(r.fs.s.cred(), r.id, overlay.SetAttr{Size: &size})
	return err
}
func (r *rootFile) Close() error  { return nil }
func (r *rootFile) Lock() error   { return nil }
func (r *rootFile) Unlock() error { return nil }

// diskFS exports one extra disk: a directory holding the disk's image
// file <name>.img, read and written straight to the host file. Only root
// on the machine may use it (the file is mode 0600, owned by root).
type diskFS struct {
	s    *session
	name string
	path string
}

func (d *diskFS) fileName() string { return d.name + ".img" }

// fileid keeps disk ids apart from root ids (image inodes and layer ids
// are far below 2^63).
func (d *diskFS) fileid(file bool) uint64 {
	h := fnv.New64a()
	h.Write([]byte(d.name))
	id := 1<<63 | h.Sum64()&^1
	if file {
		id |= 1
	}
	return id
}

func (d *diskFS) attr(file bool) (overlay.Attr, error) {
	if !file {
		fi, err := os.Stat(d.path)
		if err != nil {
			return overlay.Attr{}, err
		}
		t := fi.ModTime()
		return overlay.Attr{ID: d.fileid(false), Mode: overlay.TypeDir | 0o755, Nlink: 2, Size: 4096, Atime: t, Mtime: t, Ctime: t}, nil
	}
	fi, err := os.Stat(d.path)
	if err != nil {
		return overlay.Attr{}, err
	}
	t := fi.ModTime()
	return overlay.Attr{ID: d.fileid(true), Mode: overlay.TypeReg | 0o600, Nlink: 1, Size: fi.Size(), Atime: t, Mtime: t, Ctime: t}, nil
}

func (d *diskFS) which(p string) (file bool, err error) {
	comps, err := splitPath(p)
	switch {
	case err != nil:
		return false, err
	case len(comps) == 0:
		return false, nil
	case len(comps) == 1 && comps[0] == d.fileName():
		return true, nil
	}
	return false, fs.ErrNotExist
}

func (d *diskFS) Join(elem ...string) string { return (&rootFS{}).Join(elem...) }

func (d *diskFS) Stat(p string) (os.FileInfo, error) { return d.Lstat(p) }
func (d *diskFS) Lstat(p string) (os.FileInfo, error) {
	file, err := d.which(p)
	if err != nil {
		return nil, pathErr("stat", p, err)
	}
	a, err := d.attr(file)
	if err != nil {
		return nil, pathErr("stat", p, err)
	}
	name := ""
	if file {
		name = d.fileName()
	}
	return &fileInfo{name: name, a: a}, nil
}

func (d *diskFS) ReadDir(p string) ([]os.FileInfo, error) {
	if file, err := d.which(p); err != nil || file {
		return nil, pathErr("readdir", p, fs.ErrNotDir)
	}
	fi, err := d.Lstat("/" + d.fileName())
	if err != nil {
		return nil, err
	}
	return []os.FileInfo{fi}, nil
}

func (d *diskFS) OpenFile(p string, flag int, _ os.FileMode) (billy.File, error) {
	file, err := d.which(p)
	if err != nil || !file {
		return nil, pathErr("open", p, fs.ErrNotExist)
	}
	if flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0 {
		return nil, pathErr("open", p, fs.ErrExist)
	}
	return &diskFile{d: d, name: p}, nil
}

func (d *diskFS) Open(p string) (billy.File, error) { return d.OpenFile(p, os.O_RDONLY, 0) }
func (d *diskFS) Create(p string) (billy.File, error) {
	return nil, pathErr("create", p, overlay.ErrPermission)
}
func (d *diskFS) Rename(string, string) error        { return overlay.ErrPermission }
func (d *diskFS) Remove(string) error                { return overlay.ErrPermission }
func (d *diskFS) MkdirAll(string, os.FileMode) error { return overlay.ErrPermission }
func (d *diskFS) Symlink(string, string) error       { return overlay.ErrPermission }
func (d *diskFS) Readlink(p string) (string, error) {
	return "", pathErr("readlink", p, overlay.ErrInvalid)
}
func (d *diskFS) TempFile(string, string) (billy.File, error) {
	return nil, billy.ErrNotSupported
}
func (d *diskFS) Chroot(string) (billy.Filesystem, error) { return nil, billy.ErrNotSupported }
func (d *diskFS) Root() string                            { return "/" }
func (d *diskFS) Capabilities() billy.Capability          { return billy.DefaultCapabilities }

func (d *diskFS) mayUse() error {
	if d.s.cur.cred.UID != 0 {
		return overlay.ErrPermission
	}
	return nil
}

// diskFile reads and writes the disk image; root only.
type diskFile struct {
	d    *diskFS
	name string
	off  int64
}

func (f *diskFile) with(flag int, fn func(*os.File) (int, error)) (int, error) {
	if err := f.d.mayUse(); err != nil {
		return 0, err
	}
	h, err := os.OpenFile(f.d.path, flag, 0)
	if err != nil {
		return 0, err
	}
	n, err := fn(h)
	if cerr := h.Close(); err == nil {
		err = cerr
	}
	return n, err
}

func (f *diskFile) Name() string { return f.name }
func (f *diskFile) ReadAt(p []byte, off int64) (int, error) {
	return f.with(os.O_RDONLY, func(h *os.File) (int, error) { return h.ReadAt(p, off) })
}
func (f *diskFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.off)
	f.off += int64(n)
	return n, err
}
func (f *diskFile) Write(p []byte) (int, error) {
	n, err := f.with(os.O_WRONLY, func(h *os.File) (int, error) { return h.WriteAt(p, f.off) })
	f.off += int64(n)
	return n, err
}
func (f *diskFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		off += f.off
	case io.SeekEnd:
		fi, err := os.Stat(f.d.path)
		if err != nil {
			return 0, err
		}
		off += fi.Size()
	}
	if off < 0 {
		return 0, overlay.ErrInvalid
	}
	f.off = off
	return off, nil
}
func (f *diskFile) Truncate(size int64) error {
	if err := f.d.mayUse(); err != nil {
		return err
	}
	return errors.New("an extra disk is resized with PUT /machines/{id}/disks/{name}")
}
func (f *diskFile) Close() error  { return nil }
func (f *diskFile) Lock() error   { return nil }
func (f *diskFile) Unlock() error { return nil }

var (
	_ billy.Filesystem = (*rootFS)(nil)
	_ billy.Change     = (*rootFS)(nil)
	_ billy.Filesystem = (*diskFS)(nil)
)
