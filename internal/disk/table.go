package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"
)

// Table types.
const (
	TableMBR  = "mbr"
	TableGPT  = "gpt"
	TableNone = "none" // a bare filesystem image: one pseudo-partition covering the disk
)

// Common partition type codes.
const (
	MBRTypeFAT32LBA = "0c"
	MBRTypeFAT16    = "06"
	MBRTypeLinux    = "83"
	MBRTypeEFI      = "ef"

	GPTTypeEFI       = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	GPTTypeBasicData = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
	GPTTypeLinuxFS   = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
)

// Bounds on what we accept from an untrusted GPT header.
const (
	maxGPTEntries   = 4096
	maxGPTEntrySize = 4096
)

// Partition is one entry of a partition table, in bytes.
type Partition struct {
	Index      int    `json:"index"` // 1-based
	Start      int64  `json:"start"`
	Size       int64  `json:"size"`
	Type       string `json:"type"` // MBR: two hex digits; GPT: type GUID (upper case)
	Name       string `json:"name,omitempty"`
	UUID       string `json:"uuid,omitempty"` // GPT partition GUID or MBR PARTUUID (disk id + index)
	Bootable   bool   `json:"bootable,omitempty"`
	Attributes uint64 `json:"attributes,omitempty"`
}

// End is the first byte after the partition.
func (p Partition) End() int64 { return p.Start + p.Size }

// Table is a partition table.
type Table struct {
	Type       string      `json:"table"`
	SectorSize int         `json:"sector_size"`
	DiskID     string      `json:"disk_id,omitempty"` // MBR signature (8 hex) or GPT disk GUID
	Partitions []Partition `json:"partitions"`
}

// Partition returns the partition with the given 1-based index.
func (t *Table) Partition(index int) (Partition, error) {
	for _, p := range t.Partitions {
		if p.Index == index {
			return p, nil
		}
	}
	return Partition{}, fmt.Errorf("partition %d does not exist (the %s table has %d)", index, t.Type, len(t.Partitions))
}

// detectSectorSize looks for a GPT header at LBA 1 for 512 and 4096 byte
// sectors; anything else is treated as 512.
func detectSectorSize(d *Disk, f interface {
	ReadAt([]byte, int64) (int, error)
}) int {
	sig := make([]byte, 8)
	for _, ss := range []int{512, 4096} {
		if int64(ss)*2 > d.size {
			break
		}
		if _, err := f.ReadAt(sig, int64(ss)); err == nil && string(sig) == "EFI PART" {
			return ss
		}
	}
	return 512
}

// ReadTable parses the partition table. A disk with no table but a
// filesystem at offset 0 yields a TableNone with one partition.
func (d *Disk) ReadTable() (*Table, error) {
	if d.size < 512 {
		return nil, fmt.Errorf("%s: %w (only %d bytes)", d.path, ErrNotDiskImage, d.size)
	}
	sector0 := make([]byte, 512)
	if _, err := d.ReadAt(sector0, 0); err != nil {
		return nil, fmt.Errorf("read %s sector 0: %w", d.path, err)
	}
	hdr := make([]byte, 92)
	if int64(d.sectorSize)+92 <= d.size {
		if _, err := d.ReadAt(hdr, int64(d.sectorSize)); err != nil {
			return nil, fmt.Errorf("read %s GPT header: %w", d.path, err)
		}
	}
	switch {
	case string(hdr[:8]) == "EFI PART" && hasProtectiveMBR(sector0):
		return d.readGPT(hdr)
	case looksLikeMBR(sector0):
		return d.readMBR(sector0)
	case bareFilesystemAt(d, 0):
		return &Table{Type: TableNone, SectorSize: d.sectorSize,
			Partitions: []Partition{{Index: 1, Start: 0, Size: d.size}}}, nil
	}
	return nil, fmt.Errorf("%s: %w", d.path, ErrNotDiskImage)
}

func hasProtectiveMBR(s []byte) bool {
	if s[510] != 0x55 || s[511] != 0xaa {
		return false
	}
	for i := 0; i < 4; i++ {
		if s[446+i*16+4] == 0xee {
			return true
		}
	}
	return false
}

// looksLikeMBR tells a partition table from a FAT boot sector, which also
// ends in 55 AA: every entry must have a valid boot flag, at least one must be
// used, and used entries must not be obviously bogus.
func looksLikeMBR(s []byte) bool {
	if s[510] != 0x55 || s[511] != 0xaa {
		return false
	}
	used := 0
	for i := 0; i < 4; i++ {
		e := s[446+i*16 : 446+i*16+16]
		if e[0] != 0 && e[0] != 0x80 {
			return false
		}
		if e[4] == 0 {
			continue
		}
		if binary.LittleEndian.Uint32(e[12:16]) == 0 {
			return false
		}
		used++
	}
	return used > 0
}

