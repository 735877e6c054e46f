package fat

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/diskfs/go-diskfs/filesystem/fat12"
)

// This file is the bridge to the go-diskfs FAT engine.
//
// go-diskfs parses and rewrites a whole directory on every change, and its
// parser and serialiser are lossy in several ways this bridge has to absorb:
//
//   - it walks every directory of a path from the root: we instead build an
//     engine whose root *is* the directory being changed (fat12.NewFileSystem
//     with our table reporting that directory as the root cluster, or the
//     fixed FAT12/16 root region), so it only ever sees one directory;
//   - it glues stray long-name slots onto the next entry and does not check
//     checksums: directories with stray slots are compacted first;
//   - it panics (slice bounds out of range in writeDirectoryEntries) when the
//     entries it serialises are shorter than the directory's cluster chain,
//     e.g. a FAT32 root emptied by Remove, or any directory whose deleted
//     entries it drops: such directories are compacted and trimmed first;
//   - it panics or fails on 8.3 names with non-ASCII bytes and on long-named
//     entries whose 8.3 alias has characters outside its own table, and it
//     matches a new name against the volume label: those entries are masked
//     with unique placeholder 8.3 names for the duration of the call;
//   - it re-encodes every long name by UTF-8 byte count instead of UTF-16
//     units (mtools then shows garbage after non-ASCII names), corrupts zero
//     dates (to 2107), drops creation tenths and NT case flags of new entries,
//     stamps new entries with time.Now, can give a new entry an 8.3 alias
//     that another entry already has, and allocates a cluster for empty
//     files: after the call the directory is rebuilt from the snapshot taken
//     before it, with only the new entry taken from go-diskfs and fixed up.

// gdShort is the 8.3 name as go-diskfs matches it (fullShortName).
func gdShort(e *dirent) string {
	name := strings.TrimRight(string(e.sfn[:8]), " ")
	ext := strings.TrimRight(string(e.sfn[8:]), " ")
	if e.raw[12]&0x08 != 0 {
		name = strings.ToLower(name)
	}
	if e.raw[12]&0x10 != 0 {
		ext = strings.ToLower(ext)
	}
	if ext != "" {
		return name + "." + ext
	}
	return name
}

// gdSlots is how many slots go-diskfs uses when it re-serialises e: it sizes
// long names by their UTF-8 byte length.
func gdSlots(e *dirent) int {
	if e.long == nil {
		return 1
	}
	n := 0
	for _, u := range e.long {
		if l := utf8.RuneLen(rune(u)); l > 0 {
			n += l
		} else {
			n += 3 // a lone surrogate becomes U+FFFD
		}
	}
	return 1 + (n+12)/13
}

// engineName is the name we hand go-diskfs for a new entry called name.
// ASCII names go as they are. go-diskfs mishandles anything else: it tests
// byte(rune) against its 8.3 character table, so runes such as U+0141 "Ł"
// (low byte 'A') end up inside the 8.3 name and serialising it fails, and
// it sizes long names by UTF-8 bytes. Those get a unique lower-case ASCII
// stand-in of the same length (so go-diskfs reserves the slots the real
// long name needs); repair then writes the real name.
func engineName(d *dirData, name string) string {
	ascii := true
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return name
	}
	n := len(utf16Of(name))
	for i := 0; ; i++ {
		s := []byte(strings.Repeat("x", max(n, 8)))
		copy(s, fmt.Sprintf("bk%d", i))
		if d.lookup(string(s)) == nil {
			return string(s)
		}
	}
}

func gdNewSlots(name string) int {
	if !needsLFN(name) {
		return 1
	}
	return 1 + (len(name)+12)/13
}

// engine returns a go-diskfs filesystem whose root directory is d.
func (f *FS) engine(d *dirData) *fat12.FileSystem {
	g := f.g
	var rootOff int64
	rootMax := 0
	if d.ref.fixed {
		rootOff, rootMax = g.rootOffset, int(g.rootEntries)
	} else {
		f.t.root = d.ref.cluster
	}
	fat2 := g.fatOffset
	if g.numFATs == 2 {
		fat2 += g.fatBytes
	}
	e := fat12.NewFileSystem(disk.NewBackend(f.j, "fat"), nil, f.t,
		uint32(g.dataOffset), int(g.bytesPerCluster), f.dev.Size(), 0,
		rootOff, rootMax, uint64(g.fatOffset), uint64(fat2))
	e.WriteBootSectorFn = func() error { return errors.New("fat: the boot sector is not rewritten") }
	return e
}

// engineErr maps go-diskfs errors (which are mostly unwrapped strings) to
// our sentinels.
func engineErr(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "no space left"), strings.Contains(msg, "root directory is full"),
		strings.Contains(msg, "root directory full"):
		return fmt.Errorf("%w (%v)", fs.ErrNoSpace, err)
	}
	return fmt.Errorf("fat engine: %w", err)
}

