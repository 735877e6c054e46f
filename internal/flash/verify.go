package flash

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/bakeryhq/bakery/internal/bmap"
)

// reader reads a target back around the page cache.
type reader struct {
	t      *Target
	direct *os.File // nil when O_DIRECT is unavailable
	plain  *os.File // nil on raw disks that take only whole sectors
}

func (w *worker) openReader() (*reader, error) {
	direct, plain, err := w.t.openReaders()
	if err != nil {
		return nil, err
	}
	return &reader{t: w.t, direct: direct, plain: plain}, nil
}

func (r *reader) Close() {
	if r.direct != nil {
		r.direct.Close()
	}
	if r.plain != nil {
		r.plain.Close()
	}
}

// readAt fills p from off: directly when aligned, through the ordinary
// descriptor otherwise, or as whole sectors on a raw disk.
func (r *reader) readAt(p []byte, off int64) error {
	switch {
	case r.direct != nil && isAligned(p, off, r.t.sector):
		return readFullAt(r.direct, p, off)
	case r.plain != nil:
		return readAtSplit(r.plain, p, off)
	}
	s := int64(r.t.sector)
	start := off / s * s
	end := (off + int64(len(p)) + s - 1) / s * s
	buf := alignedBuffer(int(end - start))
	if err := readFullAt(r.direct, buf, start); err != nil {
		return err
	}
	copy(p, buf[off-start:])
	return nil
}

func readFullAt(f *os.File, p []byte, off int64) error {
	_, err := io.ReadFull(io.NewSectionReader(f, off, int64(len(p))), p)
	return err
}

// verifyUnit is a span whose hash verify checks: a bmap range (compared
// with the map's checksum) or a chunk (compared with its hash from writing).
type verifyUnit struct {
	piece
	hashType string
	want     string // lower-case hex
}

// verifyUnits lists what to check, leaving out what lies wholly in the
// head (compared byte for byte once it is written).
func (w *worker) verifyUnits() []verifyUnit {
	var units []verifyUnit
	if w.src.verifiesAgainstMap() {
		m := w.src.Map
		for i, r := range m.Ranges {
			br := m.ByteRange(r)
			if br.End() <= w.headLen {
				continue
			}
			units = append(units, verifyUnit{piece: piece{off: br.Off, len: br.Len, rng: i}, hashType: m.ChecksumType, want: r.Checksum})
		}
		return units
	}
	for _, s := range w.sums {
		if !s.head {
			units = append(units, verifyUnit{piece: s.piece, hashType: bmap.SHA256, want: hex.EncodeToString(s.sum[:])})
		}
	}
	return units
}

// readResult is one read of a unit's bytes.
type readResult struct {
	unit int
	data []byte
	last bool // the unit's final read
	err  error
}

// verifyBody reads back every unit outside the head and compares hashes.
// The part of a unit inside the head (not written yet) comes from the
// image's head bytes in memory. Reads are cut on the chunk grid, like the
// writes, and run ahead of hashing by two chunks.
func (w *worker) verifyBody(ctx context.Context) (err error) {
	units := w.verifyUnits()
	var total int64
	for _, u := range units {
		total += u.len
	}
	task := w.opts.Progress.Start("verify "+w.name(), total)
	defer func() { task.Done(err) }()
	rd, err := w.openReader()
	if err != nil {
		return err
	}
	defer rd.Close()
	const depth = 2
	chunk := int64(w.opts.ChunkSize)
	free := make(chan []byte, depth+1)
	for range depth + 1 {
		free <- alignedBuffer(w.opts.ChunkSize)
	}
	results := make(chan readResult, depth)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer close(results)
		for i, u := range units {
			for pos, end := u.off, u.off+u.len; pos < end; {
				next := min((pos/chunk+1)*chunk, end)
				if pos < w.headLen {
					next = min(next, w.headLen)
				}
				var buf []byte
				select {
				case buf = <-free:
				case <-ctx.Done():
					return
				}
				data := buf[:next-pos]
				var err error
				if pos < w.headLen {
					copy(data, w.headBuf[pos:next])
				} else {
					err = rd.readAt(data, pos)
					if err != nil {
						err = fmt.Errorf("verify: read back bytes %d-%d of %s: %w", pos, next-1, w.t.Path, err)
					}
				}
				results <- readResult{unit: i, data: data, last: next == end, err: err}
				if err != nil {
					return
				}
				pos = next
			}
		}
	}()
	var h hash.Hash
	for res := range results {
		if res.err != nil {
			return res.err
		}
		u := units[res.unit]
		if h == nil {
			if h, err = bmap.NewHash(u.hashType); err != nil {
				return err
			}
		}
		h.Write(res.data)
		task.Add(int64(len(res.data)))
		free <- res.data[:cap(res.data)]
		if res.last {
			if hex.EncodeToString(h.Sum(nil)) != u.want {
				return w.mismatch(u.piece)
			}
			h = nil
		}
	}
	return context.Cause(ctx)
}

// verifyHead reads the head back and compares it byte for byte.
func (w *worker) verifyHead(head []byte) error {
	rd, err := w.openReader()
	if err != nil {
		return err
	}
	defer rd.Close()
	got := alignedBuffer(len(head))
	if err := rd.readAt(got, 0); err != nil {
		return fmt.Errorf("verify: read back the first %d bytes of %s: %w", len(head), w.t.Path, err)
	}
	if !bytes.Equal(got, head) {
		i := 0
		for i < len(head) && got[i] == head[i] {
			i++
		}
		return w.mismatch(w.pieceAt(int64(i)))
	}
	return nil
}

// pieceAt finds the mapped piece holding byte off (for naming a head
// mismatch).
func (w *worker) pieceAt(off int64) piece {
	if w.src.Map != nil {
		for i, r := range w.src.Map.Ranges {
			if br := w.src.Map.ByteRange(r); off >= br.Off && off < br.End() {
				return piece{off: br.Off, len: br.Len, rng: i}
			}
		}
	}
	for _, s := range w.sums {
		if off >= s.off && off < s.off+s.len {
			return s.piece
		}
	}
	return piece{off: off, len: 1, rng: -1}
}

// mismatch names the first bad piece in bytes, blocks and bmap range.
func (w *worker) mismatch(p piece) error {
	bs := int64(bmap.DefaultBlockSize)
	if w.src.Map != nil {
		bs = w.src.Map.BlockSize
	}
	where := fmt.Sprintf("bytes %d-%d (blocks %d-%d of %d bytes)", p.off, p.off+p.len-1, p.off/bs, (p.off+p.len-1)/bs, bs)
	if w.src.Map != nil && p.rng >= 0 {
		r := w.src.Map.Ranges[p.rng]
		where += fmt.Sprintf(", in bmap range %d-%d", r.First, r.Last)
	}
	return fmt.Errorf("verify failed: %s reads back different from the image at %s; the card may be failing or counterfeit", w.t.Path, where)
}
