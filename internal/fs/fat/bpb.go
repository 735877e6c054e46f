package fat

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"strings"

	"github.com/bakeryhq/bakery/internal/fs"
)

// Limits on what we accept from an (untrusted) boot sector. They are far above
// anything a real boot or EFI partition uses and keep every allocation we make
// proportional to the device.
const (
	maxClusterBytes = 512 << 10 // 128 sectors of 4 KiB
	maxFATBytes     = 64 << 20  // one FAT copy held in memory (16M FAT32 clusters)
	maxFAT12        = 4084      // cluster-count limits from the Microsoft FAT spec
	maxFAT16        = 65524
	maxFAT32        = 0x0FFFFFF5
	maxDirBytes     = 65536 * 32 // a FAT directory holds at most 65536 slots
)

// geometry is the validated layout of a FAT volume, all offsets in bytes from
// the start of the device.
type geometry struct {
	bits            int // 12, 16 or 32
	bytesPerSector  int64
	sectorsPerClus  int64
	bytesPerCluster int64
	reservedSectors int64
	numFATs         int64
	fatSectors      int64
	totalSectors    int64
	rootEntries     int64 // FAT12/16 fixed root directory slots
	clusters        uint32
	fatOffset       int64 // first FAT copy
	fatBytes        int64 // one copy
	activeFAT       int64 // copy we read (FAT32 with mirroring disabled)
	rootOffset      int64 // FAT12/16 fixed root directory
	rootBytes       int64
	dataOffset      int64
	rootCluster     uint32 // FAT32
	fsInfoSector    int64  // FAT32; 0 if none
	backupBoot      int64  // FAT32; 0 if none
	media           byte
	serial          uint32
	hasSerial       bool
	bpbLabel        string
}

// lastCluster is the highest valid data cluster number.
func (g *geometry) lastCluster() uint32 { return g.clusters + 1 }

// clusterOffset is the byte offset of cluster c (c >= 2).
func (g *geometry) clusterOffset(c uint32) int64 {
	return g.dataOffset + int64(c-2)*g.bytesPerCluster
}

func (g *geometry) typeName() string { return fmt.Sprintf("fat%d", g.bits) }

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{fs.ErrCorrupt}, args...)...)
}

