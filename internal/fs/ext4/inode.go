package ext4

import (
	"fmt"
	iofs "io/fs"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
)

const (
	rootIno = 2

	// Inode field offsets.
	inMode        = 0x0
	inUID         = 0x2
	inSizeLo      = 0x4
	inAtime       = 0x8
	inCtime       = 0xC
	inMtime       = 0x10
	inDtime       = 0x14
	inGID         = 0x18
	inLinks       = 0x1A
	inBlocksLo    = 0x1C
	inFlags       = 0x20
	inBlock       = 0x28
	inGeneration  = 0x64
	inFileACLLo   = 0x68
	inSizeHi      = 0x6C
	inBlocksHi    = 0x74
	inFileACLHi   = 0x76
	inUIDHi       = 0x78
	inGIDHi       = 0x7A
	inChecksumLo  = 0x7C
	inExtraIsize  = 0x80
	inChecksumHi  = 0x82
	inCtimeExtra  = 0x84
	inMtimeExtra  = 0x88
	inAtimeExtra  = 0x8C
	inCrtime      = 0x90
	inCrtimeExtra = 0x94

	goodOldInodeSize = 128
	iBlockLen        = 60

	// i_flags
	flagIndex      = 0x1000
	flagEncrypt    = 0x800
	flagHugeFile   = 0x40000
	flagExtents    = 0x80000
	flagVerity     = 0x100000
	flagEAInode    = 0x200000
	flagInlineData = 0x10000000
	flagCasefold   = 0x40000000

	// i_mode type bits
	sIFMT   = 0xF000
	sIFSOCK = 0xC000
	sIFLNK  = 0xA000
	sIFREG  = 0x8000
	sIFBLK  = 0x6000
	sIFDIR  = 0x4000
	sIFCHR  = 0x2000
	sIFIFO  = 0x1000

	maxLinks = 65000
)

// inode is one on-disk inode, kept as raw bytes so that fields we do not
// interpret (in-inode extended attributes, project id, ...) survive updates.
type inode struct {
	ino uint32
	raw []byte
}

func (in *inode) mode() uint16       { return get16(in.raw, inMode) }
func (in *inode) fileType() uint16   { return in.mode() & sIFMT }
func (in *inode) isDir() bool        { return in.fileType() == sIFDIR }
func (in *inode) isReg() bool        { return in.fileType() == sIFREG }
func (in *inode) isSymlink() bool    { return in.fileType() == sIFLNK }
func (in *inode) links() uint16      { return get16(in.raw, inLinks) }
func (in *inode) setLinks(n uint16)  { put16(in.raw, inLinks, n) }
func (in *inode) flags() uint32      { return get32(in.raw, inFlags) }
func (in *inode) setFlags(v uint32)  { put32(in.raw, inFlags, v) }
func (in *inode) generation() uint32 { return get32(in.raw, inGeneration) }
func (in *inode) iblock() []byte     { return in.raw[inBlock : inBlock+iBlockLen] }
func (in *inode) uid() uint32 {
	return uint32(get16(in.raw, inUID)) | uint32(get16(in.raw, inUIDHi))<<16
}
func (in *inode) gid() uint32 {
	return uint32(get16(in.raw, inGID)) | uint32(get16(in.raw, inGIDHi))<<16
}
func (in *inode) setOwner(uid, gid uint32) {
	put16(in.raw, inUID, uint16(uid))
	put16(in.raw, inUIDHi, uint16(uid>>16))
	put16(in.raw, inGID, uint16(gid))
	put16(in.raw, inGIDHi, uint16(gid>>16))
}
func (in *inode) size() uint64 {
	return uint64(get32(in.raw, inSizeLo)) | uint64(get32(in.raw, inSizeHi))<<32
}
func (in *inode) setSize(n uint64) {
	put32(in.raw, inSizeLo, uint32(n))
	put32(in.raw, inSizeHi, uint32(n>>32))
}

