package ext4

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/bakeryhq/bakery/internal/fs"
)

// FS is an open ext2/ext3/ext4 filesystem. It implements fs.Filesystem,
// fs.Linker, fs.Mknoder and fs.Xattrer. All methods are safe for concurrent
// use: reads share a read lock, mutations are exclusive.
type FS struct {
	mu      sync.RWMutex
	dev     fs.Device
	through fs.ThroughWriter
	opts    fs.Options
	sb      *superblock
	devSize int64

	blockSize    int
	blocks       uint64
	firstData    uint64
	bpg          uint64
	ipg          uint32
	groups       uint32
	inodeSize    int
	descSize     int
	descPerBlock uint32
	descBlocks   uint64
	itableBlocks uint64
	flexSize     uint32

	csum         bool // metadata_csum
	gdtCsum      bool // uninit_bg crc16 descriptors
	csumSeed     uint32
	is64         bool
	unsignedHash bool

	// verifyChecksums is on except in fuzzing, where it lets mutated
	// images reach deeper code.
	verifyChecksums bool

	writeErr error // why mutations are refused, nil if writable
	closed   atomic.Bool

	cleanMu  sync.Mutex
	cleanGDT map[uint64][]byte // verified descriptor blocks as on disk

	// Writer state, guarded by mu held exclusively.
	dirty          map[uint64][]byte // metadata blocks to write at Close
	dirs           map[uint32]*dirModel
	pendingFree    map[uint32][]byte // per group: blocks freed this session
	bitmapDirty    map[uint32]bool
	bitmapVerified map[uint64]bool
	sbChanged      bool
	txn            *txn
	txnSeq         uint64
	metaReuse      []uint64 // mapping blocks being recycled by setDirBlocks

	formatLocs *formatLocs // only while Format builds a skeleton
}

var errClosed = errors.New("ext4: filesystem is closed")

// Open reads the filesystem on dev. Unknown incompatible features refuse
// the open; features we cannot maintain (unknown ro_compat, quota,
// bigalloc, a journal that needs recovery, ...) open it read-only, and
// mutations return an error wrapping fs.ErrReadOnly that names the reason.
func Open(dev fs.Device, opts fs.Options) (*FS, error) {
	f, err := open(dev, opts, true)
	if err != nil {
		return nil, err
	}
	return f, nil
}

func open(dev fs.Device, opts fs.Options, verify bool) (*FS, error) {
	f := &FS{
		dev: dev, opts: opts, devSize: dev.Size(), verifyChecksums: verify,
		cleanGDT: map[uint64][]byte{}, dirty: map[uint64][]byte{}, dirs: map[uint32]*dirModel{},
		pendingFree: map[uint32][]byte{}, bitmapDirty: map[uint32]bool{}, bitmapVerified: map[uint64]bool{},
	}
	if tw, ok := dev.(fs.ThroughWriter); ok {
		f.through = tw
	}
	raw := make([]byte, superblockSize)
	if f.devSize < superblockOffset+superblockSize {
		return nil, corruptf("device of %d bytes is too small for an ext filesystem", f.devSize)
	}
	if err := f.readDev(raw, superblockOffset); err != nil {
		return nil, err
	}
	sb, err := parseSuperblock(raw)
	if err != nil {
		return nil, err
	}
	f.sb = sb
	if err := f.initGeometry(); err != nil {
		return nil, err
	}
	root, err := f.readInode(rootIno)
	if err != nil {
		return nil, fmt.Errorf("ext4: root directory: %w", err)
	}
	if !root.isDir() {
		return nil, corruptf("root inode is not a directory")
	}
	f.writeErr = f.whyReadOnly()
	return f, nil
}

