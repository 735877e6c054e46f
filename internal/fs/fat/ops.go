package fat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
)

// maxFileSize is the largest file FAT can describe.
const maxFileSize = 0xFFFFFFFF

// writeChunk is how much of a file we hand go-diskfs per Write call. Each
// call makes go-diskfs walk the file's chain and rewrite the FAT and the
// directory, so chunks are large; it is a multiple of every cluster size.
const writeChunk = 1 << 20

var errTooLarge = fmt.Errorf("file larger than 4 GiB - 1 byte: %w", fs.ErrNotSupported)

// mutate runs fn as one atomic operation under the write lock: on error (or
// panic) the FAT, the directories and FSInfo are restored in the device
// buffer and in memory. The FAT is checked once, before the first change.
func (f *FS) mutate(op, path string, fn func(p string) error) (err error) {
	p, cerr := fs.Clean(path)
	if cerr != nil {
		return fs.PathErr(op, path, fs.ErrInvalidPath)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.closed:
		return fs.PathErr(op, p, errClosed)
	case f.opts.ReadOnly:
		return fs.PathErr(op, p, fs.ErrReadOnly)
	}
	if !f.treeChecked && f.checkErr == nil {
		f.treeChecked = true
		if err := f.checkTree(); err != nil {
			f.checkErr = fmt.Errorf("refusing to change an inconsistent filesystem (run fsck.fat): %w", err)
		}
	}
	if f.checkErr != nil {
		return fs.PathErr(op, p, f.checkErr)
	}
	f.dropCache()
	f.t.begin()
	f.j.begin()
	root := f.t.root
	defer func() {
		f.t.root = root
		if r := recover(); r != nil {
			recovered(r)
			err = fmt.Errorf("%w (internal error: %v)", fs.ErrCorrupt, r)
		}
		if err == nil {
			err = f.finish()
		}
		if err == nil {
			f.gen++
			f.markStale()
			f.j.commit()
			f.t.commit()
			return
		}
		f.t.rollback()
		if rerr := f.j.rollback(); rerr != nil {
			// The device buffer could not be restored; stop using it.
			f.closed = true
			err = fmt.Errorf("%w; rolling back also failed, filesystem closed: %v", err, rerr)
		}
		var pe *iofs.PathError
		if !errors.As(err, &pe) {
			err = fs.PathErr(op, p, err)
		}
	}()
	return fn(p)
}

// markStale flags open files whose clusters the operation freed or reused.
func (f *FS) markStale() {
	f.filesMu.Lock()
	defer f.filesMu.Unlock()
	for h := range f.files {
		h.mu.Lock()
	ext:
		for _, e := range h.ext {
			for c := e.first; c < e.first+e.count; c++ {
				if _, ok := f.t.journal[c]; ok {
					h.stale = true
					break ext
				}
			}
		}
		h.mu.Unlock()
	}
}

// checkTree walks every directory once, before the first change, and
// refuses what the FAT alone cannot show: two entries sharing clusters
// (including a directory reachable twice, i.e. a loop in the tree) and
// entries starting in the middle of another chain. Removing or replacing
// either would free clusters that are still in use.
func (f *FS) checkTree() error {
	owner := map[uint32]string{}
	root := f.rootRef()
	if !root.fixed {
		owner[root.cluster] = "/"
	}
	type item struct {
		ref  dirRef
		path string
	}
	stack := []item{{root, "/"}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		d, err := f.readDir(it.ref)
		if err != nil {
			return fmt.Errorf("%s: %w", it.path, err)
		}
		for _, e := range d.ents {
			if e.kind != kindNormal || e.cluster == 0 || !f.t.isPointer(e.cluster) {
				continue
			}
			p := fs.Join(it.path, e.name)
			if o, ok := owner[e.cluster]; ok {
				return corruptf("%s and %s share cluster %d", o, p, e.cluster)
			}
			if !f.t.isHead(e.cluster) {
				return corruptf("%s starts in the middle of another cluster chain (cluster %d)", p, e.cluster)
			}
			owner[e.cluster] = p
			if e.isDir() {
				stack = append(stack, item{dirRef{cluster: e.cluster}, p})
			}
		}
	}
	return nil
}

// finish writes what an operation changed in the FAT and the FSInfo sector.
func (f *FS) finish() error {
	if err := f.writeFAT(); err != nil {
		return err
	}
	return f.writeFSInfo()
}

// writeFAT writes our FAT to every copy; the journal passes on only the
// sectors that changed.
func (f *FS) writeFAT() error {
	for i := int64(0); i < f.g.numFATs; i++ {
		if _, err := f.j.WriteAt(f.t.raw, f.g.fatOffset+i*f.g.fatBytes); err != nil {
			return fmt.Errorf("write FAT: %w", err)
		}
	}
	return nil
}