// extraIsize returns i_extra_isize, or 0 when it is absent or implausible.
func (in *inode) extraIsize() int {
	if len(in.raw) <= goodOldInodeSize {
		return 0
	}
	n := int(get16(in.raw, inExtraIsize))
	if n < 4 || n%4 != 0 || goodOldInodeSize+n > len(in.raw) {
		return 0
	}
	return n
}

// hasExtra reports whether the extended field at offset off (of width w)
// lies within i_extra_isize.
func (in *inode) hasExtra(off, w int) bool {
	return off+w <= goodOldInodeSize+in.extraIsize()
}

func (f *FS) fileACL(in *inode) uint64 {
	v := uint64(get32(in.raw, inFileACLLo))
	if f.is64 {
		v |= uint64(get16(in.raw, inFileACLHi)) << 32
	}
	return v
}

// blocks512 returns i_blocks in 512-byte units.
func (f *FS) blocks512(in *inode) uint64 {
	n := uint64(get32(in.raw, inBlocksLo))
	if f.sb.hasRoCompat(roCompatHugeFile) {
		n |= uint64(get16(in.raw, inBlocksHi)) << 32
		if in.flags()&flagHugeFile != 0 {
			n *= uint64(f.blockSize / 512)
		}
	}
	return n
}

// setBlockCount stores the number of filesystem blocks an inode owns.
func (f *FS) setBlockCount(in *inode, blocks uint64) error {
	n := blocks * uint64(f.blockSize/512)
	flags := in.flags() &^ flagHugeFile
	switch {
	case n <= 0xFFFFFFFF:
		put32(in.raw, inBlocksLo, uint32(n))
		put16(in.raw, inBlocksHi, 0)
	case !f.sb.hasRoCompat(roCompatHugeFile):
		return fmt.Errorf("ext4: inode %d would own %d blocks, more than i_blocks can count without huge_file: %w", in.ino, blocks, fs.ErrNoSpace)
	case n < 1<<48:
		put32(in.raw, inBlocksLo, uint32(n))
		put16(in.raw, inBlocksHi, uint16(n>>32))
	default:
		put32(in.raw, inBlocksLo, uint32(blocks))
		put16(in.raw, inBlocksHi, uint16(blocks>>32))
		flags |= flagHugeFile
	}
	in.setFlags(flags)
	return nil
}

// Timestamps: seconds in the base field, nanoseconds and two extra epoch
// bits in the _extra field when the inode is large enough.
func (in *inode) getTime(base, extra int) time.Time {
	sec := int64(int32(get32(in.raw, base)))
	var nsec int64
	if extra != 0 && in.hasExtra(extra, 4) {
		x := get32(in.raw, extra)
		sec += int64(x&3) << 32
		nsec = int64(x >> 2)
		if nsec >= 1e9 {
			nsec = 0
		}
	}
	return time.Unix(sec, nsec).UTC()
}

func (in *inode) setTime(base, extra int, t time.Time) {
	sec := t.Unix()
	if extra == 0 || !in.hasExtra(extra, 4) {
		if sec < -1<<31 {
			sec = -1 << 31
		} else if sec > 1<<31-1 {
			sec = 1<<31 - 1
		}
		put32(in.raw, base, uint32(int32(sec)))
		return
	}
	lo := int32(sec)
	epoch := uint32((sec-int64(lo))>>32) & 3
	if sec < -1<<31 {
		lo, epoch = -1<<31, 0
	} else if sec > 3<<32+1<<31-1 {
		lo, epoch = 1<<31-1, 3
	}
	put32(in.raw, base, uint32(lo))
	put32(in.raw, extra, uint32(t.Nanosecond())<<2|epoch)
}

func (in *inode) mtime() time.Time { return in.getTime(inMtime, inMtimeExtra) }