func (f *FS) initGeometry() error {
	s := f.sb
	if unknown := s.incompat &^ incompatReadable; unknown != 0 {
		return unsupportedf("filesystem uses incompatible features this tool cannot read: %s", describeFeatures(1, unknown))
	}
	if s.incompat&incompatJournalDev != 0 {
		return unsupportedf("this is an external journal device, not a filesystem")
	}
	if s.logBlockSize > 6 {
		return corruptf("block size 2^%d KiB is invalid", s.logBlockSize)
	}
	f.blockSize = 1024 << s.logBlockSize
	bs := uint64(f.blockSize)
	f.inodeSize = int(s.inodeSize)
	if f.inodeSize < goodOldInodeSize || f.inodeSize > f.blockSize || f.inodeSize&(f.inodeSize-1) != 0 {
		return corruptf("inode size %d is invalid", f.inodeSize)
	}
	f.bpg = uint64(s.blocksPerGroup)
	if f.bpg == 0 || f.bpg%8 != 0 || (!s.hasRoCompat(roCompatBigalloc) && f.bpg > 8*bs) {
		return corruptf("%d blocks per group is invalid", f.bpg)
	}
	f.ipg = s.inodesPerGroup
	if f.ipg == 0 || f.ipg%8 != 0 || uint64(f.ipg) > 8*bs {
		return corruptf("%d inodes per group is invalid", f.ipg)
	}
	f.firstData = uint64(s.firstDataBlock)
	if f.firstData > 1 || (f.blockSize == 1024 && f.firstData != 1 && !s.hasRoCompat(roCompatBigalloc)) {
		return corruptf("first data block %d is invalid for %d-byte blocks", f.firstData, f.blockSize)
	}
	f.blocks = s.blocksCount
	if f.blocks <= f.firstData+1 {
		return corruptf("block count %d is too small", f.blocks)
	}
	groups := divCeil(f.blocks-f.firstData, f.bpg)
	if groups > 1<<32-1 {
		return corruptf("%d block groups is too many", groups)
	}
	f.groups = uint32(groups)
	if s.inodesCount == 0 || uint64(s.inodesCount) > groups*uint64(f.ipg) {
		return corruptf("inode count %d does not fit %d groups of %d", s.inodesCount, groups, f.ipg)
	}
	f.is64 = s.hasIncompat(incompat64Bit)
	f.descSize = descSize32
	if f.is64 {
		f.descSize = int(s.descSize)
		if f.descSize < descSize64 || f.descSize > 1024 || f.descSize&(f.descSize-1) != 0 || f.descSize > f.blockSize {
			return corruptf("group descriptor size %d is invalid", f.descSize)
		}
	}
	f.descPerBlock = uint32(f.blockSize / f.descSize)
	f.descBlocks = divCeil(groups, uint64(f.descPerBlock))
	if !s.hasIncompat(incompatMetaBG) && f.gdtStart()+f.descBlocks > f.blocks {
		return corruptf("group descriptor table does not fit the filesystem")
	}
	if s.hasIncompat(incompatMetaBG) && uint64(s.firstMetaBG) > f.descBlocks {
		return corruptf("first meta_bg %d is beyond the %d descriptor blocks", s.firstMetaBG, f.descBlocks)
	}
	f.itableBlocks = divCeil(uint64(f.ipg)*uint64(f.inodeSize), bs)
	f.flexSize = 1
	if s.hasIncompat(incompatFlexBG) {
		if s.logGroupsFlex > 31 {
			return corruptf("flex group size 2^%d is invalid", s.logGroupsFlex)
		}
		f.flexSize = 1 << s.logGroupsFlex
	}
	f.csum = s.hasRoCompat(roCompatMetadataCsum)
	f.gdtCsum = !f.csum && s.hasRoCompat(roCompatGdtCsum)
	if f.csum {
		if s.checksumType != crcTypeCrc32c {
			return corruptf("unknown metadata checksum type %d", s.checksumType)
		}
		if f.verifyChecksums && !s.checksumOK() {
			return corruptf("superblock checksum mismatch")
		}
		if s.hasIncompat(incompatCsumSeed) {
			f.csumSeed = s.checksumSeed
		} else {
			f.csumSeed = crc32c(^uint32(0), s.uuid[:])
		}
	}
	f.unsignedHash = s.flags&flagsUnsignedHash != 0 && s.flags&flagsSignedHash == 0
	return nil
}

// whyReadOnly explains why this filesystem may not be changed, or returns
// nil.
func (f *FS) whyReadOnly() error {
	s := f.sb
	ro := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{fs.ErrReadOnly}, a...)...)
	}
	switch {
	case f.opts.ReadOnly:
		return fs.ErrReadOnly
	case s.hasIncompat(incompatRecover):
		return ro("the ext4 journal needs recovery (the filesystem was not cleanly unmounted); run e2fsck on it or mount it once, then retry")
	case s.hasRoCompat(roCompatOrphanPresent) || s.lastOrphan != 0:
		return ro("the filesystem has orphaned inodes pending cleanup; run e2fsck on it or mount it once, then retry")
	case s.state&stateErrors != 0:
		return ro("the filesystem is marked as having errors; run e2fsck on it first")
	case s.state&stateValid == 0:
		return ro("the filesystem was not cleanly unmounted; run e2fsck on it first")
	case s.incompat&^incompatWritable&^incompatRecover != 0:
		return ro("writing a filesystem with %s is not supported", describeFeatures(1, s.incompat&^incompatWritable))
	case s.roCompat&^roCompatWritable != 0:
		kind := "unknown read-only-compatible"
		if s.roCompat&^roCompatKnown == 0 {
			kind = "read-only-compatible"
		}
		return ro("writing a filesystem with %s features %s is not supported", kind, describeFeatures(2, s.roCompat&^roCompatWritable))
	case s.revLevel < 1:
		return ro("writing revision 0 (original ext2) filesystems is not supported")
	case int64(f.blocks)*int64(f.blockSize) > f.devSize || int64(f.blocks) > f.devSize/int64(f.blockSize):
		return ro("the filesystem (%d blocks) is larger than its %d-byte device; the image looks truncated", f.blocks, f.devSize)
	}
	if s.hasCompat(compatHasJournal) && s.journalInum != 0 {
		if err := f.checkJournalClean(); err != nil {
			return ro("%v", err)
		}
	}
	return nil
}

