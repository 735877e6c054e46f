package ext4

import (
	"bytes"
	"fmt"

	"github.com/bakeryhq/bakery/internal/fs"
)

// Directory blocks: a sequence of entries {inode u32, rec_len u16,
// name_len u8, file_type u8, name}, rec_len chaining to the end of the block;
// with metadata_csum each leaf block ends in a 12-byte fake entry holding the
// block checksum.

const (
	direntHeader  = 8
	dirTailSize   = 12
	dirTailFT     = 0xDE
	ftDir         = 2
	dotEntrySize  = 12
	maxDirBlocks  = 1 << 27 // logical blocks a directory may have (dx block field is 28 bits)
	dxBlockMask   = 0x0FFFFFFF
	dxRootInfoOff = 0x18
	dxRootEntries = 0x20
	dxNodeEntries = 0x8
	dxEntrySize   = 8
	dxTailSize    = 8
)

type dirEntry struct {
	name  string
	ino   uint32
	ftype uint8
	hash  uint32 // major hash, for indexed directories
	minor uint32
}

// direntSize is the space an entry with a name of n bytes needs.
func direntSize(n int) int { return (direntHeader + n + 3) &^ 3 }

func (f *FS) decodeRecLen(v uint16) int {
	if f.blockSize < 65536 {
		return int(v)
	}
	if v == 65535 || v == 0 {
		return f.blockSize
	}
	return int(v&65532) | int(v&3)<<16
}

func (f *FS) encodeRecLen(n int) uint16 {
	if f.blockSize < 65536 {
		return uint16(n)
	}
	if n == f.blockSize {
		return 65535
	}
	return uint16(n&65532) | uint16(n>>16&3)
}

// hasDirTail reports whether b ends in a checksum tail entry.
func hasDirTail(b []byte) bool {
	t := b[len(b)-dirTailSize:]
	return get32(t, 0) == 0 && get16(t, 4) == dirTailSize && t[6] == 0 && t[7] == dirTailFT
}

func (f *FS) dirBlockCsum(dirIno, gen uint32, b []byte) uint32 {
	return crc32c(f.inodeSeed(dirIno, gen), b[:len(b)-dirTailSize])
}

// parseDirBlock calls fn for every live entry of directory block b.
func (f *FS) parseDirBlock(dir *inode, lblk uint64, b []byte, fn func(dirEntry) error) error {
	end := len(b)
	if f.csum && hasDirTail(b) {
		if f.verifyChecksums && get32(b, len(b)-4) != f.dirBlockCsum(dir.ino, dir.generation(), b) {
			return corruptf("directory inode %d block %d checksum mismatch", dir.ino, lblk)
		}
		end -= dirTailSize
	}
	return f.parseDirents(dir.ino, lblk, b[:end], fn)
}

func (f *FS) parseDirents(dirIno uint32, lblk uint64, b []byte, fn func(dirEntry) error) error {
	filetype := f.sb.hasIncompat(incompatFiletype)
	for off := 0; off < len(b); {
		if len(b)-off < direntHeader {
			return corruptf("directory inode %d block %d: truncated entry at offset %d", dirIno, lblk, off)
		}
		ino := get32(b, off)
		recLen := f.decodeRecLen(get16(b, off+4))
		nameLen := int(b[off+6])
		ftype := b[off+7]
		if !filetype {
			if ftype != 0 && ino != 0 {
				return corruptf("directory inode %d block %d: name length over 255 at offset %d", dirIno, lblk, off)
			}
			ftype = 0
		}
		if recLen < direntHeader || recLen%4 != 0 || recLen > len(b)-off || direntHeader+nameLen > recLen {
			return corruptf("directory inode %d block %d: bad entry (rec_len %d, name_len %d) at offset %d", dirIno, lblk, recLen, nameLen, off)
		}
		if ino != 0 {
			if ino > f.sb.inodesCount {
				return corruptf("directory inode %d block %d: entry points to inode %d (of %d)", dirIno, lblk, ino, f.sb.inodesCount)
			}
			name := b[off+direntHeader : off+direntHeader+nameLen]
			if nameLen == 0 || bytes.IndexByte(name, '/') >= 0 || bytes.IndexByte(name, 0) >= 0 {
				return corruptf("directory inode %d block %d: invalid name %q at offset %d", dirIno, lblk, name, off)
			}
			if err := fn(dirEntry{name: string(name), ino: ino, ftype: ftype}); err != nil {
				return err
			}
		}
		off += recLen
	}
	return nil
}

