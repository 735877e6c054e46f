package overlay

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
	bolt "go.etcd.io/bbolt"
)

// layerSchema is the layer database layout version.
const layerSchema = 1

var (
	bucketMeta    = []byte("meta")
	bucketInodes  = []byte("inodes")
	bucketDirents = []byte("dirents")
	keySchema     = []byte("schema")
	keyImage      = []byte("image")
	keyGen        = []byte("generation")
	keyNext       = []byte("next_id")
	keyCreated    = []byte("created")
)

// Root is one machine's root filesystem: a Base plus its copy-on-write
// layer. All methods are safe for concurrent use.
type Root struct {
	base *Base
	dir  string
	db   *bolt.DB
	gen  uint64
	now  func() time.Time

	mu        sync.RWMutex
	closed    bool
	inodes    map[uint64]*inode
	dirents   map[uint64]map[string]uint64 // 0 = whiteout
	links     map[uint64][]link            // names the layer gave each id
	nextID    uint64
	whiteouts int
	dirty     map[uint64]struct{} // inode records changed in memory only
	unsynced  map[uint64]struct{} // data files written since the last Flush

	copyMu  sync.Mutex
	copying map[uint64]*copyOp

	fds *refCache[*os.File]
}

type link struct {
	dir  uint64
	name string
}

type copyOp struct {
	done chan struct{}
	err  error
}

// Options configure a Root.
type Options struct {
	// Now is the clock for times of changes; default time.Now.
	Now func() time.Time
}

func (o Options) clock() func() time.Time {
	if o.Now != nil {
		return o.Now
	}
	return time.Now
}

// CreateRoot makes a fresh, empty layer in dir (which must not exist) over
// base. It costs the same whatever the image's size: a directory and a
// small database.
func CreateRoot(dir string, base *Base, opts Options) (*Root, error) {
	if _, err := os.Lstat(dir); err == nil {
		return nil, fmt.Errorf("create layer %s: %w", dir, fs.ErrExist)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		return nil, fmt.Errorf("create layer: %w", err)
	}
	var g [8]byte
	if _, err := rand.Read(g[:]); err != nil {
		return nil, err
	}
	db, err := openDB(filepath.Join(dir, "meta.db"))
	if err != nil {
		return nil, err
	}
	now := opts.clock()()
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		for _, b := range [][]byte{bucketInodes, bucketDirents} {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		puts := map[string][]byte{
			string(keySchema): []byte(strconv.Itoa(layerSchema)), string(keyImage): []byte(base.Key()),
			string(keyGen): g[:], string(keyNext): u64(LayerIDBase), string(keyCreated): []byte(now.UTC().Format(time.RFC3339Nano)),
		}
		for k, v := range puts {
			if err := meta.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("create layer %s: %w", dir, err)
	}
	db.Close()
	return OpenRoot(dir, func(string) (*Base, error) { return base, nil }, opts)
}

// OpenRoot opens an existing layer; getBase returns the image it was made
// for (by the image key recorded in the layer).
func OpenRoot(dir string, getBase func(key string) (*Base, error), opts Options) (*Root, error) {
	db, err := openDB(filepath.Join(dir, "meta.db"))
	if err != nil {
		return nil, err
	}
	var key string
	err = db.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			key = string(meta.Get(keyImage))
		}
		return nil
	})
	if err != nil || key == "" {
		db.Close()
		return nil, fmt.Errorf("layer %s: no image recorded: %w", dir, fs.ErrCorrupt)
	}
	base, err := getBase(key)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("layer %s: %w", dir, err)
	}
	r := &Root{
		base: base, dir: dir, db: db, now: opts.clock(),
		copying: map[uint64]*copyOp{}, fds: newRefCache[*os.File](128),
	}
	if err := r.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("layer %s: %w", dir, err)
	}
	r.cleanData()
	return r, nil
}

func openDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open layer database %s: %w", path, err)
	}
	return db, nil
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func direntKey(dir uint64, name string) []byte {
	k := make([]byte, 8+len(name))
	binary.BigEndian.PutUint64(k, dir)
	copy(k[8:], name)
	return k
}

