// Package bootfiles serves files out of stored images for netboot: each
// image is opened once through the image engine and shared read-only, files
// are read straight from its boot (or root) filesystem without extracting
// anything to disk, and hot files are kept in a size-bounded in-memory LRU
// cache. It also renders the per-machine cmdline.txt and config.txt.
package bootfiles

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"strings"
	"sync"

	"github.com/bakeryhq/bakery/internal/fs"
)

// Partition roles a Location can name.
const (
	PartBoot = "boot"
	PartRoot = "root"
)

// Location names a file in an image: the partition role and the path.
type Location struct {
	Part string // boot or root
	Path string // absolute, e.g. /start4.elf
}

func (l Location) String() string { return l.Part + ":" + l.Path }

// ParseLocation parses "boot:/path" or "root:/path".
func ParseLocation(s string) (Location, error) {
	part, path, ok := strings.Cut(s, ":")
	if !ok || (part != PartBoot && part != PartRoot) {
		return Location{}, fmt.Errorf("location %q: want boot:/path or root:/path", s)
	}
	clean, err := fs.Clean(path)
	if err != nil {
		return Location{}, fmt.Errorf("location %q: %w", s, err)
	}
	return Location{Part: part, Path: clean}, nil
}

// Image is an opened image as the library needs it. Filesystems returned
// are used under the library's per-image lock, so they need not be safe for
// concurrent use.
type Image interface {
	Filesystem(part string) (fs.Filesystem, error)
	Close() error
}

// Opener opens an image file read-only.
type Opener func(path string) (Image, error)

// ErrNotExist is returned (wrapped) for files that are not in the image.
var ErrNotExist = iofs.ErrNotExist

// File is an open file ready to be served. Call Close when done.
type File struct {
	io.ReaderAt
	Size  int64
	close func()
}

// Close releases the file.
func (f *File) Close() {
	if f.close != nil {
		f.close()
		f.close = nil
	}
}

// Stats are cache counters for metrics.
type Stats struct {
	Hits, Misses   uint64
	Bytes, Entries int64
	OpenImages     int
}

// Library shares opened images and caches their hot files.
type Library struct {
	open Opener

	mu     sync.Mutex
	images map[string]*entry // by image key (sha256)

	cache *lru
	// maxCached is the largest file that goes into the cache; bigger files
	// are streamed from the image on every read.
	maxCached int64
}

type entry struct {
	mu   sync.Mutex // serialises filesystem access
	path string
	im   Image
	err  error
	refs int
	gone bool // Forget was called; close when refs drop to 0
}

// NewLibrary returns a library caching at most cacheBytes of file data.
func NewLibrary(open Opener, cacheBytes int64) *Library {
	if cacheBytes < 0 {
		cacheBytes = 0
	}
	return &Library{open: open, images: map[string]*entry{}, cache: newLRU(cacheBytes), maxCached: cacheBytes / 4}
}

// acquire returns the opened image for key, opening it on first use.
func (l *Library) acquire(key, path string) (*entry, error) {
	l.mu.Lock()
	e, ok := l.images[key]
	if !ok {
		e = &entry{path: path}
		l.images[key] = e
	}
	e.refs++
	l.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.im == nil && e.err == nil {
		e.im, e.err = l.open(path)
	}
	if e.err != nil {
		err := e.err
		l.release(key, e)
		l.mu.Lock()
		// Let the next request try again (the file may be fixed or replaced).
		if l.images[key] == e {
			delete(l.images, key)
		}
		l.mu.Unlock()
		return nil, fmt.Errorf("open image %s: %w", path, err)
	}
	return e, nil
}

func (l *Library) release(key string, e *entry) {
	l.mu.Lock()
	e.refs--
	closeNow := e.refs == 0 && e.gone
	l.mu.Unlock()
	if closeNow && e.im != nil {
		e.mu.Lock()
		e.im.Close()
		e.im = nil
		e.mu.Unlock()
	}
}

// Forget drops an image (after its deletion): cached files go at once, the
// image is closed when the last transfer reading it ends.
func (l *Library) Forget(key string) {
	l.cache.dropPrefix(key + "\x00")
	l.mu.Lock()
	e, ok := l.images[key]
	if ok {
		delete(l.images, key)
		e.gone = true
	}
	closeNow := ok && e.refs == 0
	l.mu.Unlock()
	if closeNow && e.im != nil {
		e.mu.Lock()
		e.im.Close()
		e.im = nil
		e.mu.Unlock()
	}
}

// Close closes every image.
func (l *Library) Close() {
	l.mu.Lock()
	keys := make([]string, 0, len(l.images))
	for k := range l.images {
		keys = append(keys, k)
	}
	l.mu.Unlock()
	for _, k := range keys {
		l.Forget(k)
	}
}

// Stats returns cache counters.
func (l *Library) Stats() Stats {
	st := l.cache.stats()
	l.mu.Lock()
	st.OpenImages = len(l.images)
	l.mu.Unlock()
	return st
}

