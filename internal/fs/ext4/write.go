package ext4

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"strings"
	"sync"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
)

// writeChunk is how much file data is read and written per device write.
const writeChunk = 4 << 20

var errTooManyLinks = errors.New("too many hard links")

var chunkPool = sync.Pool{New: func() any { b := make([]byte, writeChunk); return &b }}

// mutate runs fn as one all-or-nothing change.
func (f *FS) mutate(op, path string, fn func() error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed.Load() {
		return fs.PathErr(op, path, errClosed)
	}
	if f.writeErr != nil {
		return fs.PathErr(op, path, f.writeErr)
	}
	f.begin()
	if err := fn(); err != nil {
		f.rollback()
		return fs.PathErr(op, path, err)
	}
	f.commitTxn()
	return nil
}

// parentOf resolves the directory that holds path's final component.
func (f *FS) parentOf(path string) (*inode, string, error) {
	clean, err := fs.Clean(path)
	if err != nil {
		return nil, "", fs.ErrInvalidPath
	}
	if clean == "/" {
		return nil, "", nil
	}
	dir, err := f.resolveDir(fs.Dir(clean))
	if err != nil {
		return nil, "", err
	}
	return dir, fs.Base(clean), nil
}

// inodeGoal is where data for inode ino should start looking for blocks:
// the first block of its (flex) group.
func (f *FS) inodeGoal(ino uint32) uint64 {
	g := (ino - 1) / f.ipg
	g -= g % f.flexSize
	return f.groupFirstBlock(g)
}

// createInode allocates an inode near parent and fills in mode, owner and
// times. The caller sets links, content and writes it.
func (f *FS) createInode(parent *inode, mode uint16, attr fs.Attr) (*inode, error) {
	ino, err := f.allocInode((parent.ino-1)/f.ipg, mode&sIFMT == sIFDIR)
	if err != nil {
		return nil, err
	}
	in := f.newInodeRaw(ino)
	put16(in.raw, inMode, mode)
	in.setOwner(attr.UID, attr.GID)
	in.setTimes(f.opts.TimeFor(attr), true)
	return in, nil
}

// writeContent streams r into freshly allocated blocks (written through to
// the device when it supports that) and returns their runs and the size.
func (f *FS) writeContent(r io.Reader, goal uint64) ([]run, uint64, error) {
	bs := uint64(f.blockSize)
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	var runs []run
	var size uint64
	maxBlocks := f.maxFileBlocks()
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			nb := divCeil(uint64(n), bs)
			if size/bs+nb > maxBlocks {
				return nil, 0, errFileTooLarge(size/bs + nb)
			}
			clear(buf[n : nb*bs])
			allocated, err := f.allocBlocks(goal, nb)
			if err != nil {
				return nil, 0, err
			}
			var at uint64
			for _, a := range allocated {
				p := buf[at*bs : (at+a.length)*bs]
				if err := f.writeData(p, int64(a.phys)*int64(bs)); err != nil {
					return nil, 0, err
				}
				logical := size/bs + at
				if k := len(runs); k > 0 && runs[k-1].phys+runs[k-1].length == a.phys && runs[k-1].logical+runs[k-1].length == logical {
					runs[k-1].length += a.length
				} else {
					runs = append(runs, run{logical: logical, phys: a.phys, length: a.length})
				}
				at += a.length
				goal = a.phys + a.length
			}
			size += uint64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return runs, size, nil
		}
		if rerr != nil {
			return nil, 0, fmt.Errorf("read content: %w", rerr)
		}
	}
}

// writeData writes file data to blocks that are free in the committed
// filesystem, bypassing the device's buffer when it can.
func (f *FS) writeData(p []byte, off int64) error {
	var err error
	if f.through != nil {
		_, err = f.through.WriteThrough(p, off)
	} else {
		_, err = f.dev.WriteAt(p, off)
	}
	if err != nil {
		return fmt.Errorf("write data at offset %d: %w", off, err)
	}
	return nil
}

