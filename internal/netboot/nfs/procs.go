package nfs

import (
	"errors"
	"os"
	"syscall"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/netboot/overlay"
	gonfs "github.com/willscott/go-nfs"
)

// NFSv3 procedures (RFC 1813).
const (
	procSetattr     = 2
	procAccess      = 4
	procCreate      = 8
	procMkdir       = 9
	procSymlink     = 10
	procMknod       = 11
	procRemove      = 12
	procRmdir       = 13
	procRename      = 14
	procLink        = 15
	procReaddir     = 16
	procReaddirplus = 17
	procFSInfo      = 19
	procPathconf    = 20

	mountDump    = 2
	mountUmntAll = 4
	mountExport  = 5

	createUnchecked = 0
	createGuarded   = 1
	createExclusive = 2

	ftypeBlk  = 3
	ftypeChr  = 4
	ftypeSock = 6
	ftypeFIFO = 7

	access3Read    = 0x01
	access3Lookup  = 0x02
	access3Modify  = 0x04
	access3Extend  = 0x08
	access3Delete  = 0x10
	access3Execute = 0x20
)

// NFS3 status codes.
const (
	nfsOK          = 0
	nfsPerm        = 1
	nfsNoEnt       = 2
	nfsIO          = 5
	nfsAcces       = 13
	nfsExist       = 17
	nfsXDev        = 18
	nfsNotDir      = 20
	nfsIsDir       = 21
	nfsInval       = 22
	nfsFBig        = 27
	nfsNoSpc       = 28
	nfsROFS        = 30
	nfsMLink       = 31
	nfsNameTooLong = 63
	nfsNotEmpty    = 66
	nfsStale       = 70
	nfsBadHandle   = 10001
	nfsNotSync     = 10002
	nfsNotSupp     = 10004
	nfsBadType     = 10007
)

var errXDev = errors.New("cross-export operation")

// statusOf maps an error to an NFS3 status.
func statusOf(err error) uint32 {
	switch {
	case err == nil:
		return nfsOK
	case errors.Is(err, errBadHandle):
		return nfsBadHandle
	case errors.Is(err, errStale), errors.Is(err, errNotMine), errors.Is(err, overlay.ErrStale), errors.Is(err, overlay.ErrClosed):
		return nfsStale
	case errors.Is(err, fs.ErrNotExist):
		return nfsNoEnt
	case errors.Is(err, fs.ErrExist):
		return nfsExist
	case errors.Is(err, fs.ErrNotDir):
		return nfsNotDir
	case errors.Is(err, fs.ErrIsDir):
		return nfsIsDir
	case errors.Is(err, fs.ErrNotEmpty):
		return nfsNotEmpty
	case errors.Is(err, overlay.ErrNotOwner):
		return nfsPerm
	case errors.Is(err, overlay.ErrPermission):
		return nfsAcces
	case errors.Is(err, overlay.ErrNameTooLong):
		return nfsNameTooLong
	case errors.Is(err, fs.ErrInvalidPath), errors.Is(err, overlay.ErrInvalid), errors.Is(err, fs.ErrTooManyLinks):
		return nfsInval
	case errors.Is(err, overlay.ErrFileTooBig):
		return nfsFBig
	case errors.Is(err, fs.ErrNoSpace), errors.Is(err, syscall.ENOSPC):
		return nfsNoSpc
	case errors.Is(err, fs.ErrReadOnly):
		return nfsROFS
	case errors.Is(err, errXDev):
		return nfsXDev
	}
	return nfsIO
}

// sattr3 is a decoded set of attributes to set.
type sattr3 struct {
	mode, uid, gid     *uint32
	size               *uint64
	atimeHow, mtimeHow uint32 // 0 keep, 1 server time, 2 the given time
	atime, mtime       time.Time
}