// load reads the whole layer into memory.
func (r *Root) load() error {
	r.inodes = map[uint64]*inode{}
	r.dirents = map[uint64]map[string]uint64{}
	r.links = map[uint64][]link{}
	r.dirty = map[uint64]struct{}{}
	r.unsynced = map[uint64]struct{}{}
	r.whiteouts = 0
	return r.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return fmt.Errorf("%w: no meta bucket", fs.ErrCorrupt)
		}
		if v, _ := strconv.Atoi(string(meta.Get(keySchema))); v != layerSchema {
			return fmt.Errorf("layer schema %q; this bakery reads %d", meta.Get(keySchema), layerSchema)
		}
		if img := string(meta.Get(keyImage)); img != r.base.Key() {
			return fmt.Errorf("layer was made for image %s, not %s", img, r.base.Key())
		}
		g, next := meta.Get(keyGen), meta.Get(keyNext)
		if len(g) != 8 || len(next) != 8 {
			return fmt.Errorf("%w: bad generation or id counter", fs.ErrCorrupt)
		}
		r.gen = binary.BigEndian.Uint64(g)
		r.nextID = binary.BigEndian.Uint64(next)
		err := tx.Bucket(bucketInodes).ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				return fmt.Errorf("%w: inode key %x", fs.ErrCorrupt, k)
			}
			in := &inode{}
			if err := json.Unmarshal(v, in); err != nil {
				return fmt.Errorf("%w: inode %x: %v", fs.ErrCorrupt, k, err)
			}
			r.inodes[binary.BigEndian.Uint64(k)] = in
			return nil
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketDirents).ForEach(func(k, v []byte) error {
			if len(k) < 9 || len(v) != 8 {
				return fmt.Errorf("%w: directory entry %x", fs.ErrCorrupt, k)
			}
			dir, name, id := binary.BigEndian.Uint64(k), string(k[8:]), binary.BigEndian.Uint64(v)
			m := r.dirents[dir]
			if m == nil {
				m = map[string]uint64{}
				r.dirents[dir] = m
			}
			m[name] = id
			if id == 0 {
				r.whiteouts++
			} else {
				r.links[id] = append(r.links[id], link{dir, name})
			}
			return nil
		})
	})
}

// cleanData removes what an interrupted copy-up or create left in data/
// (temporary files, content no record points to) and takes content sizes
// from the files: a size change of a write is recorded lazily, so after a
// crash the file is the truth.
func (r *Root) cleanData() {
	ents, _ := os.ReadDir(filepath.Join(r.dir, "data"))
	for _, e := range ents {
		id, err := strconv.ParseUint(e.Name(), 16, 64)
		if err == nil && len(e.Name()) == 16 {
			if in, ok := r.inodes[id]; ok && in.Data {
				if fi, err := e.Info(); err == nil && fi.Size() != in.Size {
					in.Size = fi.Size()
					r.dirty[id] = struct{}{}
				}
				continue
			}
		}
		os.Remove(filepath.Join(r.dir, "data", e.Name()))
	}
}

func (r *Root) dataPath(id uint64) string {
	return filepath.Join(r.dir, "data", fmt.Sprintf("%016x", id))
}

// Generation identifies this layer: a fresh layer (after a reset) has a new
// one, so file handles of the old layer stop working.
func (r *Root) Generation() uint64 { return r.gen }

// Base is the image below the layer.
func (r *Root) Base() *Base { return r.base }

// RootID is the id of the root directory.
func (r *Root) RootID() uint64 { return r.base.rootIno }

// Dir is the layer directory.
func (r *Root) Dir() string { return r.dir }

// changes lists the records an operation touched; commit writes their
// in-memory state (or deletes them where memory has none).
type changes struct {
	inodes  []uint64
	dirents []link
	next    bool
	// dropData are content files to delete once the change is durable.
	dropData []uint64
}

func (ch *changes) inode(id uint64) { ch.inodes = append(ch.inodes, id) }

func (ch *changes) dirent(dir uint64, name string) { ch.dirents = append(ch.dirents, link{dir, name}) }

