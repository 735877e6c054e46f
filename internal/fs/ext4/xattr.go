package ext4

import "fmt"

// Extended attributes: read-only listing of in-inode and block attributes,
// reference counting of xattr blocks when an inode is freed, and the
// "system.data" attribute that holds the tail of inline data.

const (
	xattrMagic       = 0xEA020000
	xattrBlockHeader = 32
	xattrEntryHeader = 16
	xattrMaxValue    = 1 << 20
	xattrIndexSystem = 7
)

var xattrPrefixes = map[uint8]string{
	1: "user.",
	2: "system.posix_acl_access",
	3: "system.posix_acl_default",
	4: "trusted.",
	6: "security.",
	7: "system.",
	8: "system.richacl",
}

type xattr struct {
	index     uint8
	name      string // without prefix
	value     []byte
	valueInum uint32 // value stored in this EA inode instead
	valueSize int
}

func (x xattr) fullName() string {
	p, ok := xattrPrefixes[x.index]
	if !ok {
		p = fmt.Sprintf("unknown%d.", x.index)
	}
	return p + x.name
}

// parseXattrs reads the entry table at b[entries:]; value offsets are
// relative to b[valueBase:]. Values stored in EA inodes are left to the
// caller (valueInum set).
func parseXattrs(b []byte, entries, valueBase int, where string) ([]xattr, error) {
	var out []xattr
	off := entries
	for n := 0; ; n++ {
		if off+4 > len(b) {
			return nil, corruptf("%s: extended attribute table runs past its end", where)
		}
		if get32(b, off) == 0 {
			return out, nil
		}
		if off+xattrEntryHeader > len(b) || n > len(b)/xattrEntryHeader {
			return nil, corruptf("%s: extended attribute table runs past its end", where)
		}
		nameLen := int(b[off])
		idx := b[off+1]
		valOff := int(get16(b, off+2))
		inum := get32(b, off+4)
		size := int(get32(b, off+8))
		if off+xattrEntryHeader+nameLen > len(b) {
			return nil, corruptf("%s: extended attribute name runs past its end", where)
		}
		x := xattr{index: idx, name: string(b[off+xattrEntryHeader : off+xattrEntryHeader+nameLen]), valueInum: inum, valueSize: size}
		if size > xattrMaxValue {
			return nil, corruptf("%s: extended attribute %s has implausible size %d", where, x.fullName(), size)
		}
		if inum == 0 {
			start := valueBase + valOff
			if start < valueBase || start > len(b) || size > len(b)-start {
				return nil, corruptf("%s: extended attribute %s value lies outside its block", where, x.fullName())
			}
			x.value = append([]byte(nil), b[start:start+size]...)
		}
		out = append(out, x)
		off += (xattrEntryHeader + nameLen + 3) &^ 3
	}
}

// inodeXattrs returns the attributes stored inside the inode body.
func (f *FS) inodeXattrs(in *inode) ([]xattr, error) {
	extra := in.extraIsize()
	start := goodOldInodeSize + extra
	if extra == 0 || start+4 > len(in.raw) || get32(in.raw, start) != xattrMagic {
		return nil, nil
	}
	body := in.raw[start+4:]
	return parseXattrs(body, 0, 0, fmt.Sprintf("inode %d", in.ino))
}

// blockXattrs returns the attributes in the inode's xattr block.
func (f *FS) blockXattrs(in *inode) ([]xattr, error) {
	blk := f.fileACL(in)
	if blk == 0 {
		return nil, nil
	}
	if !f.validDataBlock(blk) {
		return nil, corruptf("inode %d: xattr block %d is outside the filesystem", in.ino, blk)
	}
	b, err := f.block(blk)
	if err != nil {
		return nil, err
	}
	if get32(b, 0) != xattrMagic || get32(b, 8) != 1 {
		return nil, corruptf("inode %d: xattr block %d has a bad header", in.ino, blk)
	}
	return parseXattrs(b, xattrBlockHeader, 0, fmt.Sprintf("inode %d xattr block %d", in.ino, blk))
}

// listXattrs returns every attribute of in by full name.
func (f *FS) listXattrs(in *inode) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, get := range []func(*inode) ([]xattr, error){f.inodeXattrs, f.blockXattrs} {
		xs, err := get(in)
		if err != nil {
			return nil, err
		}
		for _, x := range xs {
			if x.valueInum != 0 {
				v, err := f.readEAInode(x.valueInum, x.valueSize)
				if err != nil {
					return nil, err
				}
				x.value = v
			}
			if x.index == xattrIndexSystem && x.name == "data" {
				continue // inline data, not a user-visible attribute
			}
			out[x.fullName()] = x.value
		}
	}
	return out, nil
}

func (f *FS) readEAInode(ino uint32, size int) ([]byte, error) {
	ea, err := f.readInUse(ino)
	if err != nil {
		return nil, err
	}
	if ea.flags()&flagEAInode == 0 || !ea.isReg() || ea.size() < uint64(size) {
		return nil, corruptf("xattr value inode %d is not a valid EA inode", ino)
	}
	file, err := f.openInode(ea)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size)
	if _, err := file.ReadAt(buf, 0); err != nil {
		return nil, err
	}
	return buf, nil
}