// setContent points in at runs holding size bytes and accounts its blocks.
func (f *FS) setContent(in *inode, runs []run, size uint64) error {
	goal := f.inodeGoal(in.ino)
	var data uint64
	for _, r := range runs {
		data += r.length
		goal = r.phys + r.length
	}
	meta, err := f.buildMap(in, runs, goal)
	if err != nil {
		return err
	}
	total := data + meta
	if f.fileACL(in) != 0 {
		total++
	}
	if err := f.setBlockCount(in, total); err != nil {
		return err
	}
	in.setSize(size)
	if size > 1<<31-1 && !f.sb.hasRoCompat(roCompatLargeFile) {
		f.touchSuper()
		f.sb.roCompat |= roCompatLargeFile
	}
	return nil
}

// releaseInode drops one link of a non-directory inode, freeing it and its
// blocks when none remain.
func (f *FS) releaseInode(in *inode) error {
	if in.links() > 1 {
		in.setLinks(in.links() - 1)
		return f.writeInode(in)
	}
	return f.destroyInode(in)
}

// destroyInode frees an inode, its blocks, mapping and xattr block.
func (f *FS) destroyInode(in *inode) error {
	if ea, err := f.hasEAInodeRefs(in); err != nil {
		return err
	} else if ea {
		return unsupportedf("inode %d keeps extended attribute values in separate inodes (ea_inode); removing it is not supported", in.ino)
	}
	if f.hasBlockMapping(in) {
		m, err := f.readMap(in)
		if err != nil {
			return err
		}
		if err := f.freeMap(m); err != nil {
			return err
		}
	}
	if err := f.releaseXattrBlock(in); err != nil {
		return err
	}
	return f.freeInode(in.ino, in.isDir())
}

func unixMode(typ uint16, perm iofs.FileMode) uint16 {
	return typ | uint16(fs.UnixPerm(perm))
}

// WriteFile creates or replaces a regular file with the content of r.
// Content goes to new blocks; the old blocks are released only when the new
// file is in place, so a failure leaves the old file intact.
func (f *FS) WriteFile(path string, r io.Reader, attr fs.Attr) error {
	return f.mutate("writefile", path, func() error {
		parent, name, err := f.parentOf(path)
		if err != nil {
			return err
		}
		if parent == nil {
			return fs.ErrIsDir
		}
		if err := f.writableDir(parent); err != nil {
			return err
		}
		e, found, err := f.lookup(parent, name)
		if err != nil {
			return err
		}
		t := f.opts.TimeFor(attr)
		var old *inode
		if found {
			old, err = f.readInUse(e.ino)
			if err != nil {
				return err
			}
			if old.isDir() {
				return fs.ErrIsDir
			}
			if old.isReg() && old.flags()&(flagInlineData|flagEAInode) == 0 {
				return f.replaceContent(old, r, attr, t)
			}
		}
		d, err := f.loadDir(parent)
		if err != nil {
			return err
		}
		if old == nil {
			// The model is built from every block, not through the index:
			// an entry an inconsistent index hid must not be duplicated.
			if li, ei := d.find(f, name); li >= 0 {
				if old, err = f.readInUse(d.leaves[li].entries[ei].ino); err != nil {
					return err
				}
				if old.isDir() {
					return fs.ErrIsDir
				}
				if old.isReg() && old.flags()&(flagInlineData|flagEAInode) == 0 {
					return f.replaceContent(old, r, attr, t)
				}
			}
		}
		in, err := f.createInode(parent, unixMode(sIFREG, attr.Mode), attr)
		if err != nil {
			return err
		}
		runs, size, err := f.writeContent(r, f.inodeGoal(in.ino))
		if err != nil {
			return err
		}
		if err := f.setContent(in, runs, size); err != nil {
			return err
		}
		in.setLinks(1)
		if err := f.writeInode(in); err != nil {
			return err
		}
		if old != nil {
			if err := f.dirRetarget(d, name, in.ino, direntType(sIFREG)); err != nil {
				return err
			}
			return f.releaseInode(old)
		}
		return f.dirAdd(d, dirEntry{name: name, ino: in.ino, ftype: direntType(sIFREG)})
	})
}

