// Package fat implements bakery's fs.Filesystem for FAT12, FAT16 and FAT32
// volumes (Raspberry Pi boot partitions, EFI system partitions) in user
// space, on top of the FAT engine of github.com/diskfs/go-diskfs.
//
// # Division of labour
//
// go-diskfs (filesystem/fat12, fat16, fat32 v1.9.4) creates entries and
// directories and writes file data: for every WriteFile, MkdirAll and Rename
// we build a go-diskfs fat12.FileSystem with fat12.NewFileSystem whose root is
// the directory being changed, backed by our own fat12.FATTable, and call its
// OpenFile/Write, Mkdir or OpenFile. Format uses fat12.Create, fat16.Create
// and fat32.Create. Everything go-diskfs gets wrong is repaired in this
// package (each piece says why in its own comments):
//
//   - table.go: our FATTable (go-diskfs has none for FAT16 worth using, and
//     its FAT12/32 tables can allocate past the end of the volume).
//   - chain.go: bounded chain walks and a whole-FAT check (no loops, no
//     cross-links) before any change; go-diskfs follows chains unboundedly.
//   - dir.go, names.go: our own directory reader (long names with checksums,
//     8.3 aliases, NT case flags, CP437) used for every lookup and read, and
//     canonical re-encoding of directories after go-diskfs rewrote them.
//   - engine.go: the bridge. It compacts directories go-diskfs would panic
//     on, masks 8.3 names it cannot handle, hands it ASCII stand-ins for
//     non-ASCII names, and rebuilds the directory afterwards from a snapshot
//     so that nothing but the new entry changes.
//   - ops.go: Remove, Chtimes and Chmod are done here (go-diskfs Remove leaks
//     the file's clusters and panics on an emptied FAT32 root); timestamps
//     are set from fs.Options (go-diskfs stamps time.Now); replaced files are
//     removed first (go-diskfs does not truncate); empty files get no
//     cluster; clashing 8.3 aliases are renamed; ".." of FAT32 root children
//     points to 0; the FSInfo sector is kept correct; and before the first
//     change the whole tree is checked for entries sharing clusters.
//   - journal.go: diffs every write against the device, so only changed
//     sectors are buffered, and undoes a failed operation.
//   - format.go: fixes go-diskfs Create output (stray cluster 2, FAT32 FAT
//     one entry too small, uninitialised FSInfo, serial number, label entry).
//
// # Failures
//
// Every mutating call is atomic with respect to the device buffer: if it
// returns an error, the FAT, the directories and the FSInfo sector in the
// device buffer are exactly as before the call (the journal writes the saved
// sectors back) and the in-memory state is rolled back too, so the
// Filesystem stays usable. Only data written into clusters that were free
// before the call may remain in the buffer; nothing refers to them. Callers
// that discard the device buffer on error (disk.Disk.Discard) get the image
// byte-identical to its last commit.
//
// # Used extents
//
// UsedExtents (fs.UsedMapper) lists what flashing must write even where
// the image file has holes: everything before the data region (reserved
// sectors with the boot sector, FSInfo and backup boot sector, every FAT
// copy, the FAT12/16 root directory) and every cluster whose FAT entry is
// not 0. The free part of a FAT is zeros, so a sparse image has holes
// there; a block map of the data ranges alone leaves a reused card's old
// bytes in the FAT, which fsck.fat then reports as a corrupt filesystem
// (the tests reproduce this).
//
// # Concurrency
//
// All methods are safe for concurrent use: reads (Stat, ReadDir, Open,
// ReadFile and reads of open files) run concurrently, mutations exclusively.
package fat

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"sort"
	"strings"
	"sync"

	"github.com/bakeryhq/bakery/internal/fs"
)

// FS is an open FAT filesystem. It implements fs.Filesystem.
type FS struct {
	mu     sync.RWMutex
	dev    fs.Device
	opts   fs.Options
	g      *geometry
	t      *table
	j      *journal
	label  string
	gen    uint64 // bumped by every successful mutation
	closed bool

	// Directories parsed by read calls, shared until the next change.
	cacheMu    sync.Mutex
	cache      map[dirRef]*dirData
	cacheBytes int

	// Open files, so an operation that frees or reuses their clusters can
	// mark them stale.
	filesMu sync.Mutex
	files   map[*File]struct{}

	wbuf        []byte // WriteFile's copy buffer (writes are exclusive)
	checkErr    error  // why the filesystem may not be changed (analyze, checkTree)
	treeChecked bool
	fsInfoOK    bool // FAT32 FSInfo sector present and valid
}

