package ext4

import (
	"bytes"
	"fmt"
)

const (
	superblockOffset = 1024
	superblockSize   = 1024
	superMagic       = 0xEF53

	stateValid  = 0x1
	stateErrors = 0x2

	crcTypeCrc32c = 1
)

// Superblock field offsets (docs.kernel.org/filesystems/ext4/globals.html).
const (
	sbInodesCount      = 0x0
	sbBlocksCountLo    = 0x4
	sbRBlocksCountLo   = 0x8
	sbFreeBlocksLo     = 0xC
	sbFreeInodes       = 0x10
	sbFirstDataBlock   = 0x14
	sbLogBlockSize     = 0x18
	sbLogClusterSize   = 0x1C
	sbBlocksPerGroup   = 0x20
	sbClustersPerGroup = 0x24
	sbInodesPerGroup   = 0x28
	sbMtime            = 0x2C
	sbWtime            = 0x30
	sbMntCount         = 0x34
	sbMaxMntCount      = 0x36
	sbMagic            = 0x38
	sbState            = 0x3A
	sbErrors           = 0x3C
	sbMinorRev         = 0x3E
	sbLastCheck        = 0x40
	sbCheckInterval    = 0x44
	sbCreatorOS        = 0x48
	sbRevLevel         = 0x4C
	sbDefResUID        = 0x50
	sbDefResGID        = 0x52
	sbFirstIno         = 0x54
	sbInodeSize        = 0x58
	sbBlockGroupNr     = 0x5A
	sbFeatureCompat    = 0x5C
	sbFeatureIncompat  = 0x60
	sbFeatureRoCompat  = 0x64
	sbUUID             = 0x68
	sbVolumeName       = 0x78
	sbLastMounted      = 0x88
	sbReservedGDT      = 0xCE
	sbJournalUUID      = 0xD0
	sbJournalInum      = 0xE0
	sbJournalDev       = 0xE4
	sbLastOrphan       = 0xE8
	sbHashSeed         = 0xEC
	sbDefHashVersion   = 0xFC
	sbJnlBackupType    = 0xFD
	sbDescSize         = 0xFE
	sbDefaultMountOpts = 0x100
	sbFirstMetaBG      = 0x104
	sbMkfsTime         = 0x108
	sbJnlBlocks        = 0x10C
	sbBlocksCountHi    = 0x150
	sbRBlocksCountHi   = 0x154
	sbFreeBlocksHi     = 0x158
	sbMinExtraIsize    = 0x15C
	sbWantExtraIsize   = 0x15E
	sbFlags            = 0x160
	sbLogGroupsPerFlex = 0x174
	sbChecksumType     = 0x175
	sbKbytesWritten    = 0x178
	sbOverheadClusters = 0x248
	sbBackupBGs        = 0x24C
	sbChecksumSeed     = 0x270
	sbWtimeHi          = 0x274
	sbMtimeHi          = 0x275
	sbMkfsTimeHi       = 0x276
	sbLastCheckHi      = 0x277
	sbEncoding         = 0x27C
	sbOrphanFileInum   = 0x280
	sbChecksum         = 0x3FC
)

// superblock keeps the raw bytes (so fields we do not interpret survive a
// rewrite) plus the parsed values we use.
type superblock struct {
	raw [superblockSize]byte

	inodesCount    uint32
	blocksCount    uint64
	freeBlocks     uint64
	freeInodes     uint32
	firstDataBlock uint32
	logBlockSize   uint32
	logClusterSize uint32
	blocksPerGroup uint32
	inodesPerGroup uint32
	state          uint16
	revLevel       uint32
	firstIno       uint32
	inodeSize      uint16
	compat         uint32
	incompat       uint32
	roCompat       uint32
	uuid           [16]byte
	volumeName     [16]byte
	reservedGDT    uint16
	journalInum    uint32
	journalDev     uint32
	lastOrphan     uint32
	hashSeed       [4]uint32
	defHashVersion uint8
	descSize       uint16
	firstMetaBG    uint32
	wantExtraIsize uint16
	flags          uint32
	logGroupsFlex  uint8
	checksumType   uint8
	backupBGs      [2]uint32
	checksumSeed   uint32
	orphanFileInum uint32
}

