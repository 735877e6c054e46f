package nfs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	iofs "io/fs"
	"net"
	"net/netip"
	"time"

	"github.com/bakeryhq/bakery/internal/netboot/overlay"
	billy "github.com/go-git/go-billy/v5"
	gonfs "github.com/willscott/go-nfs"
)

// session is one client connection: the go-nfs handler bound to the
// machine the client's address belongs to. go-nfs calls it from one
// goroutine, one request at a time, so its request state needs no lock.
type session struct {
	srv     *Server
	conn    *rpcConn
	remote  netip.Addr
	bound   string // set at accept, never changed
	allowed bool
	checked time.Time

	cur   request
	root  *rootFS
	disks map[string]*diskFS

	listings     [8]listing
	listingsNext int
}

// request is the call go-nfs is handling right now.
type request struct {
	prog, proc uint32
	cred       overlay.Cred
	// sattr is the attributes a CREATE, MKDIR or SYMLINK asked for, with
	// the setuid, setgid and sticky bits go-nfs drops.
	sattr     *sattr3
	createHow uint32
	// existed: the CREATE found an existing file, whose attributes stay.
	existed bool
	// cookie of a READDIR(PLUS): only a continued listing may come from
	// the listing cache; one from the start reads the directory again.
	cookie uint64
}

type listing struct {
	path     string
	verifier uint64
	entries  []iofs.FileInfo
}

var (
	errStale     = errors.New("stale file handle")
	errBadHandle = errors.New("malformed file handle")
	errNotMine   = errors.New("this connection does not serve that machine")
)

// machine returns the machine this connection serves, verifying at most
// once per RecheckEvery that the client's address still belongs to it.
func (s *session) machine() (string, bool) {
	if s.bound == "" {
		return "", false
	}
	if time.Since(s.checked) >= s.srv.cfg.RecheckEvery {
		s.checked = time.Now()
		id, ok := s.srv.cfg.Backend.MachineFor(s.remote)
		was := s.allowed
		s.allowed = ok && id == s.bound
		if was && !s.allowed {
			s.srv.refuse(s.bound, s.remote, "the address no longer belongs to this machine", nil)
		}
	}
	return s.bound, s.allowed
}

func (s *session) currentRoot() (*overlay.Root, error) {
	m, ok := s.machine()
	if !ok {
		return nil, errNotMine
	}
	return s.srv.cfg.Backend.Root(m)
}

func (s *session) cred() *overlay.Cred { return &s.cur.cred }

// File handles.
const (
	fhVersion = 1
	fhRoot    = 1
	fhDisk    = 2
	fhRootLen = 18
)

func rootHandle(gen, id uint64) []byte {
	h := make([]byte, fhRootLen)
	h[0], h[1] = fhVersion, fhRoot
	binary.BigEndian.PutUint64(h[2:], gen)
	binary.BigEndian.PutUint64(h[10:], id)
	return h
}

func diskHandle(ino uint64, name string, file bool) []byte {
	h := make([]byte, 12+len(name))
	h[0], h[1] = fhVersion, fhDisk
	binary.BigEndian.PutUint64(h[2:], ino)
	if file {
		h[10] = 1
	}
	h[11] = byte(len(name))
	copy(h[12:], name)
	return h
}

// target is what a handle names.
type target struct {
	root *overlay.Root
	id   uint64
	disk *diskFS
	file bool // the disk's image file (else its directory)
}

// resolve checks a handle against the machine this connection serves.
func (s *session) resolve(fh []byte) (target, error) {
	m, ok := s.machine()
	if !ok {
		s.srv.refuse(s.bound, s.remote, "request from an address that is not this machine's", nil)
		return target{}, errNotMine
	}
	if len(fh) < 2 || fh[0] != fhVersion {
		return target{}, errBadHandle
	}
	switch fh[1] {
	case fhRoot:
		if len(fh) != fhRootLen {
			return target{}, errBadHandle
		}
		root, err := s.srv.cfg.Backend.Root(m)
		if err != nil {
			return target{}, fmt.Errorf("%w: %v", errStale, err)
		}
		if binary.BigEndian.Uint64(fh[2:]) != root.Generation() {
			return target{}, errStale
		}
		return target{root: root, id: binary.BigEndian.Uint64(fh[10:])}, nil
	case fhDisk:
		if len(fh) < 12 || len(fh) != 12+int(fh[11]) {
			return target{}, errBadHandle
		}
		d, err := s.disk(string(fh[12:]))
		if err != nil {
			return target{}, err
		}
		if ino, err := fileIno(d.path); err != nil || ino != binary.BigEndian.Uint64(fh[2:]) {
			return target{}, errStale
		}
		return target{disk: d, file: fh[10] == 1}, nil
	}
	return target{}, errBadHandle
}

// disk returns the export of one of the machine's extra disks.
func (s *session) disk(name string) (*diskFS, error) {
	m, ok := s.machine()
	if !ok {
		return nil, errNotMine
	}
	p, err := s.srv.cfg.Backend.DiskPath(m, name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errStale, err)
	}
	if d, ok := s.disks[name]; ok && d.path == p {
		return d, nil
	}
	if s.disks == nil {
		s.disks = map[string]*diskFS{}
	}
	d := &diskFS{s: s, name: name, path: p}
	s.disks[name] = d
	return d, nil
}