// hasEAInodeRefs reports whether any attribute value lives in an EA inode
// (whose reference counts we do not maintain).
func (f *FS) hasEAInodeRefs(in *inode) (bool, error) {
	for _, get := range []func(*inode) ([]xattr, error){f.inodeXattrs, f.blockXattrs} {
		xs, err := get(in)
		if err != nil {
			return false, err
		}
		for _, x := range xs {
			if x.valueInum != 0 {
				return true, nil
			}
		}
	}
	return false, nil
}

// releaseXattrBlock drops in's reference to its xattr block, freeing the
// block when no other inode shares it.
func (f *FS) releaseXattrBlock(in *inode) error {
	blk := f.fileACL(in)
	if blk == 0 {
		return nil
	}
	if !f.validDataBlock(blk) {
		return corruptf("inode %d: xattr block %d is outside the filesystem", in.ino, blk)
	}
	b, err := f.blockRW(blk)
	if err != nil {
		return err
	}
	if get32(b, 0) != xattrMagic {
		return corruptf("inode %d: xattr block %d has a bad header", in.ino, blk)
	}
	refs := get32(b, 4)
	if refs <= 1 {
		return f.freeLater(blk, 1)
	}
	put32(b, 4, refs-1)
	if f.csum {
		var n [8]byte
		put64(n[:], 0, blk)
		c := crc32c(f.csumSeed, n[:])
		put32(b, 0x10, 0)
		put32(b, 0x10, crc32c(c, b))
	}
	return nil
}

// inlineData returns the inline content of an inode: i_block followed by
// the system.data attribute.
func (f *FS) inlineData(in *inode) ([]byte, error) {
	size := in.size()
	data := append([]byte(nil), in.iblock()...)
	xs, err := f.inodeXattrs(in)
	if err != nil {
		return nil, err
	}
	for _, x := range xs {
		if x.index == xattrIndexSystem && x.name == "data" {
			data = append(data, x.value...)
		}
	}
	if size > uint64(len(data)) {
		return nil, corruptf("inode %d: inline data holds %d bytes, size says %d", in.ino, len(data), size)
	}
	return data[:size], nil
}

// iterInlineDir walks a directory stored as inline data: the parent inode
// number in the first 4 bytes, then entries in the rest of i_block and in
// system.data.
func (f *FS) iterInlineDir(dir *inode, fn func(dirEntry) error) error {
	ib := dir.iblock()
	if err := fn(dirEntry{name: ".", ino: dir.ino, ftype: ftDir}); err != nil {
		return err
	}
	if err := fn(dirEntry{name: "..", ino: get32(ib, 0), ftype: ftDir}); err != nil {
		return err
	}
	if err := f.parseDirents(dir.ino, 0, ib[4:], fn); err != nil {
		return err
	}
	xs, err := f.inodeXattrs(dir)
	if err != nil {
		return err
	}
	for _, x := range xs {
		if x.index == xattrIndexSystem && x.name == "data" && len(x.value) > 0 {
			if err := f.parseDirents(dir.ino, 1, x.value, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeInodeXattr deletes one attribute from the inode body, repacking the
// others (their hashes are kept; values move to the end of the area).
func (f *FS) removeInodeXattr(in *inode, index uint8, name string) error {
	extra := in.extraIsize()
	start := goodOldInodeSize + extra
	if extra == 0 || start+4 > len(in.raw) || get32(in.raw, start) != xattrMagic {
		return nil
	}
	area := in.raw[start+4:]
	type rawEntry struct {
		hdr   []byte // 16-byte header plus name
		value []byte
	}
	var keep []rawEntry
	off := 0
	for off+4 <= len(area) && get32(area, off) != 0 {
		if off+xattrEntryHeader > len(area) {
			return corruptf("inode %d: extended attribute table runs past its end", in.ino)
		}
		nameLen := int(area[off])
		size := int(get32(area, off+8))
		voff := int(get16(area, off+2))
		end := off + (xattrEntryHeader+nameLen+3)&^3
		if end > len(area) || (get32(area, off+4) == 0 && (voff > len(area) || size > len(area)-voff)) {
			return corruptf("inode %d: extended attribute out of bounds", in.ino)
		}
		e := rawEntry{hdr: append([]byte(nil), area[off:end]...)}
		if get32(area, off+4) == 0 {
			e.value = append([]byte(nil), area[voff:voff+size]...)
		}
		if !(area[off+1] == index && string(area[off+xattrEntryHeader:off+xattrEntryHeader+nameLen]) == name) {
			keep = append(keep, e)
		}
		off = end
	}
	clear(in.raw[start:])
	if len(keep) == 0 {
		return nil
	}
	put32(in.raw, start, xattrMagic)
	valEnd := len(area)
	off = 0
	for _, e := range keep {
		copy(area[off:], e.hdr)
		if e.value != nil {
			valEnd -= (len(e.value) + 3) &^ 3
			copy(area[valEnd:], e.value)
			put16(area, off+2, uint16(valEnd))
		}
		off += len(e.hdr)
	}
	if off+4 > valEnd {
		return corruptf("inode %d: extended attributes do not fit", in.ino)
	}
	return nil
}