// errStop ends an iteration early without error.
var errStop = fmt.Errorf("stop")

// dirBlockCount is the number of logical blocks a directory spans.
func (f *FS) dirBlockCount(dir *inode) (uint64, error) {
	n := divCeil(dir.size(), uint64(f.blockSize))
	if n > maxDirBlocks || n > f.blocks {
		return 0, corruptf("directory inode %d has implausible size %d", dir.ino, dir.size())
	}
	return n, nil
}

// iterDisk calls fn for every entry (including "." and "..") of an on-disk
// directory, in block order.
func (f *FS) iterDisk(dir *inode, fn func(dirEntry) error) error {
	if dir.flags()&flagInlineData != 0 {
		return f.iterInlineDir(dir, fn)
	}
	n, err := f.dirBlockCount(dir)
	if err != nil {
		return err
	}
	m, err := f.readMap(dir)
	if err != nil {
		return err
	}
	for _, r := range m.runs {
		for i := uint64(0); i < r.length && r.logical+i < n; i++ {
			if r.uninit {
				continue
			}
			b, err := f.block(r.phys + i)
			if err != nil {
				return err
			}
			if err := f.parseDirBlock(dir, r.logical+i, b, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// iterDir calls fn for every entry of a directory, using the in-memory
// model when the directory was changed in this session.
func (f *FS) iterDir(dir *inode, fn func(dirEntry) error) error {
	if d := f.dirs[dir.ino]; d != nil {
		if err := fn(dirEntry{name: ".", ino: d.ino, ftype: ftDir}); err != nil {
			return err
		}
		if err := fn(dirEntry{name: "..", ino: d.parent, ftype: ftDir}); err != nil {
			return err
		}
		for _, l := range d.leaves {
			for _, e := range l.entries {
				if err := fn(e); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return f.iterDisk(dir, fn)
}

// lookup finds name in directory dir.
func (f *FS) lookup(dir *inode, name string) (dirEntry, bool, error) {
	if d := f.dirs[dir.ino]; d != nil {
		if name == "." {
			return dirEntry{name: ".", ino: d.ino, ftype: ftDir}, true, nil
		}
		if name == ".." {
			return dirEntry{name: "..", ino: d.parent, ftype: ftDir}, true, nil
		}
		li, ei := d.find(f, name)
		if li < 0 {
			return dirEntry{}, false, nil
		}
		return d.leaves[li].entries[ei], true, nil
	}
	if dir.flags()&flagIndex != 0 && f.sb.hasCompat(compatDirIndex) && dir.flags()&flagInlineData == 0 {
		if e, found, ok, err := f.htreeLookup(dir, name); ok || err != nil {
			return e, found, err
		}
	}
	var out dirEntry
	found := false
	err := f.iterDisk(dir, func(e dirEntry) error {
		if e.name == name {
			out, found = e, true
			return errStop
		}
		return nil
	})
	if err == errStop {
		err = nil
	}
	return out, found, err
}

// writableDir checks that entries may be added to or removed from dir.
func (f *FS) writableDir(dir *inode) error {
	if !dir.isDir() {
		return fs.ErrNotDir
	}
	fl := dir.flags()
	switch {
	case fl&flagEncrypt != 0:
		return unsupportedf("directory inode %d is encrypted; changing it is not supported", dir.ino)
	case fl&flagCasefold != 0:
		return unsupportedf("directory inode %d is case-insensitive (casefold); changing it is not supported", dir.ino)
	}
	return nil
}
