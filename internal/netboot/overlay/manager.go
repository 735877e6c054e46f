package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
)

// ErrNoLayer is returned for a machine that has no root layer (no image
// assigned, or not provisioned for an NFS root).
var ErrNoLayer = errors.New("machine has no root layer")

// ErrShrink refuses making an extra disk smaller (it would cut off data).
var ErrShrink = errors.New("an extra disk can grow but not shrink")

// Manager keeps the machines' layers and extra disks under one directory
// (DATA/machines): <id>/layer and <id>/disks/<name>.img.
type Manager struct {
	dir       string
	bases     *Bases
	imagePath func(key string) string
	opts      Options

	mu    sync.Mutex
	roots map[string]*Root
	trash sync.WaitGroup
}

// NewManager opens the machines directory. imagePath maps an image key
// (sha256) to its file.
func NewManager(dir string, bases *Bases, imagePath func(key string) string, opts Options) (*Manager, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("machines directory: %w", err)
	}
	m := &Manager{dir: dir, bases: bases, imagePath: imagePath, opts: opts, roots: map[string]*Root{}}
	// Layers discarded just before a crash are still waiting to be removed.
	old, _ := filepath.Glob(filepath.Join(dir, "*", "layer.old-*"))
	for _, p := range old {
		m.removeLater(p)
	}
	return m, nil
}

// dirName maps a machine id to a directory name (MAC colons become dashes).
func dirName(id string) string { return strings.ReplaceAll(id, ":", "-") }

func (m *Manager) machineDir(id string) string { return filepath.Join(m.dir, dirName(id)) }

// LayerDir is where a machine's layer lives.
func (m *Manager) LayerDir(id string) string { return filepath.Join(m.machineDir(id), "layer") }

func (m *Manager) removeLater(p string) {
	m.trash.Add(1)
	go func() {
		defer m.trash.Done()
		os.RemoveAll(p)
	}()
}

// provisionedMark is written into a layer directory once provisioning
// finished and is durable; a layer without it (a crash mid-way) does not
// count and is provisioned again.
const provisionedMark = "provisioned"

// HasLayer reports whether the machine has a (completely provisioned) layer.
func (m *Manager) HasLayer(id string) bool {
	_, err := os.Stat(filepath.Join(m.LayerDir(id), provisionedMark))
	return err == nil
}

// Root returns the machine's open root, opening its layer on first use.
func (m *Manager) Root(id string) (*Root, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.roots[id]; r != nil {
		return r, nil
	}
	if !m.HasLayer(id) {
		return nil, fmt.Errorf("machine %s: %w", id, ErrNoLayer)
	}
	r, err := OpenRoot(m.LayerDir(id), func(key string) (*Base, error) { return m.bases.Get(key, m.imagePath(key)) }, m.opts)
	if err != nil {
		return nil, err
	}
	m.roots[id] = r
	return r, nil
}

// discardLocked closes and removes the machine's layer, if any. The
// directory is renamed away at once and deleted in the background, so a
// reset costs the same whatever the layer holds.
func (m *Manager) discardLocked(id string) error {
	if r := m.roots[id]; r != nil {
		r.Close()
		delete(m.roots, id)
	}
	dir := m.LayerDir(id)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	old := dir + ".old-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := os.Rename(dir, old); err != nil {
		return fmt.Errorf("discard layer of %s: %w", id, err)
	}
	m.removeLater(old)
	return nil
}

// Provision gives the machine a fresh layer over image key (discarding
// any layer it had) and applies the adjustments. It returns the root and
// the list of adjustments made.
func (m *Manager) Provision(id, key string, adj Adjustments) (*Root, []string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.discardLocked(id); err != nil {
		return nil, nil, err
	}
	base, err := m.bases.Get(key, m.imagePath(key))
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(m.machineDir(id), 0o750); err != nil {
		return nil, nil, err
	}
	r, err := CreateRoot(m.LayerDir(id), base, m.opts)
	if err != nil {
		return nil, nil, err
	}
	// The adjustments are written without a sync each, then synced once
	// (with the content) before the layer is marked provisioned.
	r.db.NoSync = true
	done, err := r.Provision(adj)
	r.db.NoSync = false
	if err == nil {
		err = r.Flush()
	}
	if err == nil {
		err = r.db.Sync()
	}
	if err == nil {
		err = writeMark(m.LayerDir(id))
	}
	if err != nil {
		r.Close()
		m.discardLocked(id)
		return nil, nil, fmt.Errorf("provision %s: %w", id, err)
	}
	m.roots[id] = r
	return r, done, nil
}

