package ext4

import (
	"errors"
	"fmt"
	"io"
	"slices"
)

// Metadata is never written to the device before Close. Every mutating call
// runs as a transaction over in-memory state: dirty metadata blocks, the
// superblock counters, directory models and the pending-free list. Each first
// change inside a transaction records how to undo it, so a failed call is
// rolled back completely and the next Close writes a consistent filesystem.
// The only bytes that reach the device early are file data written through
// to blocks that are free in the committed state; rolling back simply leaves
// them unreferenced.

type txn struct {
	id    uint64
	undo  []func()
	saved map[uint64]bool // blocks already snapshotted in this transaction
	sb    bool            // superblock snapshotted
}

func (f *FS) begin() {
	f.txnSeq++
	f.txn = &txn{id: f.txnSeq, saved: map[uint64]bool{}}
}

func (f *FS) commitTxn() { f.txn = nil }

func (f *FS) rollback() {
	t := f.txn
	f.txn = nil
	if t == nil {
		return
	}
	for i := len(t.undo) - 1; i >= 0; i-- {
		t.undo[i]()
	}
}

// onUndo registers fn to run if the current transaction fails.
func (f *FS) onUndo(fn func()) {
	if f.txn != nil {
		f.txn.undo = append(f.txn.undo, fn)
	}
}

// touchSuper snapshots the superblock counters before they change.
func (f *FS) touchSuper() {
	f.sbChanged = true
	t := f.txn
	if t == nil || t.sb {
		return
	}
	t.sb = true
	saved := *f.sb
	f.onUndo(func() { *f.sb = saved })
}

// readDev reads exactly len(p) bytes at off, refusing ranges outside the
// device so that corrupt pointers cannot reach past the image.
func (f *FS) readDev(p []byte, off int64) error {
	if off < 0 || off > f.devSize || int64(len(p)) > f.devSize-off {
		return corruptf("read of %d bytes at offset %d lies outside the %d-byte device", len(p), off, f.devSize)
	}
	n, err := f.dev.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("ext4: read %d bytes at offset %d: %w", len(p), off, err)
}

// validDataBlock reports whether a block pointer read from an inode,
// extent or indirect block may address file data: past the superblock and
// inside the filesystem.
func (f *FS) validDataBlock(blk uint64) bool { return blk > f.firstData && blk < f.blocks }

func (f *FS) readBlockInto(p []byte, blk uint64) error {
	if blk >= f.blocks {
		return corruptf("block %d is outside the filesystem (%d blocks)", blk, f.blocks)
	}
	return f.readDev(p, int64(blk)*int64(f.blockSize))
}

// block returns blk for reading. The result may be a dirty buffer shared
// with the cache: callers must not modify it.
func (f *FS) block(blk uint64) ([]byte, error) {
	if b, ok := f.dirty[blk]; ok {
		return b, nil
	}
	b := make([]byte, f.blockSize)
	if err := f.readBlockInto(b, blk); err != nil {
		return nil, err
	}
	return b, nil
}

// snapshot records how to restore blk's dirty state if the transaction fails.
func (f *FS) snapshot(blk uint64) {
	t := f.txn
	if t == nil || t.saved[blk] {
		return
	}
	t.saved[blk] = true
	old, ok := f.dirty[blk]
	var saved []byte
	if ok {
		saved = slices.Clone(old)
	}
	t.undo = append(t.undo, func() {
		if ok {
			f.dirty[blk] = saved
		} else {
			delete(f.dirty, blk)
		}
	})
}

// blockRW returns the dirty buffer for blk, loading it from the device on
// first use, for the caller to modify.
func (f *FS) blockRW(blk uint64) ([]byte, error) {
	f.snapshot(blk)
	if b, ok := f.dirty[blk]; ok {
		return b, nil
	}
	b := make([]byte, f.blockSize)
	if err := f.readBlockInto(b, blk); err != nil {
		return nil, err
	}
	f.dirty[blk] = b
	return b, nil
}

// blockNew returns a zeroed dirty buffer for a block whose previous content
// does not matter (freshly allocated, or about to be fully rewritten).
func (f *FS) blockNew(blk uint64) []byte {
	f.snapshot(blk)
	b, ok := f.dirty[blk]
	if ok {
		clear(b)
		return b
	}
	b = make([]byte, f.blockSize)
	f.dirty[blk] = b
	return b
}

// forget drops the dirty buffer of a block that is being freed.
func (f *FS) forget(blk uint64) {
	if _, ok := f.dirty[blk]; !ok {
		return
	}
	f.snapshot(blk)
	delete(f.dirty, blk)
}