// Open opens a file of the image stored at path (key is its sha256). Small
// files come from, or go into, the cache.
func (l *Library) Open(key, path string, loc Location) (*File, error) {
	ck := key + "\x00" + loc.String()
	if b, ok := l.cache.get(ck); ok {
		return &File{ReaderAt: bytesReaderAt(b), Size: int64(len(b))}, nil
	}
	e, err := l.acquire(key, path)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	// Another request may have filled the cache while we waited for the lock.
	if b, ok := l.cache.get(ck); ok {
		e.mu.Unlock()
		l.release(key, e)
		return &File{ReaderAt: bytesReaderAt(b), Size: int64(len(b))}, nil
	}
	f, size, err := openIn(e.im, loc)
	if err != nil {
		e.mu.Unlock()
		l.release(key, e)
		return nil, err
	}
	if size <= l.maxCached {
		b := make([]byte, size)
		_, err := readFull(f, b)
		f.Close()
		e.mu.Unlock()
		l.release(key, e)
		if err != nil {
			return nil, fmt.Errorf("read %s from %s: %w", loc, path, err)
		}
		l.cache.put(ck, b)
		return &File{ReaderAt: bytesReaderAt(b), Size: size}, nil
	}
	e.mu.Unlock()
	// Too big to cache: stream it, holding the image until Close.
	return &File{
		ReaderAt: &lockedReaderAt{mu: &e.mu, r: f},
		Size:     size,
		close: func() {
			e.mu.Lock()
			f.Close()
			e.mu.Unlock()
			l.release(key, e)
		},
	}, nil
}

// ReadFile returns a whole file, at most limit bytes.
func (l *Library) ReadFile(key, path string, loc Location, limit int64) ([]byte, error) {
	f, err := l.Open(key, path, loc)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Size > limit {
		return nil, fmt.Errorf("%s: %d bytes is more than the %d-byte limit", loc, f.Size, limit)
	}
	b := make([]byte, f.Size)
	if _, err := f.ReadAt(b, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return b, nil
}

// Exists reports whether a regular file exists in the image.
func (l *Library) Exists(key, path string, loc Location) bool {
	if _, ok := l.cache.get(key + "\x00" + loc.String()); ok {
		return true
	}
	e, err := l.acquire(key, path)
	if err != nil {
		return false
	}
	defer l.release(key, e)
	e.mu.Lock()
	defer e.mu.Unlock()
	fsys, err := e.im.Filesystem(loc.Part)
	if err != nil {
		return false
	}
	fi, err := fsys.Stat(loc.Path)
	return err == nil && fi.IsRegular()
}

func openIn(im Image, loc Location) (fs.File, int64, error) {
	fsys, err := im.Filesystem(loc.Part)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", loc, err)
	}
	fi, err := fsys.Stat(loc.Path)
	if err != nil {
		return nil, 0, err
	}
	if !fi.IsRegular() {
		return nil, 0, &iofs.PathError{Op: "open", Path: loc.Path, Err: ErrNotExist}
	}
	f, err := fsys.Open(loc.Path)
	if err != nil {
		return nil, 0, err
	}
	return f, f.Size(), nil
}

func readFull(r io.ReaderAt, b []byte) (int, error) {
	n, err := r.ReadAt(b, 0)
	if n == len(b) {
		return n, nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

type lockedReaderAt struct {
	mu *sync.Mutex
	r  io.ReaderAt
}

func (l *lockedReaderAt) ReadAt(p []byte, off int64) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.ReadAt(p, off)
}

// lru is a byte-bounded least-recently-used cache of whole files.
type lru struct {
	mu           sync.Mutex
	max, size    int64
	ll           *list.List
	items        map[string]*list.Element
	hits, misses uint64
}

type lruItem struct {
	key string
	val []byte
}

func newLRU(max int64) *lru {
	return &lru{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

func (c *lru) get(k string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[k]; ok {
		c.ll.MoveToFront(el)
		c.hits++
		return el.Value.(*lruItem).val, true
	}
	c.misses++
	return nil, false
}

func (c *lru) put(k string, v []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if int64(len(v)) > c.max {
		return
	}
	if el, ok := c.items[k]; ok {
		c.size -= int64(len(el.Value.(*lruItem).val))
		el.Value.(*lruItem).val = v
		c.size += int64(len(v))
		c.ll.MoveToFront(el)
	} else {
		c.items[k] = c.ll.PushFront(&lruItem{k, v})
		c.size += int64(len(v))
	}
	for c.size > c.max {
		el := c.ll.Back()
		it := el.Value.(*lruItem)
		c.ll.Remove(el)
		delete(c.items, it.key)
		c.size -= int64(len(it.val))
	}
}

func (c *lru) dropPrefix(prefix string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, el := range c.items {
		if strings.HasPrefix(k, prefix) {
			c.size -= int64(len(el.Value.(*lruItem).val))
			c.ll.Remove(el)
			delete(c.items, k)
		}
	}
}

func (c *lru) stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Hits: c.hits, Misses: c.misses, Bytes: c.size, Entries: int64(len(c.items))}
}