// setTimes stamps atime, ctime, mtime (and crtime when create is set).
func (in *inode) setTimes(t time.Time, create bool) {
	in.setTime(inAtime, inAtimeExtra, t)
	in.setTime(inCtime, inCtimeExtra, t)
	in.setTime(inMtime, inMtimeExtra, t)
	if create && in.hasExtra(inCrtime, 4) {
		in.setTime(inCrtime, inCrtimeExtra, t)
	}
}

// inodeLocation returns the block and offset of inode ino.
func (f *FS) inodeLocation(ino uint32) (uint64, int, error) {
	if ino == 0 || ino > f.sb.inodesCount {
		return 0, 0, corruptf("inode number %d out of range (1..%d)", ino, f.sb.inodesCount)
	}
	g := (ino - 1) / f.ipg
	idx := uint64((ino - 1) % f.ipg)
	d, err := f.desc(g)
	if err != nil {
		return 0, 0, err
	}
	if err := f.checkDescLayout(g, d); err != nil {
		return 0, 0, err
	}
	byteOff := idx * uint64(f.inodeSize)
	return d.inodeTable + byteOff/uint64(f.blockSize), int(byteOff % uint64(f.blockSize)), nil
}

// inodeChecksum computes the metadata_csum inode checksum over raw.
func (f *FS) inodeChecksum(ino uint32, raw []byte) uint32 {
	var b [4]byte
	put32(b[:], 0, ino)
	seed := crc32c(f.csumSeed, b[:])
	put32(b[:], 0, get32(raw, inGeneration))
	seed = crc32c(seed, b[:])
	zero := []byte{0, 0}
	c := crc32c(seed, raw[:inChecksumLo])
	c = crc32c(c, zero)
	c = crc32c(c, raw[inChecksumLo+2:goodOldInodeSize])
	if len(raw) > goodOldInodeSize {
		extra := int(get16(raw, inExtraIsize))
		c = crc32c(c, raw[goodOldInodeSize:inChecksumHi])
		off := inChecksumHi
		if goodOldInodeSize+extra >= inChecksumHi+2 {
			c = crc32c(c, zero)
			off += 2
		}
		c = crc32c(c, raw[off:])
	}
	return c
}

// inodeSeed is the per-inode checksum seed used by extent blocks,
// directory blocks and dx tails.
func (f *FS) inodeSeed(ino, gen uint32) uint32 {
	var b [4]byte
	put32(b[:], 0, ino)
	seed := crc32c(f.csumSeed, b[:])
	put32(b[:], 0, gen)
	return crc32c(seed, b[:])
}

// readInode loads inode ino (from the dirty cache or the device).
func (f *FS) readInode(ino uint32) (*inode, error) {
	blk, off, err := f.inodeLocation(ino)
	if err != nil {
		return nil, err
	}
	b, err := f.block(blk)
	if err != nil {
		return nil, err
	}
	in := &inode{ino: ino, raw: append([]byte(nil), b[off:off+f.inodeSize]...)}
	if f.csum && f.verifyChecksums && !isZero(in.raw) {
		want := f.inodeChecksum(ino, in.raw)
		got := uint32(get16(in.raw, inChecksumLo))
		mask := uint32(0xFFFF)
		if f.inodeSize > goodOldInodeSize && goodOldInodeSize+int(get16(in.raw, inExtraIsize)) >= inChecksumHi+2 {
			got |= uint32(get16(in.raw, inChecksumHi)) << 16
			mask = 0xFFFFFFFF
		}
		if got != want&mask {
			return nil, corruptf("inode %d checksum mismatch", ino)
		}
	}
	return in, nil
}

// readInUse loads an inode a directory entry points to and checks that it is
// allocated.
func (f *FS) readInUse(ino uint32) (*inode, error) {
	in, err := f.readInode(ino)
	if err != nil {
		return nil, err
	}
	if in.mode() == 0 || in.links() == 0 {
		return nil, corruptf("inode %d is referenced but not in use", ino)
	}
	return in, nil
}