func readSattr(r *xdrReader) *sattr3 {
	sa := &sattr3{}
	opt := func() *uint32 {
		if r.u32() != 0 {
			v := r.u32()
			return &v
		}
		return nil
	}
	sa.mode, sa.uid, sa.gid = opt(), opt(), opt()
	if r.u32() != 0 {
		v := r.u64()
		sa.size = &v
	}
	readTime := func() (uint32, time.Time) {
		how := r.u32()
		if how == 2 {
			sec, nsec := r.u32(), r.u32()
			return how, time.Unix(int64(sec), int64(nsec))
		}
		return how, time.Time{}
	}
	sa.atimeHow, sa.atime = readTime()
	sa.mtimeHow, sa.mtime = readTime()
	return sa
}

func (sa *sattr3) overlay() overlay.SetAttr {
	out := overlay.SetAttr{Mode: sa.mode, UID: sa.uid, GID: sa.gid}
	if sa.size != nil {
		n := int64(min(*sa.size, uint64(overlay.MaxFileSize)+1))
		out.Size = &n
	}
	switch sa.atimeHow {
	case 1:
		out.AtimeNow = true
	case 2:
		out.Atime = &sa.atime
	}
	switch sa.mtimeHow {
	case 1:
		out.MtimeNow = true
	case 2:
		out.Mtime = &sa.mtime
	}
	return out
}

func fattr(a overlay.Attr) *gonfs.FileAttribute {
	return gonfs.ToFileAttribute(&fileInfo{a: a}, "")
}

// attrOf returns the attributes of a handle's object, nil if unknown.
func (s *session) attrOf(t target) *gonfs.FileAttribute {
	switch {
	case t.root != nil:
		if a, err := t.root.Getattr(t.id); err == nil {
			return fattr(a)
		}
	case t.disk != nil:
		if a, err := t.disk.attr(t.file); err == nil {
			return fattr(a)
		}
	}
	return nil
}

func (s *session) handleOf(root *overlay.Root, id uint64) []byte {
	return rootHandle(root.Generation(), id)
}

// intercept answers the calls bakery handles itself and records the
// credential (and some arguments) of those it passes to go-nfs.
func (s *session) intercept(c callHeader) []byte {
	if c.rpcvers != 2 {
		return deniedReply(c.xid, rejectRPCMismatch, 2, 2)
	}
	switch c.flavor {
	case authSys:
		s.cur = request{cred: overlay.Cred{UID: c.uid, GID: c.gid, Groups: c.gids}}
	case authNull:
		s.cur = request{cred: overlay.Cred{UID: 65534, GID: 65534}}
	default:
		return deniedReply(c.xid, rejectAuthError, authTooWeak)
	}
	s.cur.prog, s.cur.proc = c.prog, c.proc
	switch c.prog {
	case progNFS:
		if c.vers != 3 {
			return mismatchReply(c.xid, 3, 3)
		}
		switch c.proc {
		case procAccess:
			return s.opAccess(c)
		case procSetattr:
			return s.opSetattr(c)
		case procMknod:
			return s.opMknod(c)
		case procRemove:
			return s.opRemove(c, overlay.RemoveFile)
		case procRmdir:
			return s.opRemove(c, overlay.RemoveDir)
		case procRename:
			return s.opRename(c)
		case procLink:
			return s.opLink(c)
		case procPathconf:
			return s.opPathconf(c)
		case procFSInfo:
			return s.opFSInfo(c)
		case procReaddir, procReaddirplus:
			r := &xdrReader{b: c.args}
			r.opaque(64)
			s.cur.cookie = r.u64()
		case procCreate, procMkdir, procSymlink:
			r := &xdrReader{b: c.args}
			r.opaque(64)
			r.opaque(1024)
			if c.proc == procCreate {
				s.cur.createHow = r.u32()
				if s.cur.createHow == createExclusive {
					return nil // go-nfs answers NOTSUPP; clients fall back to GUARDED
				}
			}
			if sa := readSattr(r); r.err == nil {
				s.cur.sattr = sa
			}
		}
		return nil
	case progMount:
		if c.vers != 3 {
			return mismatchReply(c.xid, 3, 3)
		}
		switch c.proc {
		case mountExport:
			return s.opExport(c)
		case mountDump:
			w := &xdrWriter{}
			w.boolean(false)
			return acceptedReply(c.xid, acceptSuccess, w.Bytes())
		case mountUmntAll:
			return acceptedReply(c.xid, acceptSuccess, nil)
		}
		return nil
	}
	return acceptedReply(c.xid, acceptProgUnavail, nil)
}