// writeFSInfo keeps the FAT32 FSInfo sector right: go-diskfs never updates
// it (fsck.fat: "Free cluster summary wrong") and fat32.Create leaves it
// "uninitialized". Like Linux we maintain the primary copy only.
func (f *FS) writeFSInfo() error {
	if f.g.bits != 32 || !f.fsInfoOK {
		return nil
	}
	off := f.g.fsInfoSector * f.g.bytesPerSector
	b := make([]byte, 512)
	if err := f.readFull(b, off); err != nil {
		return err
	}
	next := f.t.firstFree()
	if next == 0 {
		next = 0xFFFFFFFF
	}
	binary.LittleEndian.PutUint32(b[488:], f.t.free)
	binary.LittleEndian.PutUint32(b[492:], next)
	if _, err := f.j.WriteAt(b, off); err != nil {
		return fmt.Errorf("write FSInfo: %w", err)
	}
	return nil
}

// parentDir resolves the directory that holds (or will hold) p.
func (f *FS) parentDir(p string) (*dirData, *resolved, error) {
	r, err := f.resolve(fs.Dir(p))
	if err != nil {
		return nil, nil, err
	}
	d, err := f.dirOf(r)
	if err != nil {
		return nil, nil, err
	}
	return d, r, nil
}

// dotDotCluster is what ".." of a child of d holds: 0 for the root.
func (f *FS) dotDotCluster(d *dirData) uint32 {
	if d.ref.fixed || d.ref.cluster == f.g.rootCluster && f.g.bits == 32 {
		return 0
	}
	return d.ref.cluster
}

// removeEntry frees e's clusters and deletes its slots from d.
func (f *FS) removeEntry(d *dirData, e *dirent) error {
	if e.cluster != 0 {
		if err := f.t.freeChain(e.cluster); err != nil {
			return err
		}
	}
	return f.deleteEntry(d, e)
}

// WriteFile creates or replaces the regular file path with the bytes of r.
// FAT keeps one permission: a mode without the owner write bit makes the
// file read-only. Owners and the other bits are not stored (attr.UID and
// attr.GID are ignored, as a vfat mount does). A zero attr.ModTime means
// Options.DefaultTime; times are stored at FAT's 2-second resolution.
//
// A file being replaced is removed first (go-diskfs does not truncate on
// O_CREATE, and its O_TRUNC keeps a cluster and cannot handle files without
// one); then go-diskfs creates the entry and writes the data.
func (f *FS) WriteFile(path string, r io.Reader, attr fs.Attr) error {
	return f.mutate("write", path, func(p string) error {
		if p == "/" {
			return fs.ErrIsDir
		}
		name := fs.Base(p)
		if err := checkName(name); err != nil {
			return err
		}
		d, _, err := f.parentDir(p)
		if err != nil {
			return err
		}
		var keep byte
		if e := d.lookup(name); e != nil {
			if e.isDir() {
				return fs.ErrIsDir
			}
			// Like truncating in place: the file keeps its name (case
			// and all) and its hidden and system attributes.
			name, keep = e.name, e.attr()&(attrHidden|attrSystem)
			if err := f.removeEntry(d, e); err != nil {
				return err
			}
		}
		if err := f.checkRoom(d, name); err != nil {
			return err
		}
		prep, err := f.prepare(d, name)
		if err != nil {
			return err
		}
		h, err := f.engine(d).OpenFile("/"+prep.gd, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return engineErr(err)
		}
		defer h.Close()
		if f.wbuf == nil {
			f.wbuf = make([]byte, writeChunk)
		}
		buf := f.wbuf
		var total int64
		for {
			n, rerr := io.ReadFull(r, buf)
			if n > 0 {
				if total+int64(n) > maxFileSize {
					return errTooLarge
				}
				if _, err := h.Write(buf[:n]); err != nil {
					return engineErr(err)
				}
				total += int64(n)
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				break
			}
			if rerr != nil {
				return fmt.Errorf("read source: %w", rerr)
			}
		}
		mtime := f.opts.TimeFor(attr)
		return f.repair(prep, func(t *dirent, others []*dirent) error {
			if int64(t.size) != total {
				return fmt.Errorf("fat engine: wrote %d bytes but the entry says %d", total, t.size)
			}
			a := attrArchive | keep
			// A mode with permission bits but no owner write bit means
			// read-only; a zero mode means "unspecified" and stays writable.
			if attr.Mode.Perm() != 0 && attr.Mode&0o200 == 0 {
				a |= attrReadOnly
			}
			t.raw[11] = a
			setTimes(t.raw[:], mtime)
			if total == 0 && t.cluster != 0 {
				// go-diskfs gives every new file a cluster; an empty
				// file has none (fsck.fat: "File size is 0 bytes,
				// cluster chain length is > 0 bytes").
				if err := f.t.freeChain(t.cluster); err != nil {
					return err
				}
				t.cluster = 0
				setCluster(t.raw[:], 0)
			}
			return nil
		})
	})
}