// replaceContent rewrites an existing regular file in place (same inode, so
// hard links see the new content).
func (f *FS) replaceContent(old *inode, r io.Reader, attr fs.Attr, t time.Time) error {
	oldMap, err := f.readMap(old)
	if err != nil {
		return err
	}
	runs, size, err := f.writeContent(r, f.inodeGoal(old.ino))
	if err != nil {
		return err
	}
	if err := f.freeMap(oldMap); err != nil {
		return err
	}
	in := &inode{ino: old.ino, raw: append([]byte(nil), old.raw...)}
	put16(in.raw, inMode, unixMode(sIFREG, attr.Mode))
	in.setOwner(attr.UID, attr.GID)
	in.setTimes(t, false)
	in.setFlags(in.flags() &^ (flagVerity | flagHugeFile | flagExtents))
	if err := f.setContent(in, runs, size); err != nil {
		return err
	}
	return f.writeInode(in)
}

// MkdirAll creates path and any missing parents (mkdir -p).
func (f *FS) MkdirAll(path string, attr fs.Attr) error {
	return f.mutate("mkdir", path, func() error {
		clean, err := fs.Clean(path)
		if err != nil {
			return fs.ErrInvalidPath
		}
		comps := fs.Split(clean)
		for i := range comps {
			p := "/" + strings.Join(comps[:i+1], "/")
			last := i == len(comps)-1
			r, err := f.resolve(p, false)
			if err != nil {
				return err
			}
			if r.in != nil && r.in.isSymlink() {
				if r, err = f.resolve(p, true); err != nil {
					return err
				}
				if r.in == nil {
					return fs.ErrExist // dangling symlink in the way
				}
			}
			if r.in != nil {
				if !r.in.isDir() {
					if last {
						return fs.ErrExist
					}
					return fs.ErrNotDir
				}
				continue
			}
			if _, err := f.mkdir(r.parent, r.name, attr); err != nil {
				return err
			}
		}
		return nil
	})
}

// freeEntry resolves the parent directory of path for a new entry:
// fs.ErrExist when path is the root or its name is taken.
func (f *FS) freeEntry(path string) (parent *inode, d *dirModel, name string, err error) {
	parent, name, err = f.parentOf(path)
	if err != nil {
		return nil, nil, "", err
	}
	if parent == nil {
		return nil, nil, "", fs.ErrExist
	}
	if d, err = f.freeName(parent, name); err != nil {
		return nil, nil, "", err
	}
	return parent, d, name, nil
}

// freeName loads directory parent, which must not hold name yet.
func (f *FS) freeName(parent *inode, name string) (*dirModel, error) {
	d, err := f.loadDir(parent)
	if err != nil {
		return nil, err
	}
	if li, _ := d.find(f, name); li >= 0 {
		return nil, fs.ErrExist
	}
	return d, nil
}

// mkdir creates directory name in parent.
func (f *FS) mkdir(parent *inode, name string, attr fs.Attr) (uint32, error) {
	d, err := f.freeName(parent, name)
	if err != nil {
		return 0, err
	}
	if parent.links() >= maxLinks && !f.sb.hasRoCompat(roCompatDirNlink) {
		return 0, errTooManyLinks
	}
	in, err := f.createInode(parent, unixMode(sIFDIR, attr.Mode), attr)
	if err != nil {
		return 0, err
	}
	blocks, err := f.allocBlocks(f.inodeGoal(in.ino), 1)
	if err != nil {
		return 0, err
	}
	blk := blocks[0].phys
	meta, err := f.buildMap(in, []run{{logical: 0, phys: blk, length: 1}}, blk+1)
	if err != nil {
		return 0, err
	}
	if err := f.setBlockCount(in, 1+meta); err != nil {
		return 0, err
	}
	in.setSize(uint64(f.blockSize))
	in.setLinks(2)
	if err := f.writeInode(in); err != nil {
		return 0, err
	}
	f.newDirModel(in.ino, in.generation(), parent.ino, blk)
	if err := f.dirAdd(d, dirEntry{name: name, ino: in.ino, ftype: ftDir}); err != nil {
		return 0, err
	}
	return in.ino, f.adjustDirLinks(d, +1)
}