func parseSuperblock(b []byte) (*superblock, error) {
	if len(b) < superblockSize {
		return nil, corruptf("superblock is truncated")
	}
	s := &superblock{}
	copy(s.raw[:], b)
	r := s.raw[:]
	if get16(r, sbMagic) != superMagic {
		return nil, corruptf("no ext2/3/4 superblock (magic %#04x, want %#04x)", get16(r, sbMagic), superMagic)
	}
	s.inodesCount = get32(r, sbInodesCount)
	s.blocksCount = uint64(get32(r, sbBlocksCountLo))
	s.freeBlocks = uint64(get32(r, sbFreeBlocksLo))
	s.freeInodes = get32(r, sbFreeInodes)
	s.firstDataBlock = get32(r, sbFirstDataBlock)
	s.logBlockSize = get32(r, sbLogBlockSize)
	s.logClusterSize = get32(r, sbLogClusterSize)
	s.blocksPerGroup = get32(r, sbBlocksPerGroup)
	s.inodesPerGroup = get32(r, sbInodesPerGroup)
	s.state = get16(r, sbState)
	s.revLevel = get32(r, sbRevLevel)
	s.firstIno = 11
	s.inodeSize = 128
	if s.revLevel >= 1 {
		s.firstIno = get32(r, sbFirstIno)
		s.inodeSize = get16(r, sbInodeSize)
		s.compat = get32(r, sbFeatureCompat)
		s.incompat = get32(r, sbFeatureIncompat)
		s.roCompat = get32(r, sbFeatureRoCompat)
	}
	copy(s.uuid[:], r[sbUUID:])
	copy(s.volumeName[:], r[sbVolumeName:])
	s.reservedGDT = get16(r, sbReservedGDT)
	s.journalInum = get32(r, sbJournalInum)
	s.journalDev = get32(r, sbJournalDev)
	s.lastOrphan = get32(r, sbLastOrphan)
	for i := range 4 {
		s.hashSeed[i] = get32(r, sbHashSeed+4*i)
	}
	s.defHashVersion = r[sbDefHashVersion]
	s.descSize = get16(r, sbDescSize)
	s.firstMetaBG = get32(r, sbFirstMetaBG)
	s.wantExtraIsize = get16(r, sbWantExtraIsize)
	s.flags = get32(r, sbFlags)
	s.logGroupsFlex = r[sbLogGroupsPerFlex]
	s.checksumType = r[sbChecksumType]
	s.backupBGs = [2]uint32{get32(r, sbBackupBGs), get32(r, sbBackupBGs+4)}
	s.checksumSeed = get32(r, sbChecksumSeed)
	s.orphanFileInum = get32(r, sbOrphanFileInum)
	if s.incompat&incompat64Bit != 0 {
		s.blocksCount |= uint64(get32(r, sbBlocksCountHi)) << 32
		s.freeBlocks |= uint64(get32(r, sbFreeBlocksHi)) << 32
	}
	return s, nil
}

func (s *superblock) hasCompat(f uint32) bool   { return s.compat&f != 0 }
func (s *superblock) hasIncompat(f uint32) bool { return s.incompat&f != 0 }
func (s *superblock) hasRoCompat(f uint32) bool { return s.roCompat&f != 0 }

// checksumOK verifies s_checksum when metadata_csum is on.
func (s *superblock) checksumOK() bool {
	if !s.hasRoCompat(roCompatMetadataCsum) {
		return true
	}
	return crc32c(^uint32(0), s.raw[:sbChecksum]) == get32(s.raw[:], sbChecksum)
}

// encode writes the fields we maintain back into raw and refreshes the
// checksum. Everything else in raw is preserved byte for byte.
func (s *superblock) encode() []byte {
	r := s.raw[:]
	put32(r, sbFreeBlocksLo, uint32(s.freeBlocks))
	if s.incompat&incompat64Bit != 0 {
		put32(r, sbFreeBlocksHi, uint32(s.freeBlocks>>32))
	}
	put32(r, sbFreeInodes, s.freeInodes)
	if s.revLevel >= 1 {
		put32(r, sbFeatureCompat, s.compat)
		put32(r, sbFeatureIncompat, s.incompat)
		put32(r, sbFeatureRoCompat, s.roCompat)
	}
	if s.hasRoCompat(roCompatMetadataCsum) {
		put32(r, sbChecksum, crc32c(^uint32(0), r[:sbChecksum]))
	}
	return r
}

func (s *superblock) label() string {
	if i := bytes.IndexByte(s.volumeName[:], 0); i >= 0 {
		return string(s.volumeName[:i])
	}
	return string(s.volumeName[:])
}

func formatUUID(u [16]byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}