// MkdirAll creates path and any missing parents; directories it creates get
// attr's time. Existing directories are left alone.
func (f *FS) MkdirAll(path string, attr fs.Attr) error {
	return f.mutate("mkdir", path, func(p string) error {
		d, err := f.readDir(f.rootRef())
		if err != nil {
			return err
		}
		mtime := f.opts.TimeFor(attr)
		for _, name := range fs.Split(p) {
			if e := d.lookup(name); e != nil {
				if !e.isDir() {
					return fs.ErrNotDir
				}
				if d, err = f.openDir(e); err != nil {
					return err
				}
				continue
			}
			if d, err = f.mkdir(d, name, mtime); err != nil {
				return err
			}
		}
		return nil
	})
}

// mkdir creates directory name in d with go-diskfs and returns it.
func (f *FS) mkdir(d *dirData, name string, mtime time.Time) (*dirData, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := f.checkRoom(d, name); err != nil {
		return nil, err
	}
	prep, err := f.prepare(d, name)
	if err != nil {
		return nil, err
	}
	if err := f.engine(d).Mkdir("/" + prep.gd); err != nil {
		return nil, engineErr(err)
	}
	var cluster uint32
	err = f.repair(prep, func(t *dirent, others []*dirent) error {
		t.raw[11] = attrDir
		setTimes(t.raw[:], mtime)
		binary.LittleEndian.PutUint32(t.raw[28:], 0)
		cluster = t.cluster
		return nil
	})
	if err != nil {
		return nil, err
	}
	// go-diskfs stamps "." and ".." with time.Now (or a garbage date for a
	// parent it has no time for), and points ".." of a FAT32 root child at
	// the root cluster where the spec (and fsck.fat) want 0.
	nd, err := f.readDir(dirRef{cluster: cluster})
	if err != nil {
		return nil, err
	}
	if nd.slots() < 2 {
		return nil, fmt.Errorf("fat engine: new directory too small")
	}
	for i, c := range []uint32{cluster, f.dotDotCluster(d)} {
		s := nd.buf[i*32 : i*32+32]
		clear(s)
		copy(s, []string{".          ", "..         "}[i])
		s[11] = attrDir
		setTimes(s, mtime)
		setCluster(s, c)
	}
	if err := f.writeDir(nd); err != nil {
		return nil, err
	}
	nd.parse(f.g.bits)
	return nd, nil
}

// Remove deletes a file or an empty directory. This is ours, not go-diskfs's:
// its Remove leaves the removed file's clusters allocated, rewrites and
// re-allocates the whole directory, and panics ("slice bounds out of range
// [:512] with capacity 0" in writeDirectoryEntries) when the last entry of a
// FAT32 root without a volume label is removed, because it then serialises
// zero bytes for a one-cluster directory.
func (f *FS) Remove(path string) error {
	return f.mutate("remove", path, func(p string) error {
		if p == "/" {
			return fs.ErrInvalidPath
		}
		r, err := f.resolve(p)
		if err != nil {
			return err
		}
		if r.e.isDir() {
			sub, err := f.openDir(r.e)
			if err != nil {
				return err
			}
			if sub.hasChildren() {
				return fs.ErrNotEmpty
			}
		}
		return f.removeEntry(r.parent, r.e)
	})
}