// writeInode stores in into its inode table block (dirty cache), refreshing
// the checksum.
func (f *FS) writeInode(in *inode) error {
	blk, off, err := f.inodeLocation(in.ino)
	if err != nil {
		return err
	}
	if f.csum {
		c := f.inodeChecksum(in.ino, in.raw)
		put16(in.raw, inChecksumLo, uint16(c))
		if f.inodeSize > goodOldInodeSize && goodOldInodeSize+int(get16(in.raw, inExtraIsize)) >= inChecksumHi+2 {
			put16(in.raw, inChecksumHi, uint16(c>>16))
		}
	}
	b, err := f.blockRW(blk)
	if err != nil {
		return err
	}
	copy(b[off:off+f.inodeSize], in.raw)
	return nil
}

// newInodeRaw builds a blank inode image with extra_isize set.
func (f *FS) newInodeRaw(ino uint32) *inode {
	in := &inode{ino: ino, raw: make([]byte, f.inodeSize)}
	if f.inodeSize > goodOldInodeSize {
		extra := 32
		if w := int(f.sb.wantExtraIsize); w >= 4 && w%4 == 0 && goodOldInodeSize+w <= f.inodeSize {
			extra = max(extra, w)
		}
		if goodOldInodeSize+extra > f.inodeSize {
			extra = f.inodeSize - goodOldInodeSize
		}
		put16(in.raw, inExtraIsize, uint16(extra))
	}
	return in
}

// goMode converts an ext4 i_mode to an io/fs FileMode.
func goMode(m uint16) iofs.FileMode {
	mode := fs.FromUnixPerm(uint32(m) & 0o7777)
	switch m & sIFMT {
	case sIFDIR:
		mode |= iofs.ModeDir
	case sIFLNK:
		mode |= iofs.ModeSymlink
	case sIFCHR:
		mode |= iofs.ModeDevice | iofs.ModeCharDevice
	case sIFBLK:
		mode |= iofs.ModeDevice
	case sIFIFO:
		mode |= iofs.ModeNamedPipe
	case sIFSOCK:
		mode |= iofs.ModeSocket
	case sIFREG:
	default:
		mode |= iofs.ModeIrregular
	}
	return mode
}

// direntType maps an i_mode type to the directory entry file_type code.
func direntType(m uint16) uint8 {
	switch m & sIFMT {
	case sIFREG:
		return 1
	case sIFDIR:
		return 2
	case sIFCHR:
		return 3
	case sIFBLK:
		return 4
	case sIFIFO:
		return 5
	case sIFSOCK:
		return 6
	case sIFLNK:
		return 7
	}
	return 0
}

// Device numbers: Linux's userspace dev_t encoding on the API side, the
// kernel's old (16-bit) or new (32-bit) encoding in i_block on disk.
func devMajor(rdev uint64) uint32 { return uint32((rdev>>8)&0xfff | (rdev>>32)&^0xfff) }
func devMinor(rdev uint64) uint32 { return uint32(rdev&0xff | (rdev>>12)&^0xff) }
func mkdev(major, minor uint32) uint64 {
	return uint64(major&0xfff)<<8 | uint64(major&^0xfff)<<32 | uint64(minor&0xff) | uint64(minor&^0xff)<<12
}

func (in *inode) rdev() uint64 {
	b := in.iblock()
	if v := get32(b, 0); v != 0 {
		return mkdev(v>>8&0xff, v&0xff)
	}
	v := get32(b, 4)
	return mkdev(v>>8&0xfff, v&0xff|v>>12&0xfff00)
}

func (in *inode) setRdev(rdev uint64) {
	b := in.iblock()
	clear(b)
	major, minor := devMajor(rdev), devMinor(rdev)
	if major < 256 && minor < 256 {
		put32(b, 0, major<<8|minor)
		return
	}
	put32(b, 4, minor&0xff|major<<8|(minor&^0xff)<<12)
}
