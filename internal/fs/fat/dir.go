package fat

import (
	"encoding/binary"
	"strings"
	"time"
	"unicode"
	"unicode/utf16"

	"github.com/bakeryhq/bakery/internal/fs"
)

const (
	attrReadOnly = 0x01
	attrHidden   = 0x02
	attrSystem   = 0x04
	attrLabel    = 0x08
	attrDir      = 0x10
	attrArchive  = 0x20
	attrLFN      = 0x0F
)

// dirRef names a directory: the fixed FAT12/16 root region, or the first
// cluster of a cluster-chain directory (including the FAT32 root).
type dirRef struct {
	fixed   bool
	cluster uint32
}

type entKind int

const (
	kindNormal entKind = iota
	kindDot
	kindDotDot
	kindLabel
)

// dirent is one directory entry: an 8.3 slot plus its long name, if any.
type dirent struct {
	kind    entKind
	name    string   // the name we list and match: long name, else 8.3 name
	long    []uint16 // long name units, nil if the entry has none
	sfn     [11]byte
	raw     [32]byte // the 8.3 slot as on disk
	first   int      // first slot (LFN or 8.3) of the entry
	slot    int      // the 8.3 slot
	hidden  bool     // a name no path can address ("/" or NUL in it)
	cluster uint32
	size    uint32
}

func (e *dirent) attr() byte    { return e.raw[11] }
func (e *dirent) isDir() bool   { return e.raw[11]&attrDir != 0 }
func (e *dirent) listed() bool  { return e.kind == kindNormal && !e.hidden }
func (e *dirent) hasLong() bool { return e.long != nil }

// dirData is a directory read into memory, slot by slot.
type dirData struct {
	ref      dirRef
	buf      []byte
	clusters []uint32 // the chain; nil for the fixed root
	ents     []*dirent
	stray    int                // LFN slots that belong to no valid long name
	odd      bool               // valid long names encoded in a way go-diskfs reads differently
	index    map[string]*dirent // folded name -> first listed entry, built on demand
}

func (d *dirData) slots() int { return len(d.buf) / 32 }

// lookup finds the listed entry called name, matching long and 8.3 names
// case-insensitively as FAT does; the first entry in slot order wins.
func (d *dirData) lookup(name string) *dirent {
	if len(d.ents) > 32 {
		if d.index == nil {
			d.buildIndex()
		}
		return d.index[foldKey(name)]
	}
	for _, e := range d.ents {
		if !e.listed() {
			continue
		}
		if strings.EqualFold(e.name, name) || e.hasLong() && strings.EqualFold(shortDisplay(e.sfn, e.raw[12]), name) {
			return e
		}
	}
	return nil
}

func (d *dirData) label() *dirent {
	for _, e := range d.ents {
		if e.kind == kindLabel {
			return e
		}
	}
	return nil
}

// live reports whether the directory has entries besides "." and "..".
func (d *dirData) hasChildren() bool {
	for _, e := range d.ents {
		if e.kind == kindNormal {
			return true
		}
	}
	return false
}

// buildIndex makes lookup a map access (directories read through the cache
// are shared by concurrent readers, so it is built before they are shared).
func (d *dirData) buildIndex() {
	d.index = make(map[string]*dirent, len(d.ents))
	add := func(k string, e *dirent) {
		if _, ok := d.index[k]; !ok {
			d.index[k] = e
		}
	}
	for _, e := range d.ents {
		if e.listed() {
			add(foldKey(e.name), e)
			if e.hasLong() {
				add(foldKey(shortDisplay(e.sfn, e.raw[12])), e)
			}
		}
	}
}

// foldKey maps a name to a key that is equal for two names exactly when
// strings.EqualFold says they are: every rune becomes the smallest rune of
// its Unicode simple case-folding orbit.
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToUpper(s)
	}
	var sb strings.Builder
	for _, r := range s {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		sb.WriteRune(m)
	}
	return sb.String()
}

// readDir reads and parses the directory ref. Its size is bounded by the FAT
// limit of 65536 slots, so a looping or absurdly long chain is corruption.
func (f *FS) readDir(ref dirRef) (*dirData, error) {
	g := f.g
	d := &dirData{ref: ref}
	if ref.fixed {
		d.buf = make([]byte, g.rootBytes)
		if err := f.readFull(d.buf, g.rootOffset); err != nil {
			return nil, err
		}
	} else {
		limit := uint32(maxDirBytes / g.bytesPerCluster)
		if limit == 0 {
			limit = 1
		}
		list, err := f.t.clusterList(ref.cluster, limit)
		if err != nil {
			return nil, err
		}
		if !f.t.isEOC(f.t.get(list[len(list)-1])) {
			return nil, corruptf("directory at cluster %d is larger than 65536 entries or its chain loops", ref.cluster)
		}
		d.clusters = list
		d.buf = make([]byte, int64(len(list))*g.bytesPerCluster)
		for i, c := range list {
			if err := f.readFull(d.buf[int64(i)*g.bytesPerCluster:int64(i+1)*g.bytesPerCluster], g.clusterOffset(c)); err != nil {
				return nil, err
			}
		}
	}
	d.parse(f.g.bits)
	return d, nil
}