var _ fs.Filesystem = (*FS)(nil)

// Open opens the FAT filesystem on dev. The boot sector is validated before
// anything else is read; the FAT type is chosen by cluster count as the
// Microsoft specification prescribes.
func Open(dev fs.Device, opts fs.Options) (f *FS, err error) {
	defer func() {
		if r := recover(); r != nil {
			recovered(r)
			f, err = nil, fmt.Errorf("open FAT filesystem: %w (internal error: %v)", fs.ErrCorrupt, r)
		}
	}()
	g, err := readGeometry(dev)
	if err != nil {
		return nil, fmt.Errorf("open FAT filesystem: %w", err)
	}
	raw := make([]byte, g.fatBytes)
	if err := readFull(dev, raw, g.activeFAT); err != nil {
		return nil, fmt.Errorf("open FAT filesystem: read FAT: %w", err)
	}
	t := newTable(g.bits, raw, g.clusters)
	t.root = g.rootCluster
	f = &FS{dev: dev, opts: opts, g: g, t: t}
	if err := t.analyze(); err != nil {
		f.checkErr = fmt.Errorf("refusing to change a filesystem whose FAT is inconsistent (run fsck.fat): %w", err)
	}
	f.j = &journal{dev: dev, g: g, t: t}

	root, err := f.readDir(f.rootRef())
	if err != nil {
		return nil, fmt.Errorf("open FAT filesystem: root directory: %w", err)
	}
	if l := root.label(); l != nil {
		f.label = l.name
	} else {
		f.label = g.bpbLabel
	}
	if f.label == "NO NAME" {
		f.label = ""
	}
	if g.bits == 32 && g.fsInfoSector != 0 {
		b := make([]byte, 512)
		if readFull(dev, b, g.fsInfoSector*g.bytesPerSector) == nil {
			f.fsInfoOK = string(b[0:4]) == "RRaA" && string(b[484:488]) == "rrAa" &&
				b[510] == 0x55 && b[511] == 0xAA
		}
	}
	return f, nil
}

func (f *FS) rootRef() dirRef {
	if f.g.bits == 32 {
		return dirRef{cluster: f.g.rootCluster}
	}
	return dirRef{fixed: true}
}

func (f *FS) readFull(p []byte, off int64) error { return readFull(f.dev, p, off) }

// Type is "fat12", "fat16" or "fat32".
func (f *FS) Type() string { return f.g.typeName() }

// Label is the volume label (the root directory's label entry, else the boot
// sector's), "" when there is none.
func (f *FS) Label() string { return f.label }

// UUID is the volume serial number as Linux shows it, "ABCD-1234".
func (f *FS) UUID() string {
	if !f.g.hasSerial {
		return ""
	}
	return fmt.Sprintf("%04X-%04X", f.g.serial>>16, f.g.serial&0xFFFF)
}

// Usage reports the data area and its free part. FAT has no inode limit.
func (f *FS) Usage() (fs.Usage, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return fs.Usage{}, errClosed
	}
	bpc := f.g.bytesPerCluster
	return fs.Usage{
		TotalBytes: int64(f.g.clusters) * bpc,
		FreeBytes:  int64(f.t.free) * bpc,
	}, nil
}

var errClosed = errors.New("fat: filesystem is closed")

// panicHook, if set (by the fuzz tests), sees every panic we recover.
var panicHook func(any)

func recovered(r any) {
	if panicHook != nil {
		panicHook(r)
	}
}

// guard turns a panic (from go-diskfs or from us) into an error wrapping
// fs.ErrCorrupt, as a last line of defence against crafted images.
func guard(op, path string, err *error) {
	if r := recover(); r != nil {
		recovered(r)
		*err = fs.PathErr(op, path, fmt.Errorf("%w (internal error: %v)", fs.ErrCorrupt, r))
	}
}

// resolved is the result of walking a path: the entry (nil for the root),
// the directory holding it, and the clusters of every directory on the way.
type resolved struct {
	e      *dirent
	parent *dirData
	chain  []uint32 // first clusters of the directories walked, root first
}

func (r *resolved) isRoot() bool { return r.e == nil }

// maxCacheBytes bounds the directories kept by the read cache.
const maxCacheBytes = 8 << 20

