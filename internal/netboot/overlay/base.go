// Package overlay gives every netbooted machine its own writable root
// filesystem without copying the image: the image's root filesystem,
// read straight from the image file through the engine and shared
// read-only by every machine (a Base), plus a per-machine copy-on-write
// layer (a Root) under DATA/machines/<id>/layer.
//
// # Identity
//
// Objects are named by 64-bit ids, not paths. An object of the image keeps
// its ext4 inode number as its id (below 2^32) for its whole life, also
// after it is changed, copied up or renamed; objects created in the layer
// get ids from 2^32 up. The NFS server builds its file handles from these
// ids, so handles survive renames and server restarts.
//
// # The layer
//
// The layer stores metadata in a bbolt file (layer/meta.db) and only file
// content in host files (layer/data/<id>), so uid, gid, mode (setuid
// included), device numbers and times are kept exactly even when bakery
// runs unprivileged:
//
//   - inodes: id -> full attributes of every object the layer created or
//     changed (an image object gets a record on its first change);
//   - dirents: (directory id, name) -> child id, or 0 for a whiteout that
//     hides the image's entry of that name.
//
// A directory's listing is the image's listing of the same id (if it is an
// image directory) with the layer's entries laid over it. Renaming an image
// directory is therefore O(1): a whiteout at the old name and an entry at the
// new name pointing to the same id, whose children still come from the
// image. Writing an image file copies its content up once (sparsely) into
// layer/data/<id>; deleting leaves a whiteout; hard links share the id.
//
// Metadata changes are written to bbolt (and synced) before an operation
// returns, except the time and size updates of writes, which are kept in
// memory and written with the next change or within a second (Flush). File
// content is synced by Flush too, like an NFS server exporting with async.
package overlay

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/image"
)

// LayerIDBase is the first id given to objects created in a layer; ids
// below it are inode numbers of the image's root filesystem.
const LayerIDBase = uint64(1) << 32

// ErrStale is returned (wrapped) for ids that name nothing any more.
var ErrStale = errors.New("stale file handle")

// Base is one image's root filesystem, opened once read-only and shared by
// every machine's layer. Directory listings are loaded on first use and
// kept in memory (the image never changes); open files are cached.
type Base struct {
	key     string
	fsys    fs.Filesystem
	closer  io.Closer
	rootIno uint64

	mu    sync.RWMutex
	nodes map[uint64]*baseNode // ino -> where it was first seen and its attributes
	dirs  map[uint64]*baseDir  // directory ino -> listing

	indexMu sync.Mutex
	indexed bool

	files *refCache[fs.File]
}

type baseNode struct {
	parent uint64
	name   string
	info   fs.FileInfo
}

// baseDir is a directory listing sorted by name.
type baseDir struct {
	names []string
	inos  []uint64
}

func (d *baseDir) lookup(name string) (uint64, bool) {
	i := sort.SearchStrings(d.names, name)
	if i < len(d.names) && d.names[i] == name {
		return d.inos[i], true
	}
	return 0, false
}

// NewBase wraps an opened root filesystem. closer (may be nil) is closed by
// Close. The filesystem must be safe for concurrent reads and report inode
// numbers (ext4 does).
func NewBase(key string, fsys fs.Filesystem, closer io.Closer) (*Base, error) {
	root, err := fsys.Lstat("/")
	if err != nil {
		return nil, fmt.Errorf("root filesystem of image %s: %w", key, err)
	}
	if root.Ino == 0 || root.Ino >= LayerIDBase {
		return nil, fmt.Errorf("root filesystem of image %s (%s) does not report usable inode numbers", key, fsys.Type())
	}
	root.Name = ""
	b := &Base{
		key: key, fsys: fsys, closer: closer, rootIno: root.Ino,
		nodes: map[uint64]*baseNode{root.Ino: {parent: root.Ino, info: root}},
		dirs:  map[uint64]*baseDir{},
		files: newRefCache[fs.File](256),
	}
	return b, nil
}