func garbage(xid uint32) []byte { return acceptedReply(xid, acceptGarbageArgs, nil) }

// reply encodes status plus a body.
func reply(xid, status uint32, body func(w *xdrWriter)) []byte {
	w := &xdrWriter{}
	w.u32(status)
	if body != nil {
		body(w)
	}
	return acceptedReply(xid, acceptSuccess, w.Bytes())
}

func postOp(w *xdrWriter, a *gonfs.FileAttribute) { gonfs.WritePostOpAttrs(w, a) }

func wcc(w *xdrWriter, pre, post *gonfs.FileAttribute) {
	var cache *gonfs.FileCacheAttribute
	if pre != nil {
		cache = pre.AsCache()
	}
	gonfs.WriteWcc(w, cache, post)
}

// accessMask computes ACCESS3 bits from the mode bits for the caller
// (go-nfs grants everything).
func accessMask(c *overlay.Cred, a overlay.Attr, want uint32) uint32 {
	var got uint32
	if overlay.May(c, a, overlay.MayRead) {
		got |= access3Read
	}
	if overlay.May(c, a, overlay.MayWrite) {
		got |= access3Modify | access3Extend
		if a.IsDir() {
			got |= access3Delete
		}
	}
	if overlay.May(c, a, overlay.MayExec) {
		if a.IsDir() {
			got |= access3Lookup
		} else {
			got |= access3Execute
		}
	}
	return got & want
}

func (s *session) opAccess(c callHeader) []byte {
	r := &xdrReader{b: c.args}
	fh := r.opaque(64)
	want := r.u32()
	if r.err != nil {
		return garbage(c.xid)
	}
	t, err := s.resolve(fh)
	if err != nil {
		return reply(c.xid, statusOf(err), func(w *xdrWriter) { postOp(w, nil) })
	}
	var a overlay.Attr
	if t.root != nil {
		a, err = t.root.Getattr(t.id)
	} else {
		a, err = t.disk.attr(t.file)
	}
	if err != nil {
		return reply(c.xid, statusOf(err), func(w *xdrWriter) { postOp(w, nil) })
	}
	mask := accessMask(s.cred(), a, want)
	return reply(c.xid, nfsOK, func(w *xdrWriter) { postOp(w, fattr(a)); w.u32(mask) })
}

func (s *session) opSetattr(c callHeader) []byte {
	r := &xdrReader{b: c.args}
	fh := r.opaque(64)
	sa := readSattr(r)
	guard := r.u32() != 0
	var gsec, gnsec uint32
	if guard {
		gsec, gnsec = r.u32(), r.u32()
	}
	if r.err != nil {
		return garbage(c.xid)
	}
	t, err := s.resolve(fh)
	if err != nil {
		return reply(c.xid, statusOf(err), func(w *xdrWriter) { wcc(w, nil, nil) })
	}
	pre := s.attrOf(t)
	if guard && pre != nil && (pre.Ctime.Seconds != gsec || pre.Ctime.Nseconds != gnsec) {
		return reply(c.xid, nfsNotSync, func(w *xdrWriter) { wcc(w, pre, pre) })
	}
	switch {
	case t.root != nil:
		_, err = t.root.Setattr(s.cred(), t.id, sa.overlay())
	case !t.file || sa.mode != nil || sa.uid != nil || sa.gid != nil || sa.size != nil:
		err = overlay.ErrNotOwner // a disk's directory and file attributes are fixed
	default:
		err = s.diskTimes(t.disk, sa)
	}
	post := s.attrOf(t)
	return reply(c.xid, statusOf(err), func(w *xdrWriter) { wcc(w, pre, post) })
}