// Type is "ext4" when the filesystem uses any ext4-only feature, "ext3"
// with a journal, else "ext2".
func (f *FS) Type() string {
	s := f.sb
	ext4Incompat := uint32(incompatExtents | incompat64Bit | incompatFlexBG | incompatMMP | incompatEAInode |
		incompatCsumSeed | incompatLargeDir | incompatInlineData | incompatEncrypt | incompatCasefold | incompatMetaBG)
	ext4RoCompat := uint32(roCompatHugeFile | roCompatGdtCsum | roCompatDirNlink | roCompatExtraIsize |
		roCompatQuota | roCompatBigalloc | roCompatMetadataCsum | roCompatProject | roCompatVerity | roCompatOrphanPresent)
	switch {
	case s.incompat&ext4Incompat != 0 || s.roCompat&ext4RoCompat != 0:
		return "ext4"
	case s.hasCompat(compatHasJournal):
		return "ext3"
	}
	return "ext2"
}

// Label returns the volume label.
func (f *FS) Label() string { return f.sb.label() }

// UUID returns the filesystem UUID in canonical form.
func (f *FS) UUID() string { return formatUUID(f.sb.uuid) }

// Usage reports blocks and inodes from the superblock counters.
func (f *FS) Usage() (fs.Usage, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed.Load() {
		return fs.Usage{}, errClosed
	}
	free := min(f.sb.freeBlocks, f.blocks)
	return fs.Usage{
		TotalBytes:  int64(f.blocks) * int64(f.blockSize),
		FreeBytes:   int64(free) * int64(f.blockSize),
		TotalInodes: int64(f.sb.inodesCount),
		FreeInodes:  int64(min(f.sb.freeInodes, f.sb.inodesCount)),
	}, nil
}

// rlock takes the read lock unless the filesystem is closed.
func (f *FS) rlock() error {
	f.mu.RLock()
	if f.closed.Load() {
		f.mu.RUnlock()
		return errClosed
	}
	return nil
}

// Stat describes path, following a final symbolic link.
func (f *FS) Stat(path string) (fs.FileInfo, error) { return f.stat("stat", path, true) }

// Lstat describes path without following a final symbolic link.
func (f *FS) Lstat(path string) (fs.FileInfo, error) { return f.stat("lstat", path, false) }

func (f *FS) stat(op, path string, follow bool) (fs.FileInfo, error) {
	if err := f.rlock(); err != nil {
		return fs.FileInfo{}, fs.PathErr(op, path, err)
	}
	defer f.mu.RUnlock()
	r, err := f.resolve(path, follow)
	if err != nil {
		return fs.FileInfo{}, fs.PathErr(op, path, err)
	}
	if r.in == nil {
		return fs.FileInfo{}, fs.PathErr(op, path, fs.ErrNotExist)
	}
	name := r.name
	if name == "" {
		name = "/"
	}
	fi, err := f.info(name, r.in)
	if err != nil {
		return fs.FileInfo{}, fs.PathErr(op, path, err)
	}
	return fi, nil
}

func (f *FS) info(name string, in *inode) (fs.FileInfo, error) {
	size := in.size()
	if size > 1<<62 {
		return fs.FileInfo{}, corruptf("inode %d has implausible size %d", in.ino, size)
	}
	fi := fs.FileInfo{
		Name: name, Mode: goMode(in.mode()), Size: int64(size), UID: in.uid(), GID: in.gid(),
		ModTime: in.mtime(), Nlink: uint32(in.links()), Ino: uint64(in.ino),
	}
	switch in.fileType() {
	case sIFLNK:
		t, err := f.readLinkTarget(in)
		if err != nil {
			return fs.FileInfo{}, err
		}
		fi.Target = t
	case sIFCHR, sIFBLK:
		fi.Rdev = in.rdev()
	}
	return fi, nil
}

