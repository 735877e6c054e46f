package fat

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/bakeryhq/bakery/internal/fs"
)

const blockSize = 512

// journal sits between the filesystem (ours and go-diskfs) and the device.
//
// Writes of metadata are compared with what the device holds and only the
// 512-byte blocks that differ are passed on, each after saving the block's
// previous contents. go-diskfs rewrites both whole FATs and whole directories
// on every change; this keeps the device buffer (and so the bytes a commit
// writes) to what actually changed, and it lets a failed operation be undone
// exactly: rollback writes the saved blocks back.
//
// Writes that fall entirely inside clusters that were free when the
// operation began (the data of a new file or directory) go straight to the
// device without a saved copy: no committed state refers to them, and a
// rollback frees those clusters again.
type journal struct {
	dev    fs.Device
	g      *geometry
	t      *table
	active bool
	saved  map[int64][]byte // block number -> contents before the operation
	order  []int64
	cur    []byte
}

var errNoOperation = errors.New("fat: write outside an operation")

func (j *journal) Size() int64                             { return j.dev.Size() }
func (j *journal) ReadAt(p []byte, off int64) (int, error) { return j.dev.ReadAt(p, off) }

func (j *journal) begin() {
	j.active = true
	j.saved = map[int64][]byte{}
	j.order = j.order[:0]
}

func (j *journal) commit() {
	j.active = false
	j.saved = nil
	j.order = j.order[:0]
}

// rollback restores every block saved since begin.
func (j *journal) rollback() error {
	var first error
	for i := len(j.order) - 1; i >= 0; i-- {
		b := j.order[i]
		if _, err := j.dev.WriteAt(j.saved[b], b*blockSize); err != nil && first == nil {
			first = err
		}
	}
	j.commit()
	return first
}

// fresh reports whether [off, off+n) lies inside data clusters that were all
// free when the operation began.
func (j *journal) fresh(off int64, n int) bool {
	g := j.g
	if n == 0 || off < g.dataOffset {
		return false
	}
	c0 := uint32((off-g.dataOffset)/g.bytesPerCluster) + 2
	c1 := uint32((off+int64(n)-1-g.dataOffset)/g.bytesPerCluster) + 2
	if c1 > g.lastCluster() {
		return false
	}
	for c := c0; c <= c1; c++ {
		if !j.t.freeAtBegin(c) {
			return false
		}
	}
	return true
}

func (j *journal) WriteAt(p []byte, off int64) (int, error) {
	if !j.active {
		return 0, errNoOperation
	}
	if off < 0 || off > j.dev.Size() || int64(len(p)) > j.dev.Size()-off {
		return 0, fmt.Errorf("fat: write of %d bytes at %d outside the %d-byte device", len(p), off, j.dev.Size())
	}
	if j.fresh(off, len(p)) {
		return j.dev.WriteAt(p, off)
	}
	if k, ok := j.fatCopy(p, off); ok {
		// A whole FAT copy from our table: only its dirty range can differ.
		d := &j.t.dirty[k]
		lo, hi := d.lo&^(blockSize-1), min(len(p), (d.hi+blockSize-1)&^(blockSize-1))
		if lo < hi {
			if err := j.diff(p[lo:hi], off+int64(lo)); err != nil {
				return 0, err
			}
		}
		d.lo, d.hi = 0, 0
		return len(p), nil
	}
	if err := j.diff(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

// diff writes the blocks of p that differ from the device, chunk by chunk.
func (j *journal) diff(p []byte, off int64) error {
	const chunk = 256 << 10
	for done := 0; done < len(p); {
		// Chunks end on block boundaries so a block is never split.
		pos := off + int64(done)
		end := min(len(p), done+chunk)
		if e := (pos + int64(end-done)) % blockSize; e != 0 && end < len(p) {
			end -= int(e)
		}
		if err := j.writeDiff(p[done:end], pos); err != nil {
			return err
		}
		done = end
	}
	return nil
}

// fatCopy reports whether p is our table written whole as FAT copy k.
func (j *journal) fatCopy(p []byte, off int64) (int, bool) {
	raw := j.t.raw
	if len(p) != len(raw) || len(p) == 0 || &p[0] != &raw[0] {
		return 0, false
	}
	for k := int64(0); k < j.g.numFATs; k++ {
		if off == j.g.fatOffset+k*j.g.fatBytes {
			return int(k), true
		}
	}
	return 0, false
}

func (j *journal) writeDiff(p []byte, off int64) error {
	if cap(j.cur) < len(p) {
		j.cur = make([]byte, len(p))
	}
	cur := j.cur[:len(p)]
	if err := readFull(j.dev, cur, off); err != nil {
		return err
	}
	runStart := -1
	flush := func(end int) error {
		if runStart < 0 {
			return nil
		}
		s := runStart
		runStart = -1
		_, err := j.dev.WriteAt(p[s:end], off+int64(s))
		return err
	}
	for i := 0; i < len(p); {
		// Segment [i, e) is the part of p inside one block.
		b := (off + int64(i)) / blockSize
		e := min(len(p), int((b+1)*blockSize-off))
		if bytes.Equal(p[i:e], cur[i:e]) {
			if err := flush(i); err != nil {
				return err
			}
		} else {
			if err := j.save(b); err != nil {
				return err
			}
			if runStart < 0 {
				runStart = i
			}
		}
		i = e
	}
	return flush(len(p))
}

func (j *journal) save(b int64) error {
	if _, ok := j.saved[b]; ok {
		return nil
	}
	n := int64(blockSize)
	if rest := j.dev.Size() - b*blockSize; rest < n {
		n = rest
	}
	old := make([]byte, n)
	if err := readFull(j.dev, old, b*blockSize); err != nil {
		return err
	}
	j.saved[b] = old
	j.order = append(j.order, b)
	return nil
}

// readFull reads exactly len(p) bytes at off.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at offset %d: %w", len(p), off, err)
}