func (s *session) diskTimes(d *diskFS, sa *sattr3) error {
	if err := d.mayUse(); err != nil {
		return err
	}
	fi, err := os.Stat(d.path)
	if err != nil {
		return err
	}
	at, mt := fi.ModTime(), fi.ModTime()
	now := time.Now()
	switch sa.atimeHow {
	case 1:
		at = now
	case 2:
		at = sa.atime
	}
	switch sa.mtimeHow {
	case 1:
		mt = now
	case 2:
		mt = sa.mtime
	}
	return os.Chtimes(d.path, at, mt)
}

// dirOp decodes diropargs3 and resolves the directory in a root.
func (s *session) dirOp(r *xdrReader) (target, string, error) {
	fh := r.opaque(64)
	name := r.opaque(1024)
	if r.err != nil {
		return target{}, "", r.err
	}
	t, err := s.resolve(fh)
	if err != nil {
		return target{}, "", err
	}
	if t.root == nil {
		return t, "", overlay.ErrPermission // extra disk exports hold one fixed file
	}
	if len(name) > fs.MaxNameLen {
		return t, "", overlay.ErrNameTooLong
	}
	return t, string(name), nil
}

func (s *session) opMknod(c callHeader) []byte {
	r := &xdrReader{b: c.args}
	t, name, derr := s.dirOp(r)
	if errors.Is(derr, errBadRecord) {
		return garbage(c.xid)
	}
	ftype := r.u32()
	var sa *sattr3
	var rdev uint64
	var typ uint32
	switch ftype {
	case ftypeChr, ftypeBlk:
		sa = readSattr(r)
		major, minor := r.u32(), r.u32()
		rdev = overlay.Mkdev(major, minor)
		typ = overlay.TypeChar
		if ftype == ftypeBlk {
			typ = overlay.TypeBlock
		}
	case ftypeSock, ftypeFIFO:
		sa = readSattr(r)
		typ = overlay.TypeSocket
		if ftype == ftypeFIFO {
			typ = overlay.TypeFIFO
		}
	}
	if r.err != nil {
		return garbage(c.xid)
	}
	pre := s.attrOf(t)
	fail := func(err error) []byte {
		return reply(c.xid, statusOf(err), func(w *xdrWriter) { wcc(w, pre, s.attrOf(t)) })
	}
	if derr != nil {
		return fail(derr)
	}
	if typ == 0 {
		return reply(c.xid, nfsBadType, func(w *xdrWriter) { wcc(w, pre, pre) })
	}
	perm := uint32(0o644)
	if sa.mode != nil {
		perm = *sa.mode & overlay.PermMask
	}
	id, err := t.root.Mknod(s.cred(), t.id, name, typ|perm, rdev)
	if err != nil {
		return fail(err)
	}
	if sa.uid != nil || sa.gid != nil {
		if _, err := t.root.Setattr(s.cred(), id, overlay.SetAttr{UID: sa.uid, GID: sa.gid}); err != nil {
			return fail(err)
		}
	}
	obj := s.attrOf(target{root: t.root, id: id})
	fh := s.handleOf(t.root, id)
	return reply(c.xid, nfsOK, func(w *xdrWriter) {
		w.boolean(true)
		w.opaque(fh)
		postOp(w, obj)
		wcc(w, pre, s.attrOf(t))
	})
}

func (s *session) opRemove(c callHeader, kind overlay.RemoveKind) []byte {
	r := &xdrReader{b: c.args}
	t, name, err := s.dirOp(r)
	if errors.Is(err, errBadRecord) {
		return garbage(c.xid)
	}
	pre := s.attrOf(t)
	if err == nil {
		err = t.root.Remove(s.cred(), t.id, name, kind)
	}
	return reply(c.xid, statusOf(err), func(w *xdrWriter) { wcc(w, pre, s.attrOf(t)) })
}