// cachedDir is readDir for read-only callers: directories are parsed once
// and shared until the filesystem changes. The result must not be modified.
func (f *FS) cachedDir(ref dirRef) (*dirData, error) {
	f.cacheMu.Lock()
	d := f.cache[ref]
	f.cacheMu.Unlock()
	if d != nil {
		return d, nil
	}
	d, err := f.readDir(ref)
	if err != nil {
		return nil, err
	}
	d.buildIndex()
	f.cacheMu.Lock()
	if f.cache == nil || f.cacheBytes+len(d.buf) > maxCacheBytes {
		f.cache, f.cacheBytes = map[dirRef]*dirData{}, 0
	}
	f.cache[ref] = d
	f.cacheBytes += len(d.buf)
	f.cacheMu.Unlock()
	return d, nil
}

// dropCache forgets cached directories; called with the write lock held
// before anything changes.
func (f *FS) dropCache() {
	f.cacheMu.Lock()
	f.cache, f.cacheBytes = nil, 0
	f.cacheMu.Unlock()
}

// resolve walks the cleaned path p, reading fresh directories that the
// caller may change.
func (f *FS) resolve(p string) (*resolved, error) { return f.walk(p, false) }

// lookupPath walks p through the read cache; for read-only callers.
func (f *FS) lookupPath(p string) (*resolved, error) { return f.walk(p, true) }

func (f *FS) walk(p string, cached bool) (*resolved, error) {
	read := f.readDir
	if cached {
		read = f.cachedDir
	}
	d, err := read(f.rootRef())
	if err != nil {
		return nil, err
	}
	res := &resolved{chain: []uint32{d.ref.cluster}}
	parts := fs.Split(p)
	for i, name := range parts {
		e := d.lookup(name)
		if e == nil {
			return nil, fs.ErrNotExist
		}
		if i == len(parts)-1 {
			res.e, res.parent = e, d
			return res, nil
		}
		if !e.isDir() {
			return nil, fs.ErrNotDir
		}
		if e.cluster == 0 {
			return nil, corruptf("directory %q has no cluster", e.name)
		}
		if d, err = read(dirRef{cluster: e.cluster}); err != nil {
			return nil, err
		}
		res.chain = append(res.chain, e.cluster)
	}
	return res, nil
}

// openDir reads the directory entry e refers to.
func (f *FS) openDir(e *dirent) (*dirData, error) {
	if e.cluster == 0 {
		// ".." style reference to the root, or a corrupt entry.
		return nil, corruptf("directory %q has no cluster", e.name)
	}
	return f.readDir(dirRef{cluster: e.cluster})
}

// dirOf reads the directory a resolved path names.
func (f *FS) dirOf(r *resolved) (*dirData, error) {
	if r.isRoot() {
		return f.readDir(f.rootRef())
	}
	if !r.e.isDir() {
		return nil, fs.ErrNotDir
	}
	return f.openDir(r.e)
}

func (f *FS) info(e *dirent, d *dirData) fs.FileInfo {
	fi := fs.FileInfo{Name: e.name, ModTime: e.modTime(), Nlink: 1, Ino: f.ino(d, e)}
	switch {
	case e.isDir():
		fi.Mode = iofs.ModeDir | 0o755
		fi.Nlink = 2
	case e.attr()&attrReadOnly != 0:
		fi.Mode = 0o444
		fi.Size = int64(e.size)
	default:
		fi.Mode = 0o644
		fi.Size = int64(e.size)
	}
	return fi
}

// ino numbers an entry by the position of its 8.3 slot on the device, as
// Linux does; the root is 1.
func (f *FS) ino(d *dirData, e *dirent) uint64 {
	off := int64(e.slot) * 32
	if d.ref.fixed {
		return uint64(f.g.rootOffset+off) / 32
	}
	bpc := f.g.bytesPerCluster
	return uint64(f.g.clusterOffset(d.clusters[off/bpc])+off%bpc) / 32
}

func (f *FS) rootInfo() fs.FileInfo {
	return fs.FileInfo{Name: "/", Mode: iofs.ModeDir | 0o755, Nlink: 2, Ino: 1}
}

func (f *FS) readLock(op, path string) (string, error) {
	p, err := fs.Clean(path)
	if err != nil {
		return "", fs.PathErr(op, path, fs.ErrInvalidPath)
	}
	f.mu.RLock()
	if f.closed {
		f.mu.RUnlock()
		return "", fs.PathErr(op, path, errClosed)
	}
	return p, nil
}

// Stat describes path. FAT has no links, so Lstat is the same.
func (f *FS) Stat(path string) (fi fs.FileInfo, err error) {
	p, err := f.readLock("stat", path)
	if err != nil {
		return fs.FileInfo{}, err
	}
	defer f.mu.RUnlock()
	defer guard("stat", p, &err)
	r, err := f.lookupPath(p)
	if err != nil {
		return fs.FileInfo{}, fs.PathErr("stat", p, err)
	}
	if r.isRoot() {
		return f.rootInfo(), nil
	}
	return f.info(r.e, r.parent), nil
}