// Mount answers MNT for the machine's own exports only.
func (s *session) Mount(ctx context.Context, conn net.Conn, req gonfs.MountRequest) (gonfs.MountStatus, billy.Filesystem, []gonfs.AuthFlavor) {
	p := string(req.Dirpath)
	want, disk, ok := parseExport(p)
	if !ok {
		s.srv.refuse("", s.remote, "mount of "+p+": no such export (want /machines/<id>)", map[string]string{"path": p})
		return gonfs.MountStatusErrNoEnt, nil, nil
	}
	m, allowed := s.machine()
	if !allowed || m != want {
		reason := fmt.Sprintf("mount of %s from %s, which is not this machine's address", p, s.remote)
		if m != "" && allowed {
			reason = fmt.Sprintf("mount of %s from %s, the address of machine %s", p, s.remote, m)
		}
		s.srv.refuse(want, s.remote, reason, map[string]string{"path": p})
		return gonfs.MountStatusErrAcces, nil, nil
	}
	flavors := []gonfs.AuthFlavor{gonfs.AuthFlavorUnix}
	if disk != "" {
		d, err := s.disk(disk)
		if err != nil {
			return gonfs.MountStatusErrNoEnt, nil, nil
		}
		s.srv.cfg.Backend.Event(m, "nfs.mount", "extra disk "+disk+" mounted over NFS from "+s.remote.String(), map[string]string{"path": p, "remote": s.remote.String()})
		return gonfs.MountStatusOk, d, flavors
	}
	if _, err := s.srv.cfg.Backend.Root(m); err != nil {
		s.srv.refuse(m, s.remote, "mount of "+p+": "+err.Error(), map[string]string{"path": p})
		return gonfs.MountStatusErrNoEnt, nil, nil
	}
	s.srv.cfg.Backend.Event(m, "nfs.mount", "root mounted over NFS from "+s.remote.String(), map[string]string{"path": p, "remote": s.remote.String()})
	return gonfs.MountStatusOk, s.root, flavors
}

// Change returns the attribute changer of the root export.
func (s *session) Change(f billy.Filesystem) billy.Change {
	if f == billy.Filesystem(s.root) {
		return s.root
	}
	return nil
}

// FSStat reports the space of the disk the layers live on.
func (s *session) FSStat(ctx context.Context, f billy.Filesystem, st *gonfs.FSStat) error {
	var dir string
	var used uint64
	switch f := f.(type) {
	case *rootFS:
		root, err := s.currentRoot()
		if err != nil {
			return err
		}
		dir = root.Dir()
		if u, err := root.Base().Filesystem().Usage(); err == nil {
			used = uint64(u.TotalBytes - u.FreeBytes)
		}
	case *diskFS:
		dir = f.path
	default:
		return nil
	}
	space, ok := hostSpace(dir)
	if !ok {
		return nil
	}
	st.AvailableSize = space.avail
	st.FreeSize = space.free
	st.TotalSize = used + space.total
	st.TotalFiles, st.FreeFiles, st.AvailableFiles = space.files, space.freeFiles, space.freeFiles
	return nil
}

var invalidHandle = []byte{fhVersion, 0}

// ToHandle names a path of an export by its id.
func (s *session) ToHandle(f billy.Filesystem, path []string) []byte {
	switch f := f.(type) {
	case *rootFS:
		root, err := s.currentRoot()
		if err != nil {
			return invalidHandle
		}
		id, err := root.Walk(path)
		if err != nil {
			return invalidHandle
		}
		return rootHandle(root.Generation(), id)
	case *diskFS:
		ino, err := fileIno(f.path)
		if err != nil {
			return invalidHandle
		}
		return diskHandle(ino, f.name, len(path) > 0)
	}
	return invalidHandle
}

// FromHandle turns a handle into its current path.
func (s *session) FromHandle(fh []byte) (billy.Filesystem, []string, error) {
	t, err := s.resolve(fh)
	if err != nil {
		return nil, nil, err
	}
	if t.disk != nil {
		if t.file {
			return t.disk, []string{t.disk.fileName()}, nil
		}
		return t.disk, []string{}, nil
	}
	p, err := t.root.PathOf(t.id)
	if err != nil {
		return nil, nil, err
	}
	return s.root, p, nil
}

// InvalidateHandle does nothing: handles name ids, which stay valid while
// the object has a name (go-nfs calls it after every rename and remove).
func (s *session) InvalidateHandle(billy.Filesystem, []byte) error { return nil }

// HandleLimit is large: handles are not cached, so there is no limit
// (go-nfs also bounds READDIR pages by half of it).
func (s *session) HandleLimit() int { return 1 << 24 }

// VerifierFor remembers a directory listing for READDIR paging, so that
// a listing read in many pages is read from the layer once.
func (s *session) VerifierFor(path string, contents []iofs.FileInfo) uint64 {
	h := fnv.New64a()
	h.Write([]byte(path))
	for _, c := range contents {
		h.Write([]byte{0})
		h.Write([]byte(c.Name()))
		if fi, ok := c.(*fileInfo); ok {
			var b [16]byte
			binary.BigEndian.PutUint64(b[:], fi.a.ID)
			binary.BigEndian.PutUint64(b[8:], uint64(fi.a.Mtime.UnixNano()))
			h.Write(b[:])
		}
	}
	v := h.Sum64() | 1 // never 0: go-nfs treats 0 as "no verifier"
	s.listings[s.listingsNext] = listing{path: path, verifier: v, entries: contents}
	s.listingsNext = (s.listingsNext + 1) % len(s.listings)
	return v
}

// DataForVerifier returns a remembered listing.
func (s *session) DataForVerifier(path string, verifier uint64) []iofs.FileInfo {
	if s.cur.cookie == 0 {
		return nil
	}
	for _, l := range s.listings {
		if l.verifier == verifier && l.path == path {
			return l.entries
		}
	}
	return nil
}

var (
	_ gonfs.Handler        = (*session)(nil)
	_ gonfs.CachingHandler = (*session)(nil)
)