// bareFilesystemAt recognises an ext2/3/4 superblock or FAT boot sector.
func bareFilesystemAt(d *Disk, off int64) bool {
	b := make([]byte, 2048)
	if n, _ := d.ReadAt(b, off); n < 1082 {
		return false
	}
	if binary.LittleEndian.Uint16(b[1024+56:]) == 0xef53 {
		return true
	}
	if b[510] == 0x55 && b[511] == 0xaa && (bytes.Equal(b[82:87], []byte("FAT32")) || bytes.Equal(b[54:57], []byte("FAT"))) {
		return true
	}
	return false
}

func (d *Disk) readMBR(sector0 []byte) (*Table, error) {
	t, err := mbr.Read(bytesFile(sector0), 512, 512)
	if err != nil {
		return nil, fmt.Errorf("read MBR of %s: %w", d.path, err)
	}
	out := &Table{Type: TableMBR, SectorSize: d.sectorSize, DiskID: t.UUID()}
	for _, p := range t.Partitions {
		if p.Type == mbr.Empty || p.Size == 0 {
			continue
		}
		part := Partition{
			Index:    p.Index,
			Start:    int64(p.Start) * int64(d.sectorSize),
			Size:     int64(p.Size) * int64(d.sectorSize),
			Type:     fmt.Sprintf("%02x", byte(p.Type)),
			UUID:     fmt.Sprintf("%s-%02x", out.DiskID, p.Index),
			Bootable: p.Bootable,
		}
		out.Partitions = append(out.Partitions, part)
	}
	return out, nil
}

func (d *Disk) readGPT(hdr []byte) (*Table, error) {
	ss := int64(d.sectorSize)
	hdrSize := binary.LittleEndian.Uint32(hdr[12:16])
	entriesLBA := binary.LittleEndian.Uint64(hdr[72:80])
	count := binary.LittleEndian.Uint32(hdr[80:84])
	entrySize := binary.LittleEndian.Uint32(hdr[84:88])
	switch {
	case hdrSize < 92 || int64(hdrSize) > ss:
		return nil, fmt.Errorf("GPT of %s: header size %d out of range", d.path, hdrSize)
	case count == 0 || count > maxGPTEntries:
		return nil, fmt.Errorf("GPT of %s: %d partition entries (limit %d)", d.path, count, maxGPTEntries)
	case entrySize < 128 || entrySize > maxGPTEntrySize || entrySize%8 != 0:
		return nil, fmt.Errorf("GPT of %s: partition entry size %d out of range", d.path, entrySize)
	case entriesLBA < 2 || entriesLBA > uint64(d.size/ss):
		return nil, fmt.Errorf("GPT of %s: partition array at LBA %d is outside the image", d.path, entriesLBA)
	}
	arrayBytes := int64(count) * int64(entrySize)
	if int64(entriesLBA)*ss+arrayBytes > d.size {
		return nil, fmt.Errorf("GPT of %s: partition array runs past the end of the image", d.path)
	}
	// Hand go-diskfs exactly the sectors it will read, so a lying header can
	// never make it allocate or read beyond what we checked.
	window := int64(entriesLBA)*ss + arrayBytes
	buf := make([]byte, window)
	if _, err := d.ReadAt(buf, 0); err != nil {
		return nil, fmt.Errorf("read GPT of %s: %w", d.path, err)
	}
	t, err := gpt.Read(sizedBytesFile(buf, d.size), d.sectorSize, d.sectorSize)
	if err != nil {
		return nil, fmt.Errorf("read GPT of %s: %w", d.path, err)
	}
	out := &Table{Type: TableGPT, SectorSize: d.sectorSize, DiskID: strings.ToUpper(t.GUID)}
	for _, p := range t.Partitions {
		if p.Type == gpt.Unused {
			continue
		}
		if p.End < p.Start {
			return nil, fmt.Errorf("GPT of %s: partition %d ends (LBA %d) before it starts (LBA %d)", d.path, p.Index, p.End, p.Start)
		}
		out.Partitions = append(out.Partitions, Partition{
			Index:      p.Index,
			Start:      int64(p.Start) * ss,
			Size:       int64(p.End-p.Start+1) * ss,
			Type:       strings.ToUpper(string(p.Type)),
			Name:       p.Name,
			UUID:       strings.ToUpper(p.GUID),
			Attributes: p.Attributes,
		})
	}
	return out, nil
}