// commitLocked writes ch and every pending in-memory change in one synced
// transaction. On failure the layer is reloaded from the database, so
// memory never claims what the disk does not have.
func (r *Root) commitLocked(ch *changes) error {
	err := r.db.Update(func(tx *bolt.Tx) error {
		ib, db := tx.Bucket(bucketInodes), tx.Bucket(bucketDirents)
		put := func(id uint64) error {
			if in, ok := r.inodes[id]; ok {
				raw, err := json.Marshal(in)
				if err != nil {
					return err
				}
				return ib.Put(u64(id), raw)
			}
			return ib.Delete(u64(id))
		}
		for id := range r.dirty {
			if err := put(id); err != nil {
				return err
			}
		}
		for _, id := range ch.inodes {
			if err := put(id); err != nil {
				return err
			}
		}
		for _, d := range ch.dirents {
			if id, ok := r.dirents[d.dir][d.name]; ok {
				if err := db.Put(direntKey(d.dir, d.name), u64(id)); err != nil {
					return err
				}
			} else if err := db.Delete(direntKey(d.dir, d.name)); err != nil {
				return err
			}
		}
		if ch.next {
			return tx.Bucket(bucketMeta).Put(keyNext, u64(r.nextID))
		}
		return nil
	})
	if err != nil {
		if lerr := r.load(); lerr != nil {
			r.closed = true
		}
		if errors.Is(err, syscall.ENOSPC) {
			return fmt.Errorf("layer %s: %w", r.dir, fs.ErrNoSpace)
		}
		return fmt.Errorf("layer %s: write metadata: %w", r.dir, err)
	}
	clear(r.dirty)
	for _, id := range ch.dropData {
		r.fds.remove(id)
		os.Remove(r.dataPath(id))
		delete(r.unsynced, id)
	}
	return nil
}

// Flush writes deferred metadata (times and sizes of writes) and syncs the
// content written since the last Flush. The server calls it every second.
func (r *Root) Flush() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	var err error
	if len(r.dirty) > 0 {
		err = r.commitLocked(&changes{})
	}
	ids := make([]uint64, 0, len(r.unsynced))
	for id := range r.unsynced {
		ids = append(ids, id)
	}
	clear(r.unsynced)
	r.mu.Unlock()
	for _, id := range ids {
		f, release, ferr := r.dataFile(id)
		if ferr != nil {
			continue // deleted meanwhile
		}
		if serr := f.Sync(); serr != nil && err == nil {
			err = serr
		}
		release()
	}
	return err
}

// Close flushes and closes the layer. Later calls fail with ErrClosed.
func (r *Root) Close() error {
	err := r.Flush()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed && r.db == nil {
		return err
	}
	r.closed = true
	r.fds.closeAll(nil)
	if r.db != nil {
		if cerr := r.db.Close(); err == nil {
			err = cerr
		}
		r.db = nil
	}
	return err
}

// dataFile returns the open content file of id.
func (r *Root) dataFile(id uint64) (*os.File, func(), error) {
	if f, release, ok := r.fds.get(id); ok {
		return f, release, nil
	}
	f, err := os.OpenFile(r.dataPath(id), os.O_RDWR, 0)
	if err != nil {
		return nil, nil, err
	}
	f, release := r.fds.put(id, f, func(f *os.File) { f.Close() })
	return f, release, nil
}

// Usage is what a layer holds.
type Usage struct {
	// Bytes is the disk space of the layer's content files and database.
	Bytes int64 `json:"bytes"`
	// Files is the number of objects the layer created or changed.
	Files int `json:"files"`
	// Whiteouts is the number of image entries the layer hides (deleted).
	Whiteouts int `json:"whiteouts"`
	// Data is the number of objects whose content is in the layer.
	Data int `json:"data"`
}

// Usage reports the layer's size.
func (r *Root) Usage() (Usage, error) {
	r.mu.RLock()
	u := Usage{Whiteouts: r.whiteouts}
	for _, in := range r.inodes {
		if in.Nlink == 0 {
			continue
		}
		u.Files++
		if in.Data {
			u.Data++
		}
	}
	r.mu.RUnlock()
	err := filepath.WalkDir(r.dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			u.Bytes += allocated(fi)
		}
		return nil
	})
	return u, err
}

// checkName validates one path component a client gives.
func checkName(name string) error {
	switch {
	case len(name) > fs.MaxNameLen:
		return ErrNameTooLong
	case name == "" || name == "." || name == "..", strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("name %q: %w", name, fs.ErrInvalidPath)
	}
	return nil
}
