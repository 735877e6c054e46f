package ext4

import (
	"encoding/binary"
	"fmt"
)

// JBD2 journal superblock (big-endian), enough to tell whether the journal
// is clean and to create an empty one.

const (
	jbd2Magic        = 0xC03B3998
	jbd2SuperblockV1 = 3
	jbd2SuperblockV2 = 4

	jsbBlocktype = 0x4
	jsbBlocksize = 0xC
	jsbMaxlen    = 0x10
	jsbFirst     = 0x14
	jsbSequence  = 0x18
	jsbStart     = 0x1C
	jsbErrno     = 0x20
	jsbUUID      = 0x30
	jsbNrUsers   = 0x40
)

var be = binary.BigEndian

// checkJournalClean reads the internal journal's superblock and fails if
// the journal holds transactions that have not been replayed.
func (f *FS) checkJournalClean() error {
	in, err := f.readInUse(f.sb.journalInum)
	if err != nil {
		return fmt.Errorf("cannot read the journal inode: %v", err)
	}
	m, err := f.readMap(in)
	if err != nil {
		return fmt.Errorf("cannot read the journal mapping: %v", err)
	}
	r := m.lookup(0)
	if r == nil {
		return fmt.Errorf("the journal has no superblock block")
	}
	b, err := f.block(r.phys)
	if err != nil {
		return fmt.Errorf("cannot read the journal superblock: %v", err)
	}
	if be.Uint32(b) != jbd2Magic {
		return fmt.Errorf("the journal superblock has a bad magic number")
	}
	if t := be.Uint32(b[jsbBlocktype:]); t != jbd2SuperblockV1 && t != jbd2SuperblockV2 {
		return fmt.Errorf("the journal superblock has unknown type %d", t)
	}
	if be.Uint32(b[jsbStart:]) != 0 {
		return fmt.Errorf("the ext4 journal needs recovery (it holds unreplayed transactions); run e2fsck on it or mount it once, then retry")
	}
	if be.Uint32(b[jsbErrno:]) != 0 {
		return fmt.Errorf("the ext4 journal recorded an error; run e2fsck on it first")
	}
	return nil
}

// newJournalSuperblock returns block 0 of an empty internal journal of
// blocks blocks.
func newJournalSuperblock(blockSize int, blocks uint32, uuid [16]byte) []byte {
	b := make([]byte, blockSize)
	be.PutUint32(b, jbd2Magic)
	be.PutUint32(b[jsbBlocktype:], jbd2SuperblockV2)
	be.PutUint32(b[jsbBlocksize:], uint32(blockSize))
	be.PutUint32(b[jsbMaxlen:], blocks)
	be.PutUint32(b[jsbFirst:], 1)
	be.PutUint32(b[jsbSequence:], 1)
	copy(b[jsbUUID:], uuid[:])
	be.PutUint32(b[jsbNrUsers:], 1)
	return b
}
