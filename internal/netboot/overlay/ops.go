package overlay

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
)

// All operations below take the caller's credential (nil: bakery itself)
// and check permissions the way the kernel NFS server does.

func (r *Root) rlock() error {
	r.mu.RLock()
	if r.closed {
		r.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (r *Root) lock() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	return nil
}

func (r *Root) stamp() int64 { return r.now().UnixNano() }

// attrLocked returns the current attributes of id.
func (r *Root) attrLocked(id uint64) (Attr, error) {
	if in, ok := r.inodes[id]; ok {
		if in.Nlink == 0 {
			return Attr{}, fmt.Errorf("object %d was deleted: %w", id, ErrStale)
		}
		return in.attr(id), nil
	}
	if id >= LayerIDBase {
		return Attr{}, fmt.Errorf("object %d: %w", id, ErrStale)
	}
	fi, err := r.base.info(id)
	if err != nil {
		return Attr{}, err
	}
	return attrFromInfo(id, fi), nil
}

// materializeLocked returns id's layer record, creating it from the image's
// attributes on the first change.
func (r *Root) materializeLocked(id uint64) (*inode, error) {
	if in, ok := r.inodes[id]; ok {
		return in, nil
	}
	if id >= LayerIDBase {
		return nil, fmt.Errorf("object %d: %w", id, ErrStale)
	}
	fi, err := r.base.info(id)
	if err != nil {
		return nil, err
	}
	in := inodeFromInfo(fi)
	r.inodes[id] = in
	return in, nil
}

// baseHas reports whether the image's directory dir has an entry name
// (whether or not the layer hides it).
func (r *Root) baseHas(dir uint64, name string) bool {
	if dir >= LayerIDBase {
		return false
	}
	_, ok, _ := r.base.lookup(dir, name)
	return ok
}

func (r *Root) lookupLocked(dir uint64, name string) (uint64, error) {
	if id, ok := r.dirents[dir][name]; ok {
		if id == 0 {
			return 0, fs.ErrNotExist
		}
		return id, nil
	}
	if dir < LayerIDBase {
		ino, ok, err := r.base.lookup(dir, name)
		if err != nil {
			return 0, err
		}
		if ok {
			return ino, nil
		}
	}
	return 0, fs.ErrNotExist
}

// dirAttrLocked returns dir's attributes, checking it is a directory the
// caller may search (and, with write, change).
func (r *Root) dirAttrLocked(c *Cred, dir uint64, write bool) (Attr, error) {
	a, err := r.attrLocked(dir)
	if err != nil {
		return Attr{}, err
	}
	if !a.IsDir() {
		return Attr{}, fs.ErrNotDir
	}
	want := uint32(MayExec)
	if write {
		want |= MayWrite
	}
	if !May(c, a, want) {
		return Attr{}, ErrPermission
	}
	return a, nil
}

// Entry is one directory entry.
type Entry struct {
	Name string
	Attr Attr
}

type nameID struct {
	name string
	id   uint64
}

func (r *Root) listLocked(dir uint64) ([]nameID, error) {
	var out []nameID
	layer := r.dirents[dir]
	var bd *baseDir
	if dir < LayerIDBase {
		d, err := r.base.dir(dir)
		if err != nil {
			return nil, err
		}
		bd = d
		for i, name := range d.names {
			if id, ok := layer[name]; ok {
				if id != 0 {
					out = append(out, nameID{name, id})
				}
				continue
			}
			out = append(out, nameID{name, d.inos[i]})
		}
	}
	for name, id := range layer {
		if id == 0 {
			continue
		}
		if bd != nil {
			if _, inBase := bd.lookup(name); inBase {
				continue
			}
		}
		out = append(out, nameID{name, id})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// placeLocked returns where id currently is: a directory and a name.
func (r *Root) placeLocked(id uint64) (uint64, string, error) {
	for _, l := range r.links[id] {
		return l.dir, l.name, nil
	}
	if id < LayerIDBase {
		if in, ok := r.inodes[id]; ok && in.Nlink == 0 {
			return 0, "", ErrStale
		}
		n, err := r.base.node(id)
		if err != nil {
			return 0, "", err
		}
		if _, overridden := r.dirents[n.parent][n.name]; !overridden {
			return n.parent, n.name, nil
		}
		// The image name of id was removed or replaced; an image hard link
		// may remain under another name.
		if n.info.Nlink > 1 && !n.info.IsDir() {
			if dir, name, ok := r.findImageLinkLocked(id); ok {
				return dir, name, nil
			}
		}
	}
	return 0, "", fmt.Errorf("object %d: %w", id, ErrStale)
}

// findImageLinkLocked searches the image (indexing it) for another name of
// a hard-linked file that the layer has not hidden.
func (r *Root) findImageLinkLocked(id uint64) (uint64, string, bool) {
	if r.base.index() != nil {
		return 0, "", false
	}
	r.base.mu.RLock()
	defer r.base.mu.RUnlock()
	for dir, d := range r.base.dirs {
		for i, ino := range d.inos {
			if ino != id {
				continue
			}
			if _, overridden := r.dirents[dir][d.names[i]]; !overridden {
				return dir, d.names[i], true
			}
		}
	}
	return 0, "", false
}

// PathOf returns the current path of id as components (none for the root).
func (r *Root) PathOf(id uint64) ([]string, error) {
	if err := r.rlock(); err != nil {
		return nil, err
	}
	defer r.mu.RUnlock()
	return r.pathOfLocked(id)
}

func (r *Root) pathOfLocked(id uint64) ([]string, error) {
	var rev []string
	for id != r.base.rootIno {
		dir, name, err := r.placeLocked(id)
		if err != nil {
			return nil, err
		}
		rev = append(rev, name)
		if len(rev) > fs.MaxPathLen/2 {
			return nil, fmt.Errorf("object %d: path too deep: %w", id, fs.ErrCorrupt)
		}
		id = dir
	}
	out := make([]string, len(rev))
	for i, n := range rev {
		out[len(rev)-1-i] = n
	}
	return out, nil
}

// Getattr returns id's attributes.
func (r *Root) Getattr(id uint64) (Attr, error) {
	if err := r.rlock(); err != nil {
		return Attr{}, err
	}
	defer r.mu.RUnlock()
	return r.attrLocked(id)
}

// Lookup finds name in directory dir.
func (r *Root) Lookup(c *Cred, dir uint64, name string) (uint64, error) {
	if err := r.rlock(); err != nil {
		return 0, err
	}
	defer r.mu.RUnlock()
	if _, err := r.dirAttrLocked(c, dir, false); err != nil {
		return 0, err
	}
	return r.lookupLocked(dir, name)
}

// Resolve walks a slash-separated path from the root, following symbolic
// links in intermediate components (and in the last one when follow is
// set). Absolute link targets resolve from this root, never outside it.
func (r *Root) Resolve(c *Cred, path string, follow bool) (uint64, error) {
	if err := r.rlock(); err != nil {
		return 0, err
	}
	defer r.mu.RUnlock()
	return r.resolveLocked(c, strings.Split(path, "/"), follow)
}

func (r *Root) resolveLocked(c *Cred, comps []string, follow bool) (uint64, error) {
	stack := []uint64{r.base.rootIno}
	hops := 0
	for i := 0; i < len(comps); i++ {
		name := comps[i]
		cur := stack[len(stack)-1]
		switch name {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		if len(name) > fs.MaxNameLen || strings.IndexByte(name, 0) >= 0 {
			return 0, ErrNameTooLong
		}
		if _, err := r.dirAttrLocked(c, cur, false); err != nil {
			return 0, err
		}
		child, err := r.lookupLocked(cur, name)
		if err != nil {
			return 0, err
		}
		last := i == len(comps)-1
		if !last || follow {
			a, err := r.attrLocked(child)
			if err != nil {
				return 0, err
			}
			if a.Type() == TypeLink {
				if hops++; hops > fs.MaxSymlinkHops {
					return 0, fs.ErrTooManyLinks
				}
				rest := comps[i+1:]
				next := append(strings.Split(a.Target, "/"), rest...)
				if strings.HasPrefix(a.Target, "/") {
					stack = stack[:1]
				}
				comps, i = next, -1
				continue
			}
		}
		stack = append(stack, child)
	}
	return stack[len(stack)-1], nil
}

// ReadDir lists directory dir with the attributes of every entry.
func (r *Root) ReadDir(c *Cred, dir uint64) ([]Entry, error) {
	if err := r.rlock(); err != nil {
		return nil, err
	}
	defer r.mu.RUnlock()
	a, err := r.attrLocked(dir)
	if err != nil {
		return nil, err
	}
	if !a.IsDir() {
		return nil, fs.ErrNotDir
	}
	if !May(c, a, MayRead) {
		return nil, ErrPermission
	}
	ids, err := r.listLocked(dir)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(ids))
	for _, e := range ids {
		ea, err := r.attrLocked(e.id)
		if err != nil {
			return nil, fmt.Errorf("entry %q: %w", e.name, err)
		}
		out = append(out, Entry{Name: e.name, Attr: ea})
	}
	return out, nil
}

// Readlink returns a symbolic link's target.
func (r *Root) Readlink(id uint64) (string, error) {
	a, err := r.Getattr(id)
	if err != nil {
		return "", err
	}
	if a.Type() != TypeLink {
		return "", ErrInvalid
	}
	return a.Target, nil
}

// newInodeLocked prepares the record of a new object in a directory with
// attributes dir: owned by the caller, the group inherited from a setgid
// directory (and setgid itself for new directories).
func (r *Root) newInodeLocked(c *Cred, dir Attr, typ, perm uint32) *inode {
	var uid, gid uint32
	if c != nil {
		uid, gid = c.UID, c.GID
	}
	perm &= PermMask
	if dir.Mode&ModeSetgid != 0 {
		gid = dir.GID
		if typ == TypeDir {
			perm |= ModeSetgid
		}
	}
	if typ != TypeDir && perm&ModeSetgid != 0 && !c.isRoot() && !c.inGroup(gid) {
		perm &^= ModeSetgid
	}
	now := r.stamp()
	return &inode{Mode: typ | perm, UID: uid, GID: gid, Nlink: 1, Atime: now, Mtime: now, Ctime: now}
}

func (r *Root) allocIDLocked(ch *changes) uint64 {
	id := r.nextID
	r.nextID++
	ch.next = true
	return id
}

func (r *Root) addEntryLocked(dir uint64, name string, id uint64, ch *changes) {
	m := r.dirents[dir]
	if m == nil {
		m = map[string]uint64{}
		r.dirents[dir] = m
	}
	if old, ok := m[name]; ok && old == 0 {
		r.whiteouts--
	}
	m[name] = id
	r.links[id] = append(r.links[id], link{dir, name})
	ch.dirent(dir, name)
}

func (r *Root) removeEntryLocked(dir uint64, name string, id uint64, ch *changes) {
	if r.baseHas(dir, name) {
		m := r.dirents[dir]
		if m == nil {
			m = map[string]uint64{}
			r.dirents[dir] = m
		}
		if old, ok := m[name]; !ok || old != 0 {
			r.whiteouts++
		}
		m[name] = 0
	} else {
		delete(r.dirents[dir], name)
		if len(r.dirents[dir]) == 0 {
			delete(r.dirents, dir)
		}
	}
	ls := r.links[id]
	for i, l := range ls {
		if l.dir == dir && l.name == name {
			ls = append(ls[:i:i], ls[i+1:]...)
			break
		}
	}
	if len(ls) == 0 {
		delete(r.links, id)
	} else {
		r.links[id] = ls
	}
	ch.dirent(dir, name)
}

// touchLocked sets mtime and ctime of id (a directory whose entries
// changed, or a file whose content did).
func (r *Root) touchLocked(id uint64, ch *changes) error {
	in, err := r.materializeLocked(id)
	if err != nil {
		return err
	}
	now := r.stamp()
	in.Mtime, in.Ctime = now, now
	ch.inode(id)
	return nil
}

func (r *Root) changeNlinkLocked(id uint64, delta int, ch *changes) error {
	in, err := r.materializeLocked(id)
	if err != nil {
		return err
	}
	n := int64(in.Nlink) + int64(delta)
	if n < 0 {
		n = 0
	}
	in.Nlink = uint32(n)
	in.Ctime = r.stamp()
	ch.inode(id)
	return nil
}

// createLocked makes a new object named name in dir. For regular files
// it creates the (empty) content file first.
func (r *Root) createLocked(c *Cred, dir uint64, name string, typ, perm uint32, fill func(*inode)) (uint64, error) {
	if err := checkName(name); err != nil {
		return 0, err
	}
	da, err := r.dirAttrLocked(c, dir, true)
	if err != nil {
		return 0, err
	}
	if _, err := r.lookupLocked(dir, name); err == nil {
		return 0, fs.ErrExist
	}
	ch := &changes{}
	id := r.allocIDLocked(ch)
	in := r.newInodeLocked(c, da, typ, perm)
	if fill != nil {
		fill(in)
	}
	if typ == TypeReg {
		f, err := os.OpenFile(r.dataPath(id), os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
		if err != nil {
			return 0, fmt.Errorf("create content file: %w", err)
		}
		f.Close()
		in.Data = true
	}
	r.inodes[id] = in
	ch.inode(id)
	r.addEntryLocked(dir, name, id, ch)
	if typ == TypeDir {
		if err := r.changeNlinkLocked(dir, 1, ch); err != nil {
			return 0, err
		}
	}
	if err := r.touchLocked(dir, ch); err != nil {
		return 0, err
	}
	if err := r.commitLocked(ch); err != nil {
		os.Remove(r.dataPath(id))
		return 0, err
	}
	return id, nil
}

// Create makes a regular file. An existing regular file is returned with
// existed set (and left as it is) unless exclusive is set.
func (r *Root) Create(c *Cred, dir uint64, name string, perm uint32, exclusive bool) (id uint64, existed bool, err error) {
	if err := r.lock(); err != nil {
		return 0, false, err
	}
	defer r.mu.Unlock()
	if _, err := r.dirAttrLocked(c, dir, false); err != nil {
		return 0, false, err
	}
	if old, err := r.lookupLocked(dir, name); err == nil {
		if exclusive {
			return 0, false, fs.ErrExist
		}
		a, err := r.attrLocked(old)
		if err != nil {
			return 0, false, err
		}
		if a.IsDir() {
			return 0, false, fs.ErrIsDir
		}
		if !a.IsRegular() {
			return 0, false, fs.ErrExist
		}
		return old, true, nil
	}
	id, err = r.createLocked(c, dir, name, TypeReg, perm, nil)
	return id, false, err
}

// Mkdir makes a directory.
func (r *Root) Mkdir(c *Cred, dir uint64, name string, perm uint32) (uint64, error) {
	if err := r.lock(); err != nil {
		return 0, err
	}
	defer r.mu.Unlock()
	return r.createLocked(c, dir, name, TypeDir, perm, func(in *inode) { in.Nlink, in.Size = 2, 4096 })
}

// Symlink makes a symbolic link to target.
func (r *Root) Symlink(c *Cred, dir uint64, name, target string) (uint64, error) {
	if target == "" || len(target) > fs.MaxPathLen || strings.IndexByte(target, 0) >= 0 {
		return 0, fmt.Errorf("symlink target %q: %w", target, ErrInvalid)
	}
	if err := r.lock(); err != nil {
		return 0, err
	}
	defer r.mu.Unlock()
	return r.createLocked(c, dir, name, TypeLink, 0o777, func(in *inode) { in.Target, in.Size = target, int64(len(target)) })
}

// Mknod makes a device node, FIFO or socket; mode carries the type bits.
func (r *Root) Mknod(c *Cred, dir uint64, name string, mode uint32, rdev uint64) (uint64, error) {
	typ := mode & TypeMask
	switch typ {
	case TypeChar, TypeBlock:
		if !c.isRoot() {
			return 0, ErrNotOwner
		}
	case TypeFIFO, TypeSocket:
		rdev = 0
	default:
		return 0, fmt.Errorf("mknod type %o: %w", typ, ErrInvalid)
	}
	if err := r.lock(); err != nil {
		return 0, err
	}
	defer r.mu.Unlock()
	return r.createLocked(c, dir, name, typ, mode, func(in *inode) { in.Rdev = rdev })
}

// Link gives id another name.
func (r *Root) Link(c *Cred, id, dir uint64, name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := r.lock(); err != nil {
		return err
	}
	defer r.mu.Unlock()
	a, err := r.attrLocked(id)
	if err != nil {
		return err
	}
	if a.IsDir() {
		return ErrNotOwner // hard links to directories are not allowed (EPERM)
	}
	if a.Nlink >= 65000 {
		return fmt.Errorf("too many links: %w", ErrInvalid)
	}
	if _, err := r.dirAttrLocked(c, dir, true); err != nil {
		return err
	}
	if _, err := r.lookupLocked(dir, name); err == nil {
		return fs.ErrExist
	}
	ch := &changes{}
	r.addEntryLocked(dir, name, id, ch)
	if err := r.changeNlinkLocked(id, 1, ch); err != nil {
		return err
	}
	if err := r.touchLocked(dir, ch); err != nil {
		return err
	}
	return r.commitLocked(ch)
}

// RemoveKind says what Remove accepts.
type RemoveKind int

// What Remove may delete.
const (
	RemoveAny  RemoveKind = iota // unlink or rmdir
	RemoveFile                   // NFS REMOVE: not a directory
	RemoveDir                    // NFS RMDIR: only an empty directory
)

// stickyOK checks the sticky directory rule: in a sticky directory only
// the owner of the entry, of the directory, or root may remove or rename.
func stickyOK(c *Cred, dir, obj Attr) bool {
	return dir.Mode&ModeSticky == 0 || c.isRoot() || c.UID == dir.UID || c.UID == obj.UID
}

// Remove deletes name from dir.
func (r *Root) Remove(c *Cred, dir uint64, name string, kind RemoveKind) error {
	if err := checkName(name); err != nil {
		return err
	}
	if err := r.lock(); err != nil {
		return err
	}
	defer r.mu.Unlock()
	da, err := r.dirAttrLocked(c, dir, true)
	if err != nil {
		return err
	}
	id, err := r.lookupLocked(dir, name)
	if err != nil {
		return err
	}
	a, err := r.attrLocked(id)
	if err != nil {
		return err
	}
	switch {
	case kind == RemoveFile && a.IsDir():
		return fs.ErrIsDir
	case kind == RemoveDir && !a.IsDir():
		return fs.ErrNotDir
	}
	if !stickyOK(c, da, a) {
		return ErrNotOwner
	}
	ch := &changes{}
	if err := r.unlinkLocked(dir, name, id, a, ch); err != nil {
		return err
	}
	if err := r.touchLocked(dir, ch); err != nil {
		return err
	}
	return r.commitLocked(ch)
}

// unlinkLocked removes the entry (dir, name) -> id and drops a link of id;
// directories must be empty. The last link deletes the object.
func (r *Root) unlinkLocked(dir uint64, name string, id uint64, a Attr, ch *changes) error {
	if a.IsDir() {
		ents, err := r.listLocked(id)
		if err != nil {
			return err
		}
		if len(ents) > 0 {
			return fs.ErrNotEmpty
		}
	}
	r.removeEntryLocked(dir, name, id, ch)
	in, err := r.materializeLocked(id)
	if err != nil {
		return err
	}
	if a.IsDir() {
		in.Nlink = 0
		if err := r.changeNlinkLocked(dir, -1, ch); err != nil {
			return err
		}
		// Whiteouts of the image's children go with the directory.
		for n, v := range r.dirents[id] {
			if v == 0 {
				r.whiteouts--
			}
			delete(r.dirents[id], n)
			ch.dirent(id, n)
		}
		delete(r.dirents, id)
	} else if in.Nlink > 0 {
		in.Nlink--
	}
	in.Ctime = r.stamp()
	if in.Nlink == 0 {
		if in.Data {
			ch.dropData = append(ch.dropData, id)
			in.Data = false
		}
		if id >= LayerIDBase {
			delete(r.inodes, id)
		}
	}
	ch.inode(id)
	return nil
}

// isAncestorLocked reports whether a is b or one of b's ancestors.
func (r *Root) isAncestorLocked(a, b uint64) bool {
	for i := 0; i < fs.MaxPathLen; i++ {
		if a == b {
			return true
		}
		if b == r.base.rootIno {
			return false
		}
		dir, _, err := r.placeLocked(b)
		if err != nil {
			return false
		}
		b = dir
	}
	return false
}

// Rename moves sdir/sname to ddir/dname, replacing what is there as
// rename(2) does. Renaming an image directory moves only its entry; its
// contents keep coming from the image.
func (r *Root) Rename(c *Cred, sdir uint64, sname string, ddir uint64, dname string) error {
	if err := checkName(sname); err != nil {
		return err
	}
	if err := checkName(dname); err != nil {
		return err
	}
	if err := r.lock(); err != nil {
		return err
	}
	defer r.mu.Unlock()
	sda, err := r.dirAttrLocked(c, sdir, true)
	if err != nil {
		return err
	}
	dda, err := r.dirAttrLocked(c, ddir, true)
	if err != nil {
		return err
	}
	id, err := r.lookupLocked(sdir, sname)
	if err != nil {
		return err
	}
	a, err := r.attrLocked(id)
	if err != nil {
		return err
	}
	if !stickyOK(c, sda, a) {
		return ErrNotOwner
	}
	if a.IsDir() && r.isAncestorLocked(id, ddir) {
		return fmt.Errorf("move a directory into itself: %w", ErrInvalid)
	}
	ch := &changes{}
	if old, err := r.lookupLocked(ddir, dname); err == nil {
		if old == id {
			return nil // two names of one file: nothing to do
		}
		oa, err := r.attrLocked(old)
		if err != nil {
			return err
		}
		switch {
		case a.IsDir() && !oa.IsDir():
			return fs.ErrNotDir
		case !a.IsDir() && oa.IsDir():
			return fs.ErrIsDir
		}
		if !stickyOK(c, dda, oa) {
			return ErrNotOwner
		}
		if err := r.unlinkLocked(ddir, dname, old, oa, ch); err != nil {
			return err
		}
	}
	r.removeEntryLocked(sdir, sname, id, ch)
	r.addEntryLocked(ddir, dname, id, ch)
	if a.IsDir() && sdir != ddir {
		if err := r.changeNlinkLocked(sdir, -1, ch); err != nil {
			return err
		}
		if err := r.changeNlinkLocked(ddir, 1, ch); err != nil {
			return err
		}
	}
	in, err := r.materializeLocked(id)
	if err != nil {
		return err
	}
	in.Ctime = r.stamp()
	ch.inode(id)
	if err := r.touchLocked(sdir, ch); err != nil {
		return err
	}
	if sdir != ddir {
		if err := r.touchLocked(ddir, ch); err != nil {
			return err
		}
	}
	return r.commitLocked(ch)
}

// SetAttr is a set of attribute changes; nil fields stay.
type SetAttr struct {
	Mode     *uint32 // permission bits (setuid, setgid, sticky included)
	UID, GID *uint32
	Size     *int64
	Atime    *time.Time
	Mtime    *time.Time
	// AtimeNow and MtimeNow set the time to the server's clock.
	AtimeNow, MtimeNow bool
}

// Setattr changes attributes with chmod, chown, truncate and utimensat
// rules.
func (r *Root) Setattr(c *Cred, id uint64, sa SetAttr) (Attr, error) {
	a, err := r.Getattr(id)
	if err != nil {
		return Attr{}, err
	}
	owner := c.isRoot() || c.UID == a.UID
	if sa.Mode != nil && !owner {
		return Attr{}, ErrNotOwner
	}
	if sa.UID != nil && *sa.UID != a.UID && !c.isRoot() {
		return Attr{}, ErrNotOwner
	}
	if sa.GID != nil && *sa.GID != a.GID && !c.isRoot() && !(c.UID == a.UID && c.inGroup(*sa.GID)) {
		return Attr{}, ErrNotOwner
	}
	if (sa.Atime != nil || sa.Mtime != nil) && !owner {
		return Attr{}, ErrNotOwner
	}
	if (sa.AtimeNow || sa.MtimeNow) && !owner && !May(c, a, MayWrite) {
		return Attr{}, ErrPermission
	}
	if sa.Size != nil {
		switch {
		case a.IsDir():
			return Attr{}, fs.ErrIsDir
		case !a.IsRegular():
			return Attr{}, ErrInvalid
		case *sa.Size < 0 || *sa.Size > MaxFileSize:
			return Attr{}, ErrFileTooBig
		case !mayData(c, a, MayWrite):
			return Attr{}, ErrPermission
		}
		if *sa.Size != a.Size {
			if err := r.truncate(c, id, *sa.Size); err != nil {
				return Attr{}, err
			}
		}
	}
	if err := r.lock(); err != nil {
		return Attr{}, err
	}
	defer r.mu.Unlock()
	in, err := r.materializeLocked(id)
	if err != nil {
		return Attr{}, err
	}
	now := r.stamp()
	if sa.Mode != nil {
		perm := *sa.Mode & PermMask
		if !c.isRoot() && in.typ() != TypeDir && perm&ModeSetgid != 0 && !c.inGroup(in.GID) {
			perm &^= ModeSetgid
		}
		in.Mode = in.typ() | perm
	}
	changedOwner := false
	if sa.UID != nil && *sa.UID != in.UID {
		in.UID, changedOwner = *sa.UID, true
	}
	if sa.GID != nil && *sa.GID != in.GID {
		in.GID, changedOwner = *sa.GID, true
	}
	if changedOwner && sa.Mode == nil && in.typ() == TypeReg {
		// chown clears setuid, and setgid on group-executable files.
		in.Mode &^= ModeSetuid
		if in.Mode&0o010 != 0 {
			in.Mode &^= ModeSetgid
		}
	}
	switch {
	case sa.AtimeNow:
		in.Atime = now
	case sa.Atime != nil:
		in.Atime = sa.Atime.UnixNano()
	}
	switch {
	case sa.MtimeNow:
		in.Mtime = now
	case sa.Mtime != nil:
		in.Mtime = sa.Mtime.UnixNano()
	}
	in.Ctime = now
	ch := &changes{}
	ch.inode(id)
	if err := r.commitLocked(ch); err != nil {
		return Attr{}, err
	}
	return in.attr(id), nil
}

// truncate sets the size of a regular file, copying up (at most size
// bytes of) an image file first.
func (r *Root) truncate(c *Cred, id uint64, size int64) error {
	if err := r.ensureData(id, size); err != nil {
		return err
	}
	f, release, err := r.dataFile(id)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	release()
	if err != nil {
		return err
	}
	if err := r.lock(); err != nil {
		return err
	}
	defer r.mu.Unlock()
	in, ok := r.inodes[id]
	if !ok || !in.Data {
		return fmt.Errorf("object %d: %w", id, ErrStale)
	}
	in.Size = size
	now := r.stamp()
	in.Mtime, in.Ctime = now, now
	r.killPrivsLocked(c, in)
	r.unsynced[id] = struct{}{}
	ch := &changes{}
	ch.inode(id)
	return r.commitLocked(ch)
}

// killPrivsLocked clears setuid/setgid when someone other than root
// changes a file's content, as the kernel does.
func (r *Root) killPrivsLocked(c *Cred, in *inode) bool {
	if c.isRoot() || in.Mode&(ModeSetuid|ModeSetgid) == 0 {
		return false
	}
	in.Mode &^= ModeSetuid
	if in.Mode&0o010 != 0 {
		in.Mode &^= ModeSetgid
	}
	return true
}

// ReadAt reads file content.
func (r *Root) ReadAt(c *Cred, id uint64, p []byte, off int64) (int, error) {
	if err := r.rlock(); err != nil {
		return 0, err
	}
	a, err := r.attrLocked(id)
	in := r.inodes[id]
	layer := in != nil && in.Data
	r.mu.RUnlock()
	if err != nil {
		return 0, err
	}
	switch {
	case a.IsDir():
		return 0, fs.ErrIsDir
	case !a.IsRegular():
		return 0, ErrInvalid
	case !mayData(c, a, MayRead):
		return 0, ErrPermission
	case off < 0:
		return 0, ErrInvalid
	case off >= a.Size:
		return 0, io.EOF
	}
	want := p
	if rest := a.Size - off; int64(len(want)) > rest {
		want = want[:rest]
	}
	var n int
	if layer {
		f, release, ferr := r.dataFile(id)
		if ferr != nil {
			return 0, ferr
		}
		n, err = f.ReadAt(want, off)
		release()
	} else {
		f, release, ferr := r.base.open(id)
		if ferr != nil {
			return 0, ferr
		}
		n, err = f.ReadAt(want, off)
		release()
	}
	if err == io.EOF || err == nil {
		if int64(n) < int64(len(p)) || off+int64(n) >= a.Size {
			return n, io.EOF
		}
		return n, nil
	}
	return n, err
}

// WriteAt writes file content, copying an image file up first.
func (r *Root) WriteAt(c *Cred, id uint64, p []byte, off int64) (int, error) {
	a, err := r.Getattr(id)
	if err != nil {
		return 0, err
	}
	switch {
	case a.IsDir():
		return 0, fs.ErrIsDir
	case !a.IsRegular():
		return 0, ErrInvalid
	case !mayData(c, a, MayWrite):
		return 0, ErrPermission
	case off < 0 || off+int64(len(p)) > MaxFileSize:
		return 0, ErrFileTooBig
	}
	if err := r.ensureData(id, -1); err != nil {
		return 0, err
	}
	f, release, err := r.dataFile(id)
	if err != nil {
		return 0, err
	}
	n, err := f.WriteAt(p, off)
	release()
	if lerr := r.lock(); lerr != nil {
		return n, lerr
	}
	defer r.mu.Unlock()
	in, ok := r.inodes[id]
	if !ok || !in.Data {
		return n, fmt.Errorf("object %d: %w", id, ErrStale)
	}
	if end := off + int64(n); end > in.Size {
		in.Size = end
	}
	now := r.stamp()
	in.Mtime, in.Ctime = now, now
	r.unsynced[id] = struct{}{}
	if r.killPrivsLocked(c, in) {
		ch := &changes{}
		ch.inode(id)
		if cerr := r.commitLocked(ch); cerr != nil && err == nil {
			err = cerr
		}
	} else {
		r.dirty[id] = struct{}{}
	}
	return n, err
}

// ensureData makes sure id's content is in the layer, copying it up from
// the image once (at most limit bytes; -1 for all). Concurrent callers
// wait for one copy.
func (r *Root) ensureData(id uint64, limit int64) error {
	for {
		if err := r.rlock(); err != nil {
			return err
		}
		in := r.inodes[id]
		has := in != nil && in.Data
		r.mu.RUnlock()
		if has {
			return nil
		}
		if id >= LayerIDBase {
			return fmt.Errorf("object %d has no content: %w", id, fs.ErrCorrupt)
		}
		r.copyMu.Lock()
		if op := r.copying[id]; op != nil {
			r.copyMu.Unlock()
			<-op.done
			if op.err != nil {
				return op.err
			}
			continue
		}
		op := &copyOp{done: make(chan struct{})}
		r.copying[id] = op
		r.copyMu.Unlock()
		op.err = r.copyUp(id, limit)
		r.copyMu.Lock()
		delete(r.copying, id)
		r.copyMu.Unlock()
		close(op.done)
		return op.err
	}
}

// copyUp copies an image file's content into layer/data/<id>, skipping
// runs of zeros so that sparse files stay sparse.
func (r *Root) copyUp(id uint64, limit int64) error {
	fi, err := r.base.info(id)
	if err != nil {
		return err
	}
	size := fi.Size
	if limit >= 0 && limit < size {
		size = limit
	}
	final := r.dataPath(id)
	tmp := final + ".tmp"
	dst, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("copy up: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			dst.Close()
			os.Remove(tmp)
		}
	}()
	if size > 0 {
		src, release, err := r.base.open(id)
		if err != nil {
			return err
		}
		buf := make([]byte, min(size, 1<<20))
		for off := int64(0); off < size; {
			n := int(min(int64(len(buf)), size-off))
			m, err := src.ReadAt(buf[:n], off)
			if m < n {
				release()
				if err == nil {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("copy up object %d at %d: %w", id, off, err)
			}
			if err := writeSparse(dst, buf[:n], off); err != nil {
				release()
				return fmt.Errorf("copy up: %w", err)
			}
			off += int64(n)
		}
		release()
	}
	if err := dst.Truncate(size); err != nil {
		return fmt.Errorf("copy up: %w", err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("copy up: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("copy up: %w", err)
	}
	ok = true
	if err := r.lock(); err != nil {
		os.Remove(final)
		return err
	}
	defer r.mu.Unlock()
	in, err := r.materializeLocked(id)
	if err != nil {
		os.Remove(final)
		return err
	}
	in.Data, in.Size = true, size
	r.unsynced[id] = struct{}{}
	ch := &changes{}
	ch.inode(id)
	if err := r.commitLocked(ch); err != nil {
		os.Remove(final)
		return err
	}
	return nil
}

// writeSparse writes b at off, skipping 4 KiB blocks of zeros (the
// destination is a fresh file, so skipped blocks read back as zeros).
func writeSparse(dst *os.File, b []byte, off int64) error {
	const blk = 4096
	for start := 0; start < len(b); {
		end := min(start+blk, len(b))
		if allZero(b[start:end]) {
			start = end
			continue
		}
		// Extend over following non-zero blocks and write the run at once.
		for end < len(b) && !allZero(b[end:min(end+blk, len(b))]) {
			end = min(end+blk, len(b))
		}
		if _, err := dst.WriteAt(b[start:end], off+int64(start)); err != nil {
			return err
		}
		start = end
	}
	return nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, x := range b {
		if x != 0 {
			return false
		}
	}
	return true
}

// Walk looks names up from the root one by one, following no symbolic
// links and checking no permissions: the NFS server uses it to turn a
// handle's path back into an id (a handle is a capability, as in the
// kernel NFS server; permissions are checked on the operation).
func (r *Root) Walk(comps []string) (uint64, error) {
	if err := r.rlock(); err != nil {
		return 0, err
	}
	defer r.mu.RUnlock()
	id := r.base.rootIno
	for _, name := range comps {
		if name == "" {
			continue
		}
		if err := checkName(name); err != nil {
			return 0, err
		}
		a, err := r.attrLocked(id)
		if err != nil {
			return 0, err
		}
		if !a.IsDir() {
			return 0, fs.ErrNotDir
		}
		if id, err = r.lookupLocked(id, name); err != nil {
			return 0, err
		}
	}
	return id, nil
}

// Permit checks that c may read (MayRead) or write (MayWrite) id's
// content, as ReadAt and WriteAt will, so that an open can fail early
// with the right error.
func (r *Root) Permit(c *Cred, id uint64, want uint32) error {
	a, err := r.Getattr(id)
	if err != nil {
		return err
	}
	if want&MayRead != 0 && !mayData(c, a, MayRead) || want&MayWrite != 0 && !mayData(c, a, MayWrite) {
		return ErrPermission
	}
	return nil
}