// Rename moves oldPath to newPath, replacing a file (or an empty directory
// by a directory) there. The old entry is deleted and go-diskfs creates the
// new one in the target directory (as a placeholder file), which then takes
// over the old entry's clusters, size, attributes and times. go-diskfs's own
// Rename only works within one directory, cannot change just the case of a
// name, and leaks a replaced file's clusters.
func (f *FS) Rename(oldPath, newPath string) error {
	return f.mutate("rename", oldPath, func(op string) error {
		np, err := fs.Clean(newPath)
		if err != nil {
			return fs.PathErr("rename", newPath, fs.ErrInvalidPath)
		}
		if op == "/" || np == "/" {
			return fs.ErrInvalidPath
		}
		newName := fs.Base(np)
		if err := checkName(newName); err != nil {
			return fs.PathErr("rename", np, err)
		}
		src, err := f.resolve(op)
		if err != nil {
			return err
		}
		dr, err := f.resolve(fs.Dir(np))
		if err != nil {
			return fs.PathErr("rename", np, err)
		}
		dd, err := f.dirOf(dr)
		if err != nil {
			return fs.PathErr("rename", np, err)
		}
		if src.e.isDir() {
			// Not into itself or below.
			walked := dr.chain
			if !dr.isRoot() {
				walked = append(walked, dr.e.cluster)
			}
			for _, c := range walked {
				if c == src.e.cluster && c != 0 {
					return fs.PathErr("rename", np, fs.ErrInvalidPath)
				}
			}
		}
		sameDir := dd.ref == src.parent.ref
		if t := dd.lookup(newName); t != nil {
			if sameDir && t.slot == src.e.slot {
				if t.name == newName {
					return nil
				}
			} else {
				switch {
				case t.isDir() && !src.e.isDir():
					return fs.PathErr("rename", np, fs.ErrIsDir)
				case !t.isDir() && src.e.isDir():
					return fs.PathErr("rename", np, fs.ErrNotDir)
				case t.isDir():
					sub, err := f.openDir(t)
					if err != nil {
						return err
					}
					if sub.hasChildren() {
						return fs.PathErr("rename", np, fs.ErrNotEmpty)
					}
				}
				if err := f.removeEntry(dd, t); err != nil {
					return err
				}
			}
		}
		// Delete the old entry (its clusters stay in use).
		sd, err := f.readDir(src.parent.ref)
		if err != nil {
			return err
		}
		var se *dirent
		for _, e := range sd.ents {
			if e.slot == src.e.slot {
				se = e
			}
		}
		if se == nil {
			return fmt.Errorf("fat: %s vanished during rename", op)
		}
		orig := *se
		if err := f.deleteEntry(sd, se); err != nil {
			return err
		}
		// go-diskfs allocates a cluster for the placeholder. On a full
		// volume, lend it the moved entry's first cluster (go-diskfs writes
		// nothing into it) and take it back below.
		var lent, lentVal uint32
		if f.t.free == 0 && orig.cluster != 0 {
			lent, lentVal = orig.cluster, f.t.get(orig.cluster)
			f.t.set(lent, 0)
		}
		if dd, err = f.readDir(dd.ref); err != nil {
			return err
		}
		if err := f.checkRoom(dd, newName); err != nil {
			return err
		}
		prep, err := f.prepare(dd, newName)
		if err != nil {
			return err
		}
		h, err := f.engine(dd).OpenFile("/"+prep.gd, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return engineErr(err)
		}
		_ = h.Close()
		err = f.repair(prep, func(t *dirent, others []*dirent) error {
			if t.cluster != 0 {
				if err := f.t.freeChain(t.cluster); err != nil {
					return err
				}
			}
			if lent != 0 {
				f.t.set(lent, lentVal)
			}
			sfn, long := t.sfn, t.long
			t.raw, t.sfn, t.long = orig.raw, sfn, long
			t.raw[12] = 0
			t.cluster, t.size = orig.cluster, orig.size
			return nil
		})
		if err != nil {
			return err
		}
		if orig.isDir() && !sameDir {
			md, err := f.readDir(dirRef{cluster: orig.cluster})
			if err != nil {
				return err
			}
			for _, e := range md.ents {
				if e.kind == kindDotDot {
					setCluster(e.raw[:], f.dotDotCluster(dd))
					if err := f.patchEntry(md, e); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
}

// Chtimes sets the modification time (and access date) of path. The root
// directory has no timestamps in FAT; changing them is a no-op.
func (f *FS) Chtimes(path string, mtime time.Time) error {
	return f.mutate("chtimes", path, func(p string) error {
		r, err := f.resolve(p)
		if err != nil || r.isRoot() {
			return err
		}
		if mtime.IsZero() {
			mtime = f.opts.TimeFor(fs.Attr{})
		}
		setModTime(r.e.raw[:], mtime)
		return f.patchEntry(r.parent, r.e)
	})
}

// Chmod maps the owner write bit of a regular file to the read-only
// attribute. Directories (always shown 0755) and the root are unchanged.
func (f *FS) Chmod(path string, mode iofs.FileMode) error {
	return f.mutate("chmod", path, func(p string) error {
		r, err := f.resolve(p)
		if err != nil || r.isRoot() || r.e.isDir() {
			return err
		}
		if mode&0o200 == 0 {
			r.e.raw[11] |= attrReadOnly
		} else {
			r.e.raw[11] &^= attrReadOnly
		}
		return f.patchEntry(r.parent, r.e)
	})
}

// Chown succeeds only for uid and gid 0, which is what FAT reports for
// everything; FAT stores no owners.
func (f *FS) Chown(path string, uid, gid uint32) error {
	p, err := f.readLock("chown", path)
	if err != nil {
		return err
	}
	defer f.mu.RUnlock()
	if _, err := f.lookupPath(p); err != nil {
		return fs.PathErr("chown", p, err)
	}
	if uid != 0 || gid != 0 {
		return fs.PathErr("chown", p, fmt.Errorf("FAT has no file owners: %w", fs.ErrNotSupported))
	}
	return nil
}
