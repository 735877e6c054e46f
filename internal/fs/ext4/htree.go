package ext4

// Hash-indexed directories: lookups through the on-disk index, and
// generation of the index blocks for a directory model.

const dxRootInfoLen = 8

type dxEnt struct {
	hash  uint32
	block uint64
}

// putDx writes a dx count/limit header and entries at off, plus the dx tail
// checksum with metadata_csum.
func (f *FS) putDx(b []byte, off, limit int, ents []dxEnt, d *dirModel) {
	put16(b, off, uint16(limit))
	put16(b, off+2, uint16(len(ents)))
	put32(b, off+4, uint32(ents[0].block))
	for i := 1; i < len(ents); i++ {
		put32(b, off+i*dxEntrySize, ents[i].hash)
		put32(b, off+i*dxEntrySize+4, uint32(ents[i].block))
	}
	if f.csum {
		t := off + limit*dxEntrySize
		put32(b, t, 0)
		c := crc32c(f.inodeSeed(d.ino, d.gen), b[:off+len(ents)*dxEntrySize])
		c = crc32c(c, b[t:t+4])
		c = crc32c(c, []byte{0, 0, 0, 0})
		put32(b, t+4, c)
	}
}

// putIndex writes the dx root and index nodes of an indexed model.
func (f *FS) putIndex(d *dirModel, ft uint8) error {
	rootLimit, nodeLimit := f.dxLimits()
	ents := make([]dxEnt, len(d.leaves))
	for i, l := range d.leaves {
		ents[i] = dxEnt{hash: l.hash, block: l.logical}
	}
	next := 0
	for level := 0; level < d.levels; level++ {
		var up []dxEnt
		for i := 0; i < len(ents); i += nodeLimit {
			chunk := ents[i:min(len(ents), i+nodeLimit)]
			if next >= len(d.nodes) {
				return corruptf("directory inode %d: index needs more node blocks than reserved", d.ino)
			}
			lb := d.nodes[next]
			next++
			nb := f.blockNew(d.blocks[lb])
			put32(nb, 0, 0)
			put16(nb, 4, f.encodeRecLen(f.blockSize))
			f.putDx(nb, dxNodeEntries, nodeLimit, chunk, d)
			up = append(up, dxEnt{hash: chunk[0].hash, block: lb})
		}
		ents = up
	}
	if len(ents) > rootLimit {
		return corruptf("directory inode %d: index root overflow", d.ino)
	}
	if next != len(d.nodes) {
		// Every block of an indexed directory must be referenced.
		return corruptf("directory inode %d: %d index node blocks reserved, %d used", d.ino, len(d.nodes), next)
	}
	b := f.blockNew(d.blocks[0])
	put32(b, 0, d.ino)
	put16(b, 4, dotEntrySize)
	b[6], b[7], b[8] = 1, ft, '.'
	put32(b, 12, d.parent)
	put16(b, 16, f.encodeRecLen(f.blockSize-dotEntrySize))
	b[18], b[19], b[20], b[21] = 2, ft, '.', '.'
	b[dxRootInfoOff+4] = d.hashVer
	b[dxRootInfoOff+5] = dxRootInfoLen
	b[dxRootInfoOff+6] = uint8(d.levels)
	f.putDx(b, dxRootEntries, rootLimit, ents, d)
	return nil
}

// htreeLookup finds name through the directory index. ok is false when the
// index cannot be used (unknown hash, inconsistent header, or a hash run
// that crosses index nodes); the caller then scans linearly.
func (f *FS) htreeLookup(dir *inode, name string) (e dirEntry, found, ok bool, err error) {
	n, err := f.dirBlockCount(dir)
	if err != nil {
		return e, false, false, err
	}
	m, err := f.readMap(dir)
	if err != nil {
		return e, false, false, err
	}
	blockAt := func(lb uint64) ([]byte, bool, error) {
		if lb >= n {
			return nil, false, nil
		}
		r := m.lookup(lb)
		if r == nil || r.uninit {
			return nil, false, nil
		}
		b, err := f.block(r.phys + lb - r.logical)
		return b, err == nil, err
	}
	root, good, err := blockAt(0)
	if !good {
		return e, false, false, err
	}
	info := root[dxRootInfoOff:]
	hashVer, infoLen, levels := info[4], int(info[5]), int(info[6])
	maxLevels := 1
	if f.sb.hasIncompat(incompatLargeDir) {
		maxLevels = 2
	}
	if get32(info, 0) != 0 || hashVer > hashTea || infoLen != dxRootInfoLen || levels > maxLevels {
		return e, false, false, nil
	}
	h, _, _ := dxHash([]byte(name), f.effectiveHashVersion(hashVer), f.sb.hashSeed)
	cur, entOff := root, dxRootInfoOff+infoLen
	for level := 0; ; level++ {
		limit, count := int(get16(cur, entOff)), int(get16(cur, entOff+2))
		if count == 0 || count > limit || entOff+limit*dxEntrySize > f.blockSize {
			return e, false, false, nil
		}
		i := 0
		for j := 1; j < count; j++ {
			if get32(cur, entOff+j*dxEntrySize) > h {
				break
			}
			i = j
		}
		if level < levels {
			child := uint64(get32(cur, entOff+i*dxEntrySize+4) & dxBlockMask)
			nb, good, err := blockAt(child)
			if !good {
				return e, false, false, err
			}
			if get32(nb, 0) != 0 || f.decodeRecLen(get16(nb, 4)) != f.blockSize {
				return e, false, false, nil
			}
			cur, entOff = nb, dxNodeEntries
			continue
		}
		for {
			leaf := uint64(get32(cur, entOff+i*dxEntrySize+4) & dxBlockMask)
			lb, good, err := blockAt(leaf)
			if !good {
				return e, false, false, err
			}
			err = f.parseDirBlock(dir, leaf, lb, func(x dirEntry) error {
				if x.name == name {
					e, found = x, true
					return errStop
				}
				return nil
			})
			if err == errStop {
				return e, true, true, nil
			}
			if err != nil {
				return e, false, false, err
			}
			i++
			if i >= count {
				// The hash run might continue in the next index node.
				return e, false, levels == 0, nil
			}
			if get32(cur, entOff+i*dxEntrySize)&^1 != h {
				return e, false, true, nil
			}
		}
	}
}