// readGeometry reads and validates the boot sector of dev. Every value that
// later becomes an offset, a size or a loop bound is checked here, so nothing
// downstream reads outside the device or allocates more than it holds.
func readGeometry(dev fs.Device) (*geometry, error) {
	size := dev.Size()
	if size < 512 {
		return nil, corruptf("device of %d bytes is too small for a FAT filesystem", size)
	}
	bs := make([]byte, 512)
	if _, err := dev.ReadAt(bs, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("read boot sector: %w", err)
	}
	if bs[510] != 0x55 || bs[511] != 0xAA {
		return nil, corruptf("no boot sector signature 0x55AA")
	}
	le16 := func(o int) int64 { return int64(binary.LittleEndian.Uint16(bs[o:])) }
	le32 := func(o int) int64 { return int64(binary.LittleEndian.Uint32(bs[o:])) }

	g := &geometry{
		bytesPerSector:  le16(11),
		sectorsPerClus:  int64(bs[13]),
		reservedSectors: le16(14),
		numFATs:         int64(bs[16]),
		rootEntries:     le16(17),
		media:           bs[21],
	}
	if g.bytesPerSector < 512 || g.bytesPerSector > 4096 || bits.OnesCount64(uint64(g.bytesPerSector)) != 1 {
		return nil, corruptf("bytes per sector %d (want 512, 1024, 2048 or 4096)", g.bytesPerSector)
	}
	if g.sectorsPerClus == 0 || bits.OnesCount64(uint64(g.sectorsPerClus)) != 1 {
		return nil, corruptf("sectors per cluster %d is not a power of two", g.sectorsPerClus)
	}
	g.bytesPerCluster = g.bytesPerSector * g.sectorsPerClus
	if g.bytesPerCluster > maxClusterBytes {
		return nil, corruptf("cluster size %d bytes is too large", g.bytesPerCluster)
	}
	if g.reservedSectors < 1 {
		return nil, corruptf("reserved sector count is 0")
	}
	if g.numFATs < 1 || g.numFATs > 2 {
		return nil, corruptf("number of FATs %d (want 1 or 2)", g.numFATs)
	}
	if g.media != 0xF0 && g.media < 0xF8 {
		return nil, corruptf("media descriptor 0x%02x is invalid", g.media)
	}
	g.totalSectors = le16(19)
	if g.totalSectors == 0 {
		g.totalSectors = le32(32)
	}
	if g.totalSectors == 0 {
		return nil, corruptf("total sector count is 0")
	}
	if g.totalSectors > size/g.bytesPerSector {
		return nil, corruptf("filesystem of %d sectors of %d bytes extends beyond the %d-byte device",
			g.totalSectors, g.bytesPerSector, size)
	}
	fat32Layout := le16(22) == 0
	g.fatSectors = le16(22)
	if fat32Layout {
		g.fatSectors = le32(36)
		if g.rootEntries != 0 {
			return nil, corruptf("FAT32 boot sector with %d root directory entries", g.rootEntries)
		}
	} else if g.rootEntries == 0 || g.rootEntries*32%g.bytesPerSector != 0 {
		// Linux refuses a root directory that does not fill whole sectors.
		return nil, corruptf("FAT12/16 root directory of %d entries", g.rootEntries)
	}
	if g.fatSectors == 0 {
		return nil, corruptf("FAT size is 0")
	}
	g.fatBytes = g.fatSectors * g.bytesPerSector
	if g.fatBytes > maxFATBytes {
		return nil, corruptf("FAT of %d bytes is too large", g.fatBytes)
	}
	rootSectors := (g.rootEntries*32 + g.bytesPerSector - 1) / g.bytesPerSector
	meta := g.reservedSectors + g.numFATs*g.fatSectors + rootSectors
	if meta >= g.totalSectors {
		return nil, corruptf("reserved area, FATs and root directory (%d sectors) fill the whole %d-sector volume", meta, g.totalSectors)
	}
	count := (g.totalSectors - meta) / g.sectorsPerClus
	switch {
	case count < 1:
		return nil, corruptf("volume has no data clusters")
	case count <= maxFAT12:
		g.bits = 12
	case count <= maxFAT16:
		g.bits = 16
	case count <= maxFAT32:
		g.bits = 32
	default:
		return nil, corruptf("%d clusters is more than FAT32 can address", count)
	}
	if (g.bits == 32) != fat32Layout {
		return nil, corruptf("%d clusters means FAT%d, but the boot sector has the other layout", count, g.bits)
	}
	g.clusters = uint32(count)
	entries := g.fatBytes * 8 / int64(g.bits)
	if entries < count+2 {
		return nil, corruptf("FAT holds %d entries but the volume has %d clusters", entries, count)
	}
	g.fatOffset = g.reservedSectors * g.bytesPerSector
	g.activeFAT = g.fatOffset
	g.rootOffset = g.fatOffset + g.numFATs*g.fatBytes
	g.rootBytes = g.rootEntries * 32
	g.dataOffset = (g.reservedSectors + g.numFATs*g.fatSectors + rootSectors) * g.bytesPerSector
	if end := g.dataOffset + count*g.bytesPerCluster; end > size {
		return nil, corruptf("data region ends at %d, beyond the %d-byte device", end, size)
	}

	label := func(b []byte) string { return strings.TrimRight(string(b), " \x00") }
	if g.bits == 32 {
		if v := le16(42); v != 0 {
			return nil, corruptf("unsupported FAT32 version %d.%d", v>>8, v&0xff)
		}
		ext := le16(40)
		if ext&0x80 != 0 { // mirroring disabled: only one FAT is active
			active := ext & 0x0f
			if active >= g.numFATs {
				return nil, corruptf("active FAT %d of %d", active, g.numFATs)
			}
			g.activeFAT = g.fatOffset + active*g.fatBytes
		}
		g.rootCluster = uint32(le32(44))
		if g.rootCluster < 2 || g.rootCluster > g.lastCluster() {
			return nil, corruptf("root directory cluster %d outside 2..%d", g.rootCluster, g.lastCluster())
		}
		if s := le16(48); s != 0 && s != 0xffff && s < g.reservedSectors {
			g.fsInfoSector = s
		}
		if s := le16(50); s != 0 && s != 0xffff && s+2 <= g.reservedSectors {
			g.backupBoot = s
		}
		if bs[66] == 0x28 || bs[66] == 0x29 {
			g.hasSerial = true
			g.serial = uint32(le32(67))
		}
		if bs[66] == 0x29 {
			g.bpbLabel = label(bs[71:82])
		}
	} else {
		if bs[38] == 0x28 || bs[38] == 0x29 {
			g.hasSerial = true
			g.serial = uint32(le32(39))
		}
		if bs[38] == 0x29 {
			g.bpbLabel = label(bs[43:54])
		}
	}
	return g, nil
}