// adjustDirLinks changes a directory's link count for a subdirectory added
// or removed, with dir_nlink semantics: past 65000 the count is pinned at 1.
func (f *FS) adjustDirLinks(d *dirModel, delta int) error {
	in, err := f.readInode(d.ino)
	if err != nil {
		return err
	}
	n := int(in.links())
	switch {
	case n == 1 && f.sb.hasRoCompat(roCompatDirNlink):
		if delta < 0 {
			subdirs, err := f.countSubdirs(d)
			if err != nil {
				return err
			}
			if subdirs+2 <= maxLinks {
				n = subdirs + 2
			}
		}
	case n+delta > maxLinks:
		if !f.sb.hasRoCompat(roCompatDirNlink) {
			return errTooManyLinks
		}
		n = 1
	default:
		n = max(n+delta, 2)
	}
	in.setLinks(uint16(n))
	return f.writeInode(in)
}

func (f *FS) countSubdirs(d *dirModel) (int, error) {
	n := 0
	for _, l := range d.leaves {
		for _, e := range l.entries {
			if e.ftype == ftDir {
				n++
				continue
			}
			if e.ftype == 0 {
				in, err := f.readInUse(e.ino)
				if err != nil {
					return 0, err
				}
				if in.isDir() {
					n++
				}
			}
		}
	}
	return n, nil
}

// Symlink creates a symbolic link at path pointing to target.
func (f *FS) Symlink(target, path string, attr fs.Attr) error {
	return f.mutate("symlink", path, func() error {
		if target == "" || strings.IndexByte(target, 0) >= 0 || len(target) >= fs.MaxPathLen || len(target) >= f.blockSize {
			return fmt.Errorf("symlink target of %d bytes: %w", len(target), fs.ErrInvalidPath)
		}
		parent, d, name, err := f.freeEntry(path)
		if err != nil {
			return err
		}
		perm := attr.Mode
		if perm.Perm() == 0 {
			perm |= 0o777
		}
		in, err := f.createInode(parent, unixMode(sIFLNK, perm), attr)
		if err != nil {
			return err
		}
		if len(target) < iBlockLen {
			copy(in.iblock(), target)
			in.setSize(uint64(len(target)))
		} else {
			blocks, err := f.allocBlocks(f.inodeGoal(in.ino), 1)
			if err != nil {
				return err
			}
			blk := blocks[0].phys
			copy(f.blockNew(blk), target)
			if err := f.setContent(in, []run{{logical: 0, phys: blk, length: 1}}, uint64(len(target))); err != nil {
				return err
			}
		}
		in.setLinks(1)
		if err := f.writeInode(in); err != nil {
			return err
		}
		return f.dirAdd(d, dirEntry{name: name, ino: in.ino, ftype: direntType(sIFLNK)})
	})
}

// Mknod creates a device node, FIFO or socket.
func (f *FS) Mknod(path string, mode iofs.FileMode, rdev uint64, attr fs.Attr) error {
	return f.mutate("mknod", path, func() error {
		var typ uint16
		switch {
		case mode&iofs.ModeCharDevice != 0:
			typ = sIFCHR
		case mode&iofs.ModeDevice != 0:
			typ = sIFBLK
		case mode&iofs.ModeNamedPipe != 0:
			typ = sIFIFO
		case mode&iofs.ModeSocket != 0:
			typ = sIFSOCK
		default:
			return fmt.Errorf("mknod needs a device, FIFO or socket mode, got %v: %w", mode, fs.ErrNotSupported)
		}
		parent, d, name, err := f.freeEntry(path)
		if err != nil {
			return err
		}
		perm := mode & (iofs.ModePerm | iofs.ModeSetuid | iofs.ModeSetgid | iofs.ModeSticky)
		if perm == 0 {
			perm = attr.Mode
		}
		in, err := f.createInode(parent, unixMode(typ, perm), attr)
		if err != nil {
			return err
		}
		if typ == sIFCHR || typ == sIFBLK {
			in.setRdev(rdev)
		}
		in.setLinks(1)
		if err := f.writeInode(in); err != nil {
			return err
		}
		return f.dirAdd(d, dirEntry{name: name, ino: in.ino, ftype: direntType(typ)})
	})
}