func (s *session) opRename(c callHeader) []byte {
	r := &xdrReader{b: c.args}
	from, fname, err1 := s.dirOp(r)
	to, tname, err2 := s.dirOp(r)
	if r.err != nil {
		return garbage(c.xid)
	}
	fpre, tpre := s.attrOf(from), s.attrOf(to)
	err := errors.Join(err1, err2)
	if err == nil && from.root != to.root {
		err = errXDev
	}
	if err == nil {
		err = from.root.Rename(s.cred(), from.id, fname, to.id, tname)
	}
	return reply(c.xid, statusOf(err), func(w *xdrWriter) {
		wcc(w, fpre, s.attrOf(from))
		wcc(w, tpre, s.attrOf(to))
	})
}

func (s *session) opLink(c callHeader) []byte {
	r := &xdrReader{b: c.args}
	fh := r.opaque(64)
	dir, name, derr := s.dirOp(r)
	if r.err != nil {
		return garbage(c.xid)
	}
	file, err := s.resolve(fh)
	pre := s.attrOf(dir)
	switch {
	case err != nil:
	case derr != nil:
		err = derr
	case file.root == nil || file.root != dir.root:
		err = errXDev
	default:
		err = dir.root.Link(s.cred(), file.id, dir.id, name)
	}
	return reply(c.xid, statusOf(err), func(w *xdrWriter) {
		postOp(w, s.attrOf(file))
		wcc(w, pre, s.attrOf(dir))
	})
}

// opExport lists the exports this client may mount: its machine's root
// and extra disks (nothing for anyone else).
func (s *session) opExport(c callHeader) []byte {
	w := &xdrWriter{}
	if m, ok := s.machine(); ok {
		paths := []string{ExportPath(m)}
		for _, d := range s.srv.cfg.Backend.Disks(m) {
			paths = append(paths, DiskExportPath(m, d))
		}
		for _, p := range paths {
			w.boolean(true)
			w.opaque([]byte(p))
			w.boolean(true)
			w.opaque([]byte(s.remote.String()))
			w.boolean(false)
		}
	}
	w.boolean(false)
	return acceptedReply(c.xid, acceptSuccess, w.Bytes())
}

// infoReply answers a call whose only argument is a file handle (PATHCONF,
// FSINFO) with the object's post-op attributes followed by body.
func (s *session) infoReply(c callHeader, body func(*xdrWriter)) []byte {
	r := &xdrReader{b: c.args}
	fh := r.opaque(64)
	if r.err != nil {
		return garbage(c.xid)
	}
	t, err := s.resolve(fh)
	if err != nil {
		return reply(c.xid, statusOf(err), func(w *xdrWriter) { postOp(w, nil) })
	}
	return reply(c.xid, nfsOK, func(w *xdrWriter) {
		postOp(w, s.attrOf(t))
		body(w)
	})
}

// opPathconf answers with ext4's limits (go-nfs says one link per file
// and that anyone may chown).
func (s *session) opPathconf(c callHeader) []byte {
	return s.infoReply(c, func(w *xdrWriter) {
		w.u32(65000)         // linkmax
		w.u32(fs.MaxNameLen) // name_max
		w.boolean(true)      // no_trunc
		w.boolean(true)      // chown_restricted
		w.boolean(false)     // case_insensitive
		w.boolean(true)      // case_preserving
	})
}

// opFSInfo advertises 1 MiB transfers (what Linux uses at most, and what
// one record may carry) and 64 KiB directory pages.
func (s *session) opFSInfo(c callHeader) []byte {
	return s.infoReply(c, func(w *xdrWriter) {
		for _, v := range []uint32{maxIO, maxIO, 4096, maxIO, maxIO, 4096, 64 << 10} {
			w.u32(v) // rtmax rtpref rtmult wtmax wtpref wtmult dtpref
		}
		w.u64(uint64(overlay.MaxFileSize))
		w.u32(0) // time_delta: 1 ns
		w.u32(1)
		w.u32(0x1 | 0x2 | 0x8 | 0x10) // hard links, symlinks, homogeneous, can set time
	})
}
