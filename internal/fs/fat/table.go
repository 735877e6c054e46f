package fat

import (
	"encoding/binary"

	"github.com/diskfs/go-diskfs/filesystem/fat12"
)

// table is our in-memory FAT, shared by our own code and by the go-diskfs
// engine through its exported fat12.FATTable interface. go-diskfs v1.9.4 ships
// a 12- and a 32-bit table whose MaxCluster is derived from the FAT's byte
// size rather than the volume's cluster count (so it can allocate clusters
// past the end of the volume), rebuilds the whole table on every Bytes call,
// drops the FAT[1] clean-shutdown bits and the reserved top nibble of FAT32
// entries, and has no FAT16 table at all in a usable form. This one keeps the
// FAT exactly as the bytes on disk (one copy), decodes entries on access, and
// journals changes so a failed operation can be rolled back.
type table struct {
	bits    int
	raw     []byte // one FAT copy, exactly as on disk
	last    uint32 // highest valid data cluster
	root    uint32 // cluster go-diskfs treats as its root directory
	free    uint32 // free data clusters
	journal map[uint32]uint32
	// dirty[k] is the byte range of raw that may differ from FAT copy k on
	// the device; writes of the FAT compare only that range.
	dirty [2]struct{ lo, hi int }
	// cyclic marks clusters on loops (nil if none), found by analyze.
	cyclic []uint64
	// pointed marks clusters some other cluster points to (not chain
	// heads). Built by analyze, kept up to date by set.
	pointed []uint64
}

var _ fat12.FATTable = (*table)(nil)

const (
	eoc32 = 0x0FFFFFFF
	bad32 = 0x0FFFFFF7
)

func newTable(bits int, raw []byte, clusters uint32) *table {
	t := &table{bits: bits, raw: raw, last: clusters + 1}
	t.dirty[0].hi, t.dirty[1].hi = len(raw), len(raw)
	for c := uint32(2); c <= t.last; c++ {
		if t.get(c) == 0 {
			t.free++
		}
	}
	return t
}

// get returns the entry for cluster c in the 32-bit value space used by
// go-diskfs for each width (FAT32 entries are masked to 28 bits).
func (t *table) get(c uint32) uint32 {
	switch t.bits {
	case 12:
		o := int(c) + int(c)/2
		v := uint32(t.raw[o]) | uint32(t.raw[o+1])<<8
		if c&1 == 1 {
			return v >> 4
		}
		return v & 0xFFF
	case 16:
		return uint32(binary.LittleEndian.Uint16(t.raw[2*c:]))
	default:
		return binary.LittleEndian.Uint32(t.raw[4*c:]) & 0x0FFFFFFF
	}
}

func (t *table) put(c, v uint32) {
	o, n := int(c)*t.bits/8, 2+t.bits/32*2
	for k := range t.dirty {
		d := &t.dirty[k]
		if d.lo >= d.hi {
			d.lo, d.hi = o, o+n
		} else {
			d.lo, d.hi = min(d.lo, o), max(d.hi, o+n)
		}
	}
	switch t.bits {
	case 12:
		o := int(c) + int(c)/2
		v &= 0xFFF
		if c&1 == 1 {
			t.raw[o] = t.raw[o]&0x0F | byte(v<<4)
			t.raw[o+1] = byte(v >> 4)
		} else {
			t.raw[o] = byte(v)
			t.raw[o+1] = t.raw[o+1]&0xF0 | byte(v>>8)
		}
	case 16:
		binary.LittleEndian.PutUint16(t.raw[2*c:], uint16(v))
	default:
		o := 4 * c
		old := binary.LittleEndian.Uint32(t.raw[o:])
		binary.LittleEndian.PutUint32(t.raw[o:], old&0xF0000000|v&0x0FFFFFFF)
	}
}

// set changes a data cluster's entry, keeping the free count and the journal.
func (t *table) set(c, v uint32) {
	if c < 2 || c > t.last {
		return
	}
	old := t.get(c)
	if old == v {
		return
	}
	if t.journal != nil {
		if _, ok := t.journal[c]; !ok {
			t.journal[c] = old
		}
	}
	switch {
	case old == 0:
		t.free--
	case v == 0:
		t.free++
	}
	if t.pointed != nil {
		if t.isPointer(old) {
			t.pointed[old/64] &^= 1 << (old % 64)
		}
		if t.isPointer(v) {
			t.pointed[v/64] |= 1 << (v % 64)
		}
	}
	t.put(c, v)
}

// isHead reports whether no cluster points to c, i.e. c can start a chain.
func (t *table) isHead(c uint32) bool {
	return t.pointed == nil || t.pointed[c/64]&(1<<(c%64)) == 0
}

func (t *table) eoc() uint32 {
	switch t.bits {
	case 12:
		return 0xFFF
	case 16:
		return 0xFFFF
	}
	return eoc32
}

func (t *table) badMarker() uint32 {
	switch t.bits {
	case 12:
		return 0xFF7
	case 16:
		return 0xFFF7
	}
	return bad32
}

func (t *table) isEOC(v uint32) bool {
	switch t.bits {
	case 12:
		return v >= 0xFF8
	case 16:
		return v >= 0xFFF8
	}
	return v >= 0x0FFFFFF8
}

// next classifies entry v: a pointer to another valid cluster, end of chain,
// or something else (free, bad, reserved, out of range).
func (t *table) isPointer(v uint32) bool { return v >= 2 && v <= t.last }

// begin starts journaling changes for one operation.
func (t *table) begin() { t.journal = map[uint32]uint32{} }

// commit forgets the journal.
func (t *table) commit() { t.journal = nil }

// rollback restores every entry changed since begin.
func (t *table) rollback() {
	j := t.journal
	t.journal = nil
	for c, v := range j {
		t.set(c, v)
	}
}

// freeAtBegin reports whether cluster c was free when the operation began.
func (t *table) freeAtBegin(c uint32) bool {
	if c < 2 || c > t.last {
		return false
	}
	if v, ok := t.journal[c]; ok {
		return v == 0
	}
	return t.get(c) == 0
}

// firstFree returns the lowest free cluster, or 0 if there is none.
func (t *table) firstFree() uint32 {
	for c := uint32(2); c <= t.last; c++ {
		if t.get(c) == 0 {
			return c
		}
	}
	return 0
}

// fat12.FATTable, as used by the go-diskfs engine.

// ClusterValue reports entries past the volume as bad so that go-diskfs,
// which scans for free clusters strictly below MaxCluster, can allocate the
// last real cluster without ever touching one beyond it.
func (t *table) ClusterValue(n uint32) uint32 {
	if n > t.last {
		return t.badMarker()
	}
	return t.get(n)
}
func (t *table) SetCluster(n, val uint32) { t.set(n, val) }
func (t *table) IsEOC(val uint32) bool    { return t.isEOC(val) }
func (t *table) EOCMarker() uint32        { return t.eoc() }
func (t *table) UnusedMarker() uint32     { return 0 }
func (t *table) MaxCluster() uint32       { return t.last + 1 }
func (t *table) FATID() uint32            { return t.get(0) }
func (t *table) RootDirCluster() uint32   { return t.root }
func (t *table) Size() uint32             { return uint32(len(t.raw)) }
func (t *table) FromBytes(b []byte)       { copy(t.raw, b) }
func (t *table) Bytes() []byte            { return t.raw }