// parse decodes the slots of d.buf. Long-name runs are accepted only when
// their sequence numbers count down to 1 and their checksum matches the 8.3
// slot that follows, as Windows and Linux require; any other LFN slot is
// counted as stray and ignored.
func (d *dirData) parse(bits int) {
	d.ents = nil
	d.index = nil
	d.stray = 0
	d.odd = false
	var (
		runStart = -1
		runNext  int
		runSum   byte
		units    []uint16
	)
	drop := func(i int) {
		if runStart >= 0 {
			d.stray += i - runStart
		}
		runStart = -1
	}
	n := d.slots()
	for i := 0; i < n; i++ {
		s := d.buf[i*32 : i*32+32]
		if s[0] == 0 {
			drop(i)
			break
		}
		if s[0] == 0xE5 {
			drop(i)
			continue
		}
		if s[11]&0x3F == attrLFN {
			seq := int(s[0] & 0x3F)
			switch {
			case s[0]&0x40 != 0 && seq >= 1 && seq <= 20:
				drop(i)
				runStart, runNext, runSum = i, seq, s[13]
				units = make([]uint16, 13*seq)
			case runStart >= 0 && s[0] == byte(runNext) && s[13] == runSum:
			default:
				drop(i)
				d.stray++
				continue
			}
			if s[11] != attrLFN {
				d.odd = true
			}
			u := lfnUnits(s)
			copy(units[(runNext-1)*13:], u[:])
			runNext--
			continue
		}
		e := &dirent{first: i, slot: i}
		copy(e.raw[:], s)
		copy(e.sfn[:], s[:11])
		e.size = binary.LittleEndian.Uint32(s[28:])
		e.cluster = uint32(binary.LittleEndian.Uint16(s[26:]))
		if bits == 32 {
			e.cluster |= uint32(binary.LittleEndian.Uint16(s[20:])) << 16
		}
		if runStart >= 0 {
			if runNext == 0 && lfnChecksum(e.sfn) == runSum {
				end := 0
				for end < len(units) && units[end] != 0 {
					end++
				}
				if len(units)/13 != (end+12)/13 {
					// Slots past the one holding the NUL: go-diskfs
					// reads their padding as characters.
					d.odd = true
				}
				if end > 0 {
					e.long = units[:end]
					e.first = runStart
				} else {
					d.stray += i - runStart
				}
			} else {
				d.stray += i - runStart
			}
			runStart = -1
		}
		switch {
		case s[11]&attrLabel != 0:
			e.kind = kindLabel
			e.name = strings.TrimRight(string(s[:11]), " ")
		case string(s[:11]) == ".          ":
			e.kind = kindDot
			e.name = "."
		case string(s[:11]) == "..         ":
			e.kind = kindDotDot
			e.name = ".."
		default:
			if e.long != nil {
				e.name = string(utf16.Decode(e.long))
			} else {
				e.name = shortDisplay(e.sfn, s[12])
			}
			e.hidden = e.name == "" || e.name == "." || e.name == ".." || len(e.name) > fs.MaxNameLen ||
				strings.ContainsAny(e.name, "/\x00")
		}
		d.ents = append(d.ents, e)
	}
	drop(n)
}

// FAT timestamps: local wall-clock time with 2-second resolution, years
// 1980-2107. We store and read them as UTC so images do not depend on the
// build machine's time zone.
var (
	minTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
)

func clampTime(t time.Time) time.Time {
	t = t.UTC()
	if t.Before(minTime) {
		return minTime
	}
	if t.After(maxTime) {
		return maxTime
	}
	return t
}

func encodeTime(t time.Time) (date, tm uint16, tenths byte) {
	t = clampTime(t)
	date = uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day())
	tm = uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2)
	tenths = byte(t.Second()%2*100 + t.Nanosecond()/10_000_000)
	return
}