// Key is the image's sha256.
func (b *Base) Key() string { return b.key }

// RootID is the id of the root directory.
func (b *Base) RootID() uint64 { return b.rootIno }

// Filesystem is the underlying read-only filesystem.
func (b *Base) Filesystem() fs.Filesystem { return b.fsys }

// Close closes the image.
func (b *Base) Close() error {
	b.files.closeAll(func(f fs.File) { f.Close() })
	if b.closer != nil {
		return b.closer.Close()
	}
	return nil
}

// node returns what is known about ino, indexing the whole image once if
// ino was never seen (a handle from before a restart).
func (b *Base) node(ino uint64) (*baseNode, error) { return b.nodeMaybeIndex(ino, true) }

func (b *Base) nodeMaybeIndex(ino uint64, allowIndex bool) (*baseNode, error) {
	b.mu.RLock()
	n, ok := b.nodes[ino]
	b.mu.RUnlock()
	if ok {
		return n, nil
	}
	if ino >= LayerIDBase || ino == 0 || !allowIndex {
		return nil, fmt.Errorf("image object %d: %w", ino, ErrStale)
	}
	if err := b.index(); err != nil {
		return nil, err
	}
	b.mu.RLock()
	n, ok = b.nodes[ino]
	b.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("image object %d: %w", ino, ErrStale)
	}
	return n, nil
}

// index walks the whole image once so that every inode number can be
// placed. It runs only when a client presents an id this process has not
// seen yet, typically right after a restart.
func (b *Base) index() error {
	b.indexMu.Lock()
	defer b.indexMu.Unlock()
	if b.indexed {
		return nil
	}
	queue := []uint64{b.rootIno}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		d, err := b.loadDir(dir, false)
		if err != nil {
			return err
		}
		for _, ino := range d.inos {
			b.mu.RLock()
			n := b.nodes[ino]
			b.mu.RUnlock()
			if n != nil && n.info.IsDir() && n.parent == dir {
				queue = append(queue, ino)
			}
		}
	}
	b.indexed = true
	return nil
}

// path returns an image path of ino (any one of its names).
func (b *Base) path(ino uint64) (string, error) { return b.pathMaybeIndex(ino, true) }

func (b *Base) pathMaybeIndex(ino uint64, allowIndex bool) (string, error) {
	var parts []string
	for ino != b.rootIno {
		n, err := b.nodeMaybeIndex(ino, allowIndex)
		if err != nil {
			return "", err
		}
		parts = append(parts, n.name)
		if len(parts) > fs.MaxPathLen/2 {
			return "", fmt.Errorf("image object %d: path too deep: %w", ino, fs.ErrCorrupt)
		}
		ino = n.parent
	}
	p := ""
	for i := len(parts) - 1; i >= 0; i-- {
		p += "/" + parts[i]
	}
	if p == "" {
		p = "/"
	}
	return p, nil
}

// dir returns the listing of directory ino, loading it on first use.
func (b *Base) dir(ino uint64) (*baseDir, error) { return b.loadDir(ino, true) }

// loadDir is dir; index calls it with allowIndex false, since it holds the
// index lock and every directory it visits is already placed.
func (b *Base) loadDir(ino uint64, allowIndex bool) (*baseDir, error) {
	b.mu.RLock()
	d, ok := b.dirs[ino]
	b.mu.RUnlock()
	if ok {
		return d, nil
	}
	p, err := b.pathMaybeIndex(ino, allowIndex)
	if err != nil {
		return nil, err
	}
	ents, err := b.fsys.ReadDir(p)
	if err != nil {
		return nil, fmt.Errorf("image directory %s: %w", p, err)
	}
	d = &baseDir{names: make([]string, 0, len(ents)), inos: make([]uint64, 0, len(ents))}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name < ents[j].Name })
	b.mu.Lock()
	defer b.mu.Unlock()
	if old, ok := b.dirs[ino]; ok {
		return old, nil
	}
	for _, e := range ents {
		if e.Ino == 0 || e.Ino >= LayerIDBase {
			return nil, fmt.Errorf("image directory %s: entry %q has inode number %d: %w", p, e.Name, e.Ino, fs.ErrCorrupt)
		}
		d.names = append(d.names, e.Name)
		d.inos = append(d.inos, e.Ino)
		if _, seen := b.nodes[e.Ino]; !seen {
			b.nodes[e.Ino] = &baseNode{parent: ino, name: e.Name, info: e}
		}
	}
	b.dirs[ino] = d
	return d, nil
}