// Validate checks that partitions are in order, aligned to sectors, inside
// the disk and not overlapping.
func (t *Table) Validate(diskSize int64) error {
	ps := append([]Partition(nil), t.Partitions...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].Start < ps[j].Start })
	var errs []error
	for i, p := range ps {
		if p.Size <= 0 {
			errs = append(errs, fmt.Errorf("partition %d has no size", p.Index))
		}
		if p.Start%int64(t.SectorSize) != 0 || p.Size%int64(t.SectorSize) != 0 {
			errs = append(errs, fmt.Errorf("partition %d is not aligned to %d-byte sectors", p.Index, t.SectorSize))
		}
		if p.End() > diskSize {
			errs = append(errs, fmt.Errorf("partition %d ends at byte %d, past the end of the %d-byte image", p.Index, p.End(), diskSize))
		}
		if i > 0 && p.Start < ps[i-1].End() {
			errs = append(errs, fmt.Errorf("partition %d overlaps partition %d", p.Index, ps[i-1].Index))
		}
	}
	return errors.Join(errs...)
}

// WriteTable writes t to the disk (buffered until Commit). For GPT, DiskID
// and every partition UUID must be set so that output is reproducible.
func (d *Disk) WriteTable(t *Table) error {
	if t.SectorSize != 0 && t.SectorSize != d.sectorSize {
		return fmt.Errorf("write partition table of %s: table uses %d-byte sectors, disk %d", d.path, t.SectorSize, d.sectorSize)
	}
	withSize := *t
	withSize.SectorSize = d.sectorSize
	if err := withSize.Validate(d.size); err != nil {
		return fmt.Errorf("write partition table of %s: %w", d.path, err)
	}
	ss := int64(d.sectorSize)
	w := writerFile{d}
	switch t.Type {
	case TableMBR:
		if len(t.Partitions) > 4 {
			return fmt.Errorf("write MBR of %s: %d partitions, MBR holds 4 primary partitions", d.path, len(t.Partitions))
		}
		mt := &mbr.Table{LogicalSectorSize: d.sectorSize, PhysicalSectorSize: d.sectorSize}
		for _, p := range t.Partitions {
			var typ byte
			if _, err := fmt.Sscanf(p.Type, "%02x", &typ); err != nil || len(p.Type) != 2 {
				return fmt.Errorf("write MBR of %s: partition %d type %q is not two hex digits", d.path, p.Index, p.Type)
			}
			if p.Start/ss > 0xffffffff || p.Size/ss > 0xffffffff {
				return fmt.Errorf("write MBR of %s: partition %d is beyond the 2 TiB MBR limit", d.path, p.Index)
			}
			mt.Partitions = append(mt.Partitions, &mbr.Partition{
				Index: p.Index, Bootable: p.Bootable, Type: mbr.Type(typ),
				Start: uint32(p.Start / ss), Size: uint32(p.Size / ss),
			})
		}
		// MBR entries are positional: pad to the highest index.
		sort.Slice(mt.Partitions, func(i, j int) bool { return mt.Partitions[i].Index < mt.Partitions[j].Index })
		if err := mt.Write(w, d.size); err != nil {
			return fmt.Errorf("write MBR of %s: %w", d.path, err)
		}
		if t.DiskID != "" {
			var id uint32
			if _, err := fmt.Sscanf(t.DiskID, "%08x", &id); err != nil {
				return fmt.Errorf("write MBR of %s: disk id %q is not 8 hex digits", d.path, t.DiskID)
			}
			b := make([]byte, 4)
			binary.LittleEndian.PutUint32(b, id)
			if _, err := d.WriteAt(b, 440); err != nil {
				return err
			}
		}
		return nil
	case TableGPT:
		if t.DiskID == "" {
			return fmt.Errorf("write GPT of %s: disk GUID must be set", d.path)
		}
		gt := &gpt.Table{LogicalSectorSize: d.sectorSize, PhysicalSectorSize: d.sectorSize,
			ProtectiveMBR: true, GUID: t.DiskID}
		for _, p := range t.Partitions {
			if p.UUID == "" {
				return fmt.Errorf("write GPT of %s: partition %d GUID must be set", d.path, p.Index)
			}
			gt.Partitions = append(gt.Partitions, &gpt.Partition{
				Index: p.Index, Start: uint64(p.Start / ss), End: uint64(p.End()/ss - 1),
				Size: uint64(p.Size), Type: gpt.Type(strings.ToUpper(p.Type)), Name: p.Name,
				GUID: p.UUID, Attributes: p.Attributes,
			})
		}
		sort.Slice(gt.Partitions, func(i, j int) bool { return gt.Partitions[i].Index < gt.Partitions[j].Index })
		if err := gt.Write(w, d.size); err != nil {
			return fmt.Errorf("write GPT of %s: %w", d.path, err)
		}
		return nil
	}
	return fmt.Errorf("write partition table of %s: unknown table type %q", d.path, t.Type)
}