// ReadDir lists a directory (following symlinks), sorted by name, without
// "." and "..".
func (f *FS) ReadDir(path string) ([]fs.FileInfo, error) {
	if err := f.rlock(); err != nil {
		return nil, fs.PathErr("readdir", path, err)
	}
	defer f.mu.RUnlock()
	r, err := f.resolve(path, true)
	if err != nil {
		return nil, fs.PathErr("readdir", path, err)
	}
	if r.in == nil {
		return nil, fs.PathErr("readdir", path, fs.ErrNotExist)
	}
	if !r.in.isDir() {
		return nil, fs.PathErr("readdir", path, fs.ErrNotDir)
	}
	var out []fs.FileInfo
	err = f.iterDir(r.in, func(e dirEntry) error {
		if e.name == "." || e.name == ".." {
			return nil
		}
		in, err := f.readInUse(e.ino)
		if err != nil {
			return err
		}
		fi, err := f.info(e.name, in)
		if err != nil {
			return err
		}
		out = append(out, fi)
		return nil
	})
	if err != nil {
		return nil, fs.PathErr("readdir", path, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ReadLink returns the target of a symbolic link.
func (f *FS) ReadLink(path string) (string, error) {
	if err := f.rlock(); err != nil {
		return "", fs.PathErr("readlink", path, err)
	}
	defer f.mu.RUnlock()
	r, err := f.resolve(path, false)
	if err != nil {
		return "", fs.PathErr("readlink", path, err)
	}
	if r.in == nil {
		return "", fs.PathErr("readlink", path, fs.ErrNotExist)
	}
	if !r.in.isSymlink() {
		return "", fs.PathErr("readlink", path, fmt.Errorf("not a symbolic link: %w", fs.ErrInvalidPath))
	}
	t, err := f.readLinkTarget(r.in)
	if err != nil {
		return "", fs.PathErr("readlink", path, err)
	}
	return t, nil
}

// ListXattrs returns the extended attributes of path (not following a
// final symlink), keyed by full name such as "security.capability".
func (f *FS) ListXattrs(path string) (map[string][]byte, error) {
	if err := f.rlock(); err != nil {
		return nil, fs.PathErr("listxattr", path, err)
	}
	defer f.mu.RUnlock()
	r, err := f.resolve(path, false)
	if err != nil {
		return nil, fs.PathErr("listxattr", path, err)
	}
	if r.in == nil {
		return nil, fs.PathErr("listxattr", path, fs.ErrNotExist)
	}
	x, err := f.listXattrs(r.in)
	if err != nil {
		return nil, fs.PathErr("listxattr", path, err)
	}
	return x, nil
}

// Close writes all buffered metadata to the device. The filesystem is
// unusable afterwards.
func (f *FS) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed.Swap(true) {
		return nil
	}
	if err := f.flush(); err != nil {
		return fmt.Errorf("ext4: close: %w", err)
	}
	return nil
}

func (f *FS) flush() error {
	if len(f.dirty) == 0 && len(f.dirs) == 0 && len(f.pendingFree) == 0 && !f.sbChanged {
		return nil
	}
	inos := make([]uint32, 0, len(f.dirs))
	for ino := range f.dirs {
		inos = append(inos, ino)
	}
	sortUint32(inos)
	for _, ino := range inos {
		if err := f.flushDir(f.dirs[ino]); err != nil {
			return err
		}
	}
	if err := f.applyPendingFrees(); err != nil {
		return err
	}
	if err := f.updateBitmapChecksums(); err != nil {
		return err
	}
	blks := make([]uint64, 0, len(f.dirty))
	for b := range f.dirty {
		blks = append(blks, b)
	}
	sort.Slice(blks, func(i, j int) bool { return blks[i] < blks[j] })
	for _, b := range blks {
		if _, err := f.dev.WriteAt(f.dirty[b], int64(b)*int64(f.blockSize)); err != nil {
			return fmt.Errorf("write block %d: %w", b, err)
		}
	}
	if _, err := f.dev.WriteAt(f.sb.encode(), superblockOffset); err != nil {
		return fmt.Errorf("write superblock: %w", err)
	}
	f.dirty = map[uint64][]byte{}
	f.dirs = map[uint32]*dirModel{}
	return nil
}