// lookup finds name in image directory dir.
func (b *Base) lookup(dir uint64, name string) (uint64, bool, error) {
	d, err := b.dir(dir)
	if err != nil {
		return 0, false, err
	}
	ino, ok := d.lookup(name)
	return ino, ok, nil
}

// info returns the image's attributes of ino.
func (b *Base) info(ino uint64) (fs.FileInfo, error) {
	n, err := b.node(ino)
	if err != nil {
		return fs.FileInfo{}, err
	}
	return n.info, nil
}

// open returns the image's content of regular file ino; release it with
// the returned function.
func (b *Base) open(ino uint64) (fs.File, func(), error) {
	if f, release, ok := b.files.get(ino); ok {
		return f, release, nil
	}
	p, err := b.path(ino)
	if err != nil {
		return nil, nil, err
	}
	f, err := b.fsys.Open(p)
	if err != nil {
		return nil, nil, err
	}
	f, release := b.files.put(ino, f, func(f fs.File) { f.Close() })
	return f, release, nil
}

// Bases opens each image's root filesystem once and shares it.
type Bases struct {
	open Opener
	mu   sync.Mutex
	m    map[string]*baseEntry
}

type baseEntry struct {
	once sync.Once
	b    *Base
	err  error
}

// Opener opens the root filesystem of the image file at path read-only.
type Opener func(key, path string) (*Base, error)

// EngineOpener opens an image with bakery's image engine, read-only, and
// returns its root partition. The image file is never written.
func EngineOpener(key, path string) (*Base, error) {
	im, err := image.Open(path, image.Options{})
	if err != nil {
		return nil, err
	}
	root, err := im.Role(image.RoleRoot)
	if err != nil {
		im.Close()
		return nil, fmt.Errorf("image %s has no root filesystem for an NFS root: %w", key, err)
	}
	b, err := NewBase(key, root, im)
	if err != nil {
		im.Close()
		return nil, err
	}
	return b, nil
}

// NewBases returns a registry opening images with open (EngineOpener if nil).
func NewBases(open Opener) *Bases {
	if open == nil {
		open = EngineOpener
	}
	return &Bases{open: open, m: map[string]*baseEntry{}}
}

// Get returns the shared base of image key stored at path.
func (bs *Bases) Get(key, path string) (*Base, error) {
	bs.mu.Lock()
	e, ok := bs.m[key]
	if !ok {
		e = &baseEntry{}
		bs.m[key] = e
	}
	bs.mu.Unlock()
	e.once.Do(func() { e.b, e.err = bs.open(key, path) })
	if e.err != nil {
		bs.mu.Lock()
		if bs.m[key] == e {
			delete(bs.m, key) // let a later call try again
		}
		bs.mu.Unlock()
		return nil, e.err
	}
	return e.b, nil
}

// Forget closes an image's base (after the image was deleted; no layer
// uses it any more).
func (bs *Bases) Forget(key string) {
	bs.mu.Lock()
	e, ok := bs.m[key]
	delete(bs.m, key)
	bs.mu.Unlock()
	if ok && e.b != nil {
		e.b.Close()
	}
}

// Close closes every base.
func (bs *Bases) Close() {
	bs.mu.Lock()
	m := bs.m
	bs.m = map[string]*baseEntry{}
	bs.mu.Unlock()
	for _, e := range m {
		if e.b != nil {
			e.b.Close()
		}
	}
}