// Discard removes the machine's layer (its extra disks stay).
func (m *Manager) Discard(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.discardLocked(id)
}

// RemoveMachine removes the machine's layer and extra disks.
func (m *Manager) RemoveMachine(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.discardLocked(id); err != nil {
		return err
	}
	dir := m.machineDir(id)
	if _, err := os.Lstat(dir); err != nil {
		return nil
	}
	old := dir + ".removed-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := os.Rename(dir, old); err != nil {
		return fmt.Errorf("remove machine directory: %w", err)
	}
	m.removeLater(old)
	return nil
}

// Flush flushes every open layer.
func (m *Manager) Flush() {
	m.mu.Lock()
	roots := make([]*Root, 0, len(m.roots))
	for _, r := range m.roots {
		roots = append(roots, r)
	}
	m.mu.Unlock()
	for _, r := range roots {
		r.Flush()
	}
}

// Close closes every layer and waits for background removals.
func (m *Manager) Close() {
	m.mu.Lock()
	for id, r := range m.roots {
		r.Close()
		delete(m.roots, id)
	}
	m.mu.Unlock()
	m.trash.Wait()
}

var diskNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// CheckDiskName validates an extra disk's name.
func CheckDiskName(name string) error {
	if !diskNameRE.MatchString(name) {
		return fmt.Errorf("disk name %q: want 1-32 of a-z, 0-9, '-' and '_', starting with a letter or digit", name)
	}
	return nil
}

// Disk sizes are rounded up to whole MiB; bounds keep typos harmless.
const (
	MinDiskSize = int64(1) << 20
	MaxDiskSize = int64(64) << 40
)

// DiskSize rounds a requested disk size and checks its bounds.
func DiskSize(size int64) (int64, error) {
	if size < MinDiskSize || size > MaxDiskSize {
		return 0, fmt.Errorf("disk size %d: want 1 MiB to 64 TiB", size)
	}
	return (size + MinDiskSize - 1) &^ (MinDiskSize - 1), nil
}

// DiskPath is where an extra disk's image file lives.
func (m *Manager) DiskPath(id, name string) string {
	return filepath.Join(m.machineDir(id), "disks", name+".img")
}

// PutDisk creates a sparse disk image of size bytes, or grows an existing
// one. It reports whether it created or changed the file.
func (m *Manager) PutDisk(id, name string, size int64) (changed bool, err error) {
	if err := CheckDiskName(name); err != nil {
		return false, err
	}
	if size, err = DiskSize(size); err != nil {
		return false, err
	}
	p := m.DiskPath(id, name)
	if fi, err := os.Stat(p); err == nil {
		switch {
		case fi.Size() == size:
			return false, nil
		case fi.Size() > size:
			return false, fmt.Errorf("disk %s is %d bytes; %d is smaller: %w", name, fi.Size(), size, ErrShrink)
		}
		return true, os.Truncate(p, size)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return false, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return false, fmt.Errorf("create disk %s: %w", name, err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(p)
		return false, fmt.Errorf("create disk %s: %w", name, err)
	}
	return true, f.Close()
}

// DeleteDisk removes an extra disk.
func (m *Manager) DeleteDisk(id, name string) error {
	if err := CheckDiskName(name); err != nil {
		return err
	}
	if err := os.Remove(m.DiskPath(id, name)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("disk %s: %w", name, fs.ErrNotExist)
		}
		return err
	}
	return nil
}

func writeMark(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, provisionedMark), os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