// checkRoom refuses a new entry called name in d when it cannot fit: the
// fixed FAT12/16 root has a set number of slots (counted the way go-diskfs
// will write them), and no FAT directory may exceed 65536 slots.
func (f *FS) checkRoom(d *dirData, name string) error {
	slots := gdNewSlots(name)
	for _, e := range d.ents {
		slots += gdSlots(e)
	}
	if d.ref.fixed && slots > int(f.g.rootEntries) {
		return fmt.Errorf("root directory is full (%d entries): %w", f.g.rootEntries, fs.ErrNoSpace)
	}
	if slots > maxDirBytes/32 {
		return fmt.Errorf("directory is full (65536 entries): %w", fs.ErrNoSpace)
	}
	return nil
}

// prepared is a directory made safe for go-diskfs, with what is needed to
// rebuild it afterwards.
type prepared struct {
	ref  dirRef
	name string              // the real name of the new entry
	gd   string              // the name go-diskfs creates it under (engineName)
	snap map[[11]byte]dirent // every entry, keyed by the 8.3 name go-diskfs sees
}

// prepare readies d for a go-diskfs call that adds an entry called name;
// the call must use p.gd.
func (f *FS) prepare(d *dirData, name string) (*prepared, error) {
	// Compact when go-diskfs would misread stray long-name slots or panic on
	// a chain longer than what it serialises.
	need := max(1, (d.slotsInUse()*32+int(f.g.bytesPerCluster)-1)/int(f.g.bytesPerCluster))
	if d.stray > 0 || d.odd || !d.ref.fixed && len(d.clusters) > need {
		if err := f.rebuild(d, d.ents); err != nil {
			return nil, err
		}
	}
	p := &prepared{ref: d.ref, name: name, gd: engineName(d, name), snap: map[[11]byte]dirent{}}
	name = p.gd
	used := map[[11]byte]bool{}
	for _, e := range d.ents {
		used[e.sfn] = true
	}
	seq := 0
	placeholder := func() [11]byte {
		for {
			var s [11]byte
			copy(s[:], fmt.Sprintf("~BK%05d~~~", seq))
			seq++
			if !used[s] && !sameName(shortDisplay(s, 0), name) {
				used[s] = true
				return s
			}
		}
	}
	seen := map[[11]byte]bool{}
	masked := false
	for _, e := range d.ents {
		orig := *e
		mask := seen[e.sfn] || sameName(gdShort(e), name)
		for _, c := range e.sfn {
			if c < 0x20 || c >= 0x80 {
				mask = true
			}
		}
		if e.hasLong() && !validStoredShort(e.sfn) {
			mask = true
		}
		key := e.sfn
		if mask {
			key = placeholder()
			copy(d.buf[e.slot*32:], key[:])
			masked = true
		}
		seen[key] = true
		p.snap[key] = orig
	}
	if masked {
		if err := f.writeDir(d); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// repair rebuilds the directory after go-diskfs added the entry p.name: every
// entry that existed before is written back exactly as it was (names, case
// flags, timestamps, attributes), the new one is passed to fix, and
// everything is re-encoded canonically.
func (f *FS) repair(p *prepared, fix func(t *dirent, others []*dirent) error) error {
	d, err := f.readDir(p.ref)
	if err != nil {
		return err
	}
	var target *dirent
	out := make([]*dirent, 0, len(d.ents))
	ti := -1
	for _, e := range d.ents {
		if target == nil && e.kind == kindNormal &&
			(e.long != nil && e.name == p.gd || e.long == nil && sameName(gdShort(e), p.gd)) {
			target = e
			ti = len(out)
			out = append(out, e)
			continue
		}
		orig, ok := p.snap[e.sfn]
		if !ok {
			return fmt.Errorf("fat engine: unexpected entry %q after adding %q", e.name, p.name)
		}
		delete(p.snap, e.sfn)
		o := orig
		out = append(out, &o)
	}
	if target == nil {
		return fmt.Errorf("fat engine: entry %q not found after creating it", p.gd)
	}
	if len(p.snap) > 0 {
		return fmt.Errorf("fat engine: %d entries lost while adding %q", len(p.snap), p.name)
	}
	others := append(append([]*dirent{}, out[:ti]...), out[ti+1:]...)
	if err := nameEntry(target, p.name, p.gd != p.name, others); err != nil {
		return err
	}
	if err := fix(target, others); err != nil {
		return err
	}
	return f.rebuild(d, out)
}

// nameEntry gives the new entry t its final names: the 8.3 alias go-diskfs
// chose if it is valid and unique (and made from the real name), else one
// of ours, and a long name unless the name is itself a plain upper-case 8.3
// name.
func nameEntry(t *dirent, name string, standIn bool, others []*dirent) error {
	taken := func(s [11]byte) bool {
		for _, o := range others {
			if o.sfn == s {
				return true
			}
		}
		return false
	}
	if standIn || !validStoredShort(t.sfn) || taken(t.sfn) {
		s, err := makeShortName(name, taken)
		if err != nil {
			return err
		}
		t.sfn = s
	}
	t.long = nil
	if needsLFN(name) || shortDisplay(t.sfn, 0) != name {
		t.long = utf16Of(name)
	}
	t.raw[12] = 0
	return nil
}
