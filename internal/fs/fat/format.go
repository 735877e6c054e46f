package fat

import (
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/diskfs/go-diskfs/filesystem/fat12"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// FormatParams choose what Format creates.
type FormatParams struct {
	// Type is "fat32" (the default when empty), "fat16", "fat12", or "auto"
	// to choose by size (FAT12 below 8 MiB, FAT16 below 512 MiB, else FAT32).
	Type string
	// Label is the volume label, at most 11 ASCII characters; "" for none.
	Label string
	// VolumeID is the volume serial number (shown as "ABCD-1234").
	VolumeID uint32
	// Time stamps the volume label entry; zero means 1980-01-01, FAT's epoch.
	Time time.Time
}

// Format creates an empty FAT filesystem covering dev (rounded down to whole
// 512-byte sectors). The result depends only on dev's size and p: the
// reserved area is zeroed first, and go-diskfs's Create runs in reproducible
// mode, with its output fixed up as follows:
//
//   - FAT12/16: go-diskfs marks cluster 2 as used although the root directory
//     is not in the data area (fsck.fat: "Reclaimed 1 unused cluster");
//   - FAT32: its FAT size formula can leave the FAT two entries short of the
//     cluster count (fsck.fat and mtools: "Too few sectors in FAT"); we then
//     shrink the volume by the clusters the FAT cannot describe;
//   - FAT32: FSInfo is left "uninitialized"; we fill in the free count;
//   - the serial number is always 0 in reproducible mode; we set VolumeID;
//   - an empty label becomes a "NO NAME" label entry; we remove it, and we
//     stamp a real label's entry with p.Time instead of time.Now;
//   - the boot code is empty; we put a halt loop at the jump target.
func Format(dev fs.Device, p FormatParams) (err error) {
	defer func() {
		if r := recover(); r != nil {
			recovered(r)
			err = fmt.Errorf("format FAT: internal error: %v", r)
		}
	}()
	size := dev.Size() &^ 511
	typ := strings.ToLower(p.Type)
	switch typ {
	case "":
		typ = "fat32"
	case "auto":
		switch {
		case size < 8<<20:
			typ = "fat12"
		case size < 512<<20:
			typ = "fat16"
		default:
			typ = "fat32"
		}
	case "fat12", "fat16", "fat32":
	default:
		return fmt.Errorf("format FAT: unknown type %q (want fat12, fat16, fat32 or auto)", p.Type)
	}
	if err := checkLabel(p.Label); err != nil {
		return fmt.Errorf("format FAT: %w", err)
	}
	// Zero the start of the device so nothing of an earlier filesystem (an
	// ext4 superblock at 1 KiB, old FSInfo or backup sectors) survives in the
	// parts go-diskfs does not write.
	zero := make([]byte, min(size, 64<<10))
	if _, err := dev.WriteAt(zero, 0); err != nil {
		return fmt.Errorf("format FAT: %w", err)
	}
	b := disk.NewBackend(dev, "fat")
	switch typ {
	case "fat12":
		_, err = fat12.Create(b, size, 0, 512, p.Label, true)
	case "fat16":
		_, err = fat16.Create(b, size, 0, 512, p.Label, true)
	case "fat32":
		_, err = fat32.Create(b, size, 0, 512, p.Label, true)
	}
	if err != nil {
		return fmt.Errorf("format %s: %w", typ, err)
	}
	if err := patchBootSector(dev, typ, p.VolumeID); err != nil {
		return fmt.Errorf("format %s: %w", typ, err)
	}
	f, err := Open(dev, fs.Options{})
	if err != nil {
		return fmt.Errorf("format %s: result does not open: %w", typ, err)
	}
	if f.Type() != typ {
		return fmt.Errorf("format %s: a %d-byte volume gives %s; choose another type", typ, size, f.Type())
	}
	err = f.mutate("format", "/", func(string) error {
		if f.g.bits != 32 {
			f.t.set(2, 0)
		}
		root, err := f.readDir(f.rootRef())
		if err != nil {
			return err
		}
		l := root.label()
		switch {
		case l == nil:
		case p.Label == "":
			return f.deleteEntry(root, l)
		default:
			t := p.Time
			if t.IsZero() {
				t = minTime
			}
			setTimes(l.raw[:], t)
			return f.patchEntry(root, l)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("format %s: %w", typ, err)
	}
	return f.Close()
}

// checkLabel accepts what mkfs.fat and Windows accept in a volume label.
func checkLabel(l string) error {
	if len(l) > 11 {
		return fmt.Errorf("volume label %q is longer than 11 characters", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if c < 0x20 || c > 0x7e || strings.IndexByte(`"*+,./:;<=>?[\]|`, c) >= 0 {
			return fmt.Errorf("volume label %q: character %q is not allowed", l, c)
		}
	}
	if l != "" && l[0] == ' ' {
		return fmt.Errorf("volume label %q starts with a space", l)
	}
	return nil
}

// patchBootSector applies the boot-sector fixes listed on Format, to the
// primary and (FAT32) backup boot sector.
func patchBootSector(dev fs.Device, typ string, serial uint32) error {
	bs := make([]byte, 512)
	if err := readFull(dev, bs, 0); err != nil {
		return err
	}
	serialOff := 39
	if typ == "fat32" {
		serialOff = 67
		rsvd := int64(binary.LittleEndian.Uint16(bs[14:]))
		nfats := int64(bs[16])
		spc := int64(bs[13])
		spf := int64(binary.LittleEndian.Uint32(bs[36:]))
		total := int64(binary.LittleEndian.Uint32(bs[32:]))
		entries := spf * 512 / 4
		if spc == 0 || total <= rsvd+nfats*spf {
			return fmt.Errorf("go-diskfs produced an invalid FAT32 layout")
		}
		if clusters := (total - rsvd - nfats*spf) / spc; clusters > entries-2 {
			total = rsvd + nfats*spf + (entries-2)*spc
			binary.LittleEndian.PutUint32(bs[32:], uint32(total))
		}
		if clusters := (total - rsvd - nfats*spf) / spc; clusters <= maxFAT16 {
			return fmt.Errorf("volume too small for FAT32 (%d clusters, need at least %d); use fat16", clusters, maxFAT16+1)
		}
	}
	binary.LittleEndian.PutUint32(bs[serialOff:], serial)
	if bs[0] == 0xEB {
		if at := 2 + int(bs[1]); at+4 <= 510 {
			copy(bs[at:], []byte{0xFA, 0xF4, 0xEB, 0xFD}) // cli; hlt; jmp $-1
		}
	}
	if _, err := dev.WriteAt(bs, 0); err != nil {
		return err
	}
	if typ == "fat32" {
		if backup := int64(binary.LittleEndian.Uint16(bs[50:])); backup != 0 && backup != 0xFFFF {
			if _, err := dev.WriteAt(bs, backup*512); err != nil {
				return err
			}
		}
	}
	return nil
}