// Lstat is Stat: FAT has no symbolic links.
func (f *FS) Lstat(path string) (fs.FileInfo, error) { return f.Stat(path) }

// ReadDir lists a directory sorted by name, without "." and "..".
func (f *FS) ReadDir(path string) (out []fs.FileInfo, err error) {
	p, err := f.readLock("readdir", path)
	if err != nil {
		return nil, err
	}
	defer f.mu.RUnlock()
	defer guard("readdir", p, &err)
	r, err := f.lookupPath(p)
	if err != nil {
		return nil, fs.PathErr("readdir", p, err)
	}
	var d *dirData
	switch {
	case r.isRoot():
		d, err = f.cachedDir(f.rootRef())
	case !r.e.isDir():
		err = fs.ErrNotDir
	case r.e.cluster == 0:
		err = corruptf("directory %q has no cluster", r.e.name)
	default:
		d, err = f.cachedDir(dirRef{cluster: r.e.cluster})
	}
	if err != nil {
		return nil, fs.PathErr("readdir", p, err)
	}
	for _, e := range d.ents {
		// In a corrupt directory two entries can answer to the same name;
		// list only the one a path reaches.
		if e.listed() && d.lookup(e.name) == e {
			out = append(out, f.info(e, d))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ReadLink always fails: FAT has no symbolic links.
func (f *FS) ReadLink(path string) (string, error) {
	if _, err := fs.Clean(path); err != nil {
		return "", fs.PathErr("readlink", path, fs.ErrInvalidPath)
	}
	return "", fs.PathErr("readlink", path, fs.ErrNotSupported)
}

// Symlink always fails: FAT has no symbolic links.
func (f *FS) Symlink(target, path string, attr fs.Attr) error {
	return fs.PathErr("symlink", path, fs.ErrNotSupported)
}

// Open opens a regular file for reading.
func (f *FS) Open(path string) (file fs.File, err error) {
	p, err := f.readLock("open", path)
	if err != nil {
		return nil, err
	}
	defer f.mu.RUnlock()
	defer guard("open", p, &err)
	h, err := f.openLocked(p)
	if err != nil {
		return nil, fs.PathErr("open", p, err)
	}
	f.filesMu.Lock()
	if f.files == nil {
		f.files = map[*File]struct{}{}
	}
	f.files[h] = struct{}{}
	f.filesMu.Unlock()
	return h, nil
}

func (f *FS) openLocked(p string) (*File, error) {
	r, err := f.lookupPath(p)
	if err != nil {
		return nil, err
	}
	if r.isRoot() || r.e.isDir() {
		return nil, fs.ErrIsDir
	}
	h := &File{fs: f, path: p, size: int64(r.e.size), cluster: r.e.cluster}
	if err := h.mapClusters(); err != nil {
		return nil, err
	}
	return h, nil
}

// ReadFile reads a whole regular file.
func (f *FS) ReadFile(path string) (b []byte, err error) {
	p, err := f.readLock("read", path)
	if err != nil {
		return nil, err
	}
	defer f.mu.RUnlock()
	defer guard("read", p, &err)
	h, err := f.openLocked(p)
	if err != nil {
		return nil, fs.PathErr("read", p, err)
	}
	b = make([]byte, h.size)
	if _, err := h.readAtLocked(b, 0); err != nil && err != io.EOF {
		return nil, fs.PathErr("read", p, err)
	}
	return b, nil
}

// Close makes the Filesystem unusable. Every operation already wrote its
// changes (FAT, directories, FSInfo) to the device buffer; if anything was
// changed, Close writes the FSInfo sector once more from the final FAT so it
// is right however the session ended. The caller commits the device.
func (f *FS) Close() (err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	defer guard("close", "/", &err)
	f.closed = true
	if f.opts.ReadOnly || f.gen == 0 {
		return nil
	}
	f.t.begin()
	f.j.begin()
	if err := f.writeFSInfo(); err != nil {
		f.t.rollback()
		_ = f.j.rollback()
		return fmt.Errorf("close FAT filesystem: %w", err)
	}
	f.j.commit()
	f.t.commit()
	return nil
}

// sameName reports whether two names are the same to FAT.
func sameName(a, b string) bool { return strings.EqualFold(a, b) }