func decodeTime(date, tm uint16) time.Time {
	if date == 0 {
		return time.Time{}
	}
	return time.Date(int(date>>9)+1980, time.Month(date>>5&0x0F), int(date&0x1F),
		int(tm>>11), int(tm>>5&0x3F), int(tm&0x1F)*2, 0, time.UTC)
}

func (e *dirent) modTime() time.Time {
	return decodeTime(binary.LittleEndian.Uint16(e.raw[24:]), binary.LittleEndian.Uint16(e.raw[22:]))
}

// setTimes sets the creation, access and modification stamps of an 8.3 slot.
func setTimes(s []byte, t time.Time) {
	date, tm, tenths := encodeTime(t)
	s[13] = tenths
	binary.LittleEndian.PutUint16(s[14:], tm)
	binary.LittleEndian.PutUint16(s[16:], date)
	binary.LittleEndian.PutUint16(s[18:], date)
	binary.LittleEndian.PutUint16(s[22:], tm)
	binary.LittleEndian.PutUint16(s[24:], date)
}

// setModTime sets the modification time and access date only.
func setModTime(s []byte, t time.Time) {
	date, tm, _ := encodeTime(t)
	binary.LittleEndian.PutUint16(s[18:], date)
	binary.LittleEndian.PutUint16(s[22:], tm)
	binary.LittleEndian.PutUint16(s[24:], date)
}

func setCluster(s []byte, c uint32) {
	binary.LittleEndian.PutUint16(s[26:], uint16(c))
	binary.LittleEndian.PutUint16(s[20:], uint16(c>>16))
}

// encode returns the canonical slots of e: its long name (if any) encoded
// for its current 8.3 name, then the 8.3 slot.
func (e *dirent) encode() []byte {
	var out []byte
	if e.long != nil {
		for _, s := range encodeLFN(e.long, lfnChecksum(e.sfn)) {
			out = append(out, s[:]...)
		}
	}
	copy(e.raw[:11], e.sfn[:])
	return append(out, e.raw[:]...)
}

// slotsNeeded is how many slots e takes when encoded.
func (e *dirent) slotsNeeded() int {
	return 1 + (len(e.long)+12)/13
}

// writeDir writes the whole directory buffer back. Through the journal only
// the sectors that changed reach the device buffer.
func (f *FS) writeDir(d *dirData) error {
	if d.ref.fixed {
		_, err := f.j.WriteAt(d.buf, f.g.rootOffset)
		return err
	}
	bpc := f.g.bytesPerCluster
	for i, c := range d.clusters {
		if _, err := f.j.WriteAt(d.buf[int64(i)*bpc:int64(i+1)*bpc], f.g.clusterOffset(c)); err != nil {
			return err
		}
	}
	return nil
}

// rebuild rewrites d with ents packed in order, each canonically encoded,
// zero-filling the rest, and trims a cluster directory's chain to what the
// entries need (at least one cluster). It never needs more room than the
// directory has when ents are entries it already holds.
func (f *FS) rebuild(d *dirData, ents []*dirent) error {
	var buf []byte
	for _, e := range ents {
		buf = append(buf, e.encode()...)
	}
	if len(buf) > len(d.buf) {
		return corruptf("directory entries no longer fit the directory")
	}
	copy(d.buf, buf)
	clear(d.buf[len(buf):])
	if !d.ref.fixed {
		bpc := int(f.g.bytesPerCluster)
		need := max(1, (len(buf)+bpc-1)/bpc)
		if need < len(d.clusters) {
			f.t.set(d.clusters[need-1], f.t.eoc())
			for _, c := range d.clusters[need:] {
				f.t.set(c, 0)
			}
			d.clusters = d.clusters[:need]
			d.buf = d.buf[:need*bpc]
		}
	}
	if err := f.writeDir(d); err != nil {
		return err
	}
	d.parse(f.g.bits)
	return nil
}

// deleteEntry marks every slot of e deleted, as Windows and Linux do.
func (f *FS) deleteEntry(d *dirData, e *dirent) error {
	for i := e.first; i <= e.slot; i++ {
		d.buf[i*32] = 0xE5
	}
	if err := f.writeDir(d); err != nil {
		return err
	}
	d.parse(f.g.bits)
	return nil
}

// patchEntry writes e.raw back into its 8.3 slot.
func (f *FS) patchEntry(d *dirData, e *dirent) error {
	copy(d.buf[e.slot*32:], e.raw[:])
	return f.writeDir(d)
}

// slotsInUse counts slots taken by entries (canonically encoded).
func (d *dirData) slotsInUse() int {
	n := 0
	for _, e := range d.ents {
		n += e.slotsNeeded()
	}
	return n
}