// Link creates newPath as another name for the non-directory oldPath.
func (f *FS) Link(oldPath, newPath string) error {
	return f.mutate("link", newPath, func() error {
		op, oname, err := f.parentOf(oldPath)
		if err != nil {
			return err
		}
		if op == nil {
			return fs.ErrIsDir
		}
		oe, found, err := f.lookup(op, oname)
		if err != nil {
			return err
		}
		if !found {
			return fs.ErrNotExist
		}
		src, err := f.readInUse(oe.ino)
		if err != nil {
			return err
		}
		if src.isDir() {
			return fs.ErrIsDir
		}
		if src.links() >= maxLinks {
			return errTooManyLinks
		}
		np, nname, err := f.parentOf(newPath)
		if err != nil {
			return err
		}
		if np == nil {
			return fs.ErrExist
		}
		d, err := f.loadDir(np)
		if err != nil {
			return err
		}
		if li, _ := d.find(f, nname); li >= 0 {
			return fs.ErrExist
		}
		if err := f.dirAdd(d, dirEntry{name: nname, ino: src.ino, ftype: direntType(src.mode())}); err != nil {
			return err
		}
		src, err = f.readInode(src.ino)
		if err != nil {
			return err
		}
		src.setLinks(src.links() + 1)
		return f.writeInode(src)
	})
}

// isEmptyDir reports whether directory in has no entries besides . and ..
func (f *FS) isEmptyDir(in *inode) (bool, error) {
	empty := true
	err := f.iterDir(in, func(e dirEntry) error {
		if e.name != "." && e.name != ".." {
			empty = false
			return errStop
		}
		return nil
	})
	if err == errStop {
		err = nil
	}
	return empty, err
}

// removeDirInode frees an empty directory's inode and blocks.
func (f *FS) removeDirInode(in *inode) error {
	f.dropDirModel(in.ino)
	return f.destroyInode(in)
}

// Remove deletes a file, symlink, device node or empty directory.
func (f *FS) Remove(path string) error {
	return f.mutate("remove", path, func() error {
		parent, name, err := f.parentOf(path)
		if err != nil {
			return err
		}
		if parent == nil {
			return fmt.Errorf("cannot remove the root directory: %w", fs.ErrInvalidPath)
		}
		e, found, err := f.lookup(parent, name)
		if err != nil {
			return err
		}
		if !found {
			return fs.ErrNotExist
		}
		in, err := f.readInUse(e.ino)
		if err != nil {
			return err
		}
		d, err := f.loadDir(parent)
		if err != nil {
			return err
		}
		if in.isDir() {
			empty, err := f.isEmptyDir(in)
			if err != nil {
				return err
			}
			if !empty {
				return fs.ErrNotEmpty
			}
			if err := f.dirRemove(d, name); err != nil {
				return err
			}
			if err := f.removeDirInode(in); err != nil {
				return err
			}
			return f.adjustDirLinks(d, -1)
		}
		if err := f.dirRemove(d, name); err != nil {
			return err
		}
		return f.releaseInode(in)
	})
}

// Rename moves oldPath to newPath, replacing a non-directory (or an empty
// directory, when moving a directory) at newPath.
func (f *FS) Rename(oldPath, newPath string) error {
	return f.mutate("rename", oldPath, func() error {
		oc, err := fs.Clean(oldPath)
		if err != nil {
			return fs.ErrInvalidPath
		}
		nc, err := fs.Clean(newPath)
		if err != nil {
			return fs.ErrInvalidPath
		}
		if oc == "/" || nc == "/" {
			return fmt.Errorf("cannot rename the root directory: %w", fs.ErrInvalidPath)
		}
		op, oname, err := f.parentOf(oc)
		if err != nil {
			return err
		}
		oe, found, err := f.lookup(op, oname)
		if err != nil {
			return err
		}
		if !found {
			return fs.ErrNotExist
		}
		src, err := f.readInUse(oe.ino)
		if err != nil {
			return err
		}
		np, nname, err := f.parentOf(nc)
		if err != nil {
			return err
		}
		if src.isDir() {
			// A directory cannot move below itself.
			for cur, depth := np.ino, 0; ; depth++ {
				if depth > fs.MaxPathLen {
					return corruptf("directory parent chain does not reach the root")
				}
				if cur == src.ino {
					return fmt.Errorf("cannot move a directory into itself: %w", fs.ErrInvalidPath)
				}
				if cur == rootIno {
					break
				}
				pi, err := f.readInUse(cur)
				if err != nil {
					return err
				}
				pe, ok, err := f.lookup(pi, "..")
				if err != nil {
					return err
				}
				if !ok || pe.ino == cur {
					break
				}
				cur = pe.ino
			}
		}
		if ne, exists, err := f.lookup(np, nname); err != nil {
			return err
		} else if exists && ne.ino == src.ino {
			return nil // same file (or another link to it): nothing to do
		}
		od, err := f.loadDir(op)
		if err != nil {
			return err
		}
		nd, err := f.loadDir(np)
		if err != nil {
			return err
		}
		// Look again through the model, which does not depend on the index.
		ne, exists, err := f.lookup(np, nname)
		if err != nil {
			return err
		}
		var dst *inode
		if exists {
			if ne.ino == src.ino {
				return nil
			}
			if dst, err = f.readInUse(ne.ino); err != nil {
				return err
			}
			switch {
			case dst.isDir() && !src.isDir():
				return fs.ErrIsDir
			case !dst.isDir() && src.isDir():
				return fs.ErrNotDir
			case dst.isDir():
				empty, err := f.isEmptyDir(dst)
				if err != nil {
					return err
				}
				if !empty {
					return fs.ErrNotEmpty
				}
			}
		}
		ft := direntType(src.mode())
		if exists {
			if err := f.dirRetarget(nd, nname, src.ino, ft); err != nil {
				return err
			}
			if dst.isDir() {
				if err := f.removeDirInode(dst); err != nil {
					return err
				}
				if err := f.adjustDirLinks(nd, -1); err != nil {
					return err
				}
			} else if err := f.releaseInode(dst); err != nil {
				return err
			}
		} else if err := f.dirAdd(nd, dirEntry{name: nname, ino: src.ino, ftype: ft}); err != nil {
			return err
		}
		if err := f.dirRemove(od, oname); err != nil {
			return err
		}
		if src.isDir() && op.ino != np.ino {
			sd, err := f.loadDir(src)
			if err != nil {
				return err
			}
			f.dirSetParent(sd, np.ino)
			if err := f.adjustDirLinks(od, -1); err != nil {
				return err
			}
			if err := f.adjustDirLinks(nd, +1); err != nil {
				return err
			}
		}
		return nil
	})
}

// changeInode applies fn to the inode at path (not following a final
// symlink).
func (f *FS) changeInode(op, path string, fn func(*inode)) error {
	return f.mutate(op, path, func() error {
		r, err := f.resolve(path, false)
		if err != nil {
			return err
		}
		if r.in == nil {
			return fs.ErrNotExist
		}
		in, err := f.readInode(r.in.ino)
		if err != nil {
			return err
		}
		fn(in)
		return f.writeInode(in)
	})
}

// Chmod sets permission and setuid/setgid/sticky bits.
func (f *FS) Chmod(path string, mode iofs.FileMode) error {
	return f.changeInode("chmod", path, func(in *inode) {
		put16(in.raw, inMode, unixMode(in.fileType(), mode))
	})
}

// Chown sets the owner.
func (f *FS) Chown(path string, uid, gid uint32) error {
	return f.changeInode("chown", path, func(in *inode) { in.setOwner(uid, gid) })
}

// Chtimes sets the modification (and access and change) time.
func (f *FS) Chtimes(path string, mtime time.Time) error {
	return f.changeInode("chtimes", path, func(in *inode) { in.setTimes(mtime, false) })
}
