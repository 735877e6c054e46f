// Package flash writes images to cards, disks and image files: only the
// mapped ranges, with large aligned I/O, one decompression stream fanned out
// to every target, each target verified by reading it back around the page
// cache and then customised (hostname, files) with the image engine.
//
// A target is never left looking good unless it is: the first MiB (the
// partition table and boot sector area) is zeroed and synced before
// anything else is written, and the image's own first MiB is written only
// after everything else was written, synced and verified. A failed or
// interrupted flash leaves a card without a partition table.
package flash

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bakeryhq/bakery/internal/bmap"
	"github.com/bakeryhq/bakery/internal/progress"
)

// Defaults for the I/O pipeline.
const (
	DefaultChunkSize = 4 << 20
	// DefaultBuffers bounds the memory in flight (DefaultBuffers chunks,
	// shared by all targets) and how far the stream may run ahead of the
	// slowest target.
	DefaultBuffers = 8
	// HeadSize is the area written last: MBR, GPT and boot sector.
	HeadSize = 1 << 20
)

// Options configure Flash.
type Options struct {
	// Verify reads every written range back and compares it.
	Verify bool
	// Customizers run on each card after it was written and verified.
	Customizers []Customizer
	Progress    *progress.Reporter
	Logger      *slog.Logger
	ChunkSize   int
	Buffers     int

	hooks hooks
}

// hooks let tests fail writes and corrupt a target before verify.
type hooks struct {
	beforeWrite  func(target string, off int64) error
	beforeVerify func(target string)
}

// Result is the outcome for one target.
type Result struct {
	Target        string  `json:"target"`
	OK            bool    `json:"ok"`
	BytesWritten  int64   `json:"bytes_written"`
	Seconds       float64 `json:"seconds"`
	WriteSeconds  float64 `json:"write_seconds"`
	VerifySeconds float64 `json:"verify_seconds,omitempty"`
	Verified      bool    `json:"verified"`
	Customized    bool    `json:"customized,omitempty"`
	// Incomplete means the target's first MiB was left zeroed: it holds no
	// partition table and will not boot or mount until flashed again.
	Incomplete bool   `json:"incomplete,omitempty"`
	Error      string `json:"error,omitempty"`
}

// AllOK reports whether every target succeeded.
func AllOK(results []Result) bool {
	for _, r := range results {
		if !r.OK {
			return false
		}
	}
	return len(results) > 0
}

// bufferPool hands out aligned chunk buffers; a buffer returns to the pool
// when every consumer of its chunk has released it.
type bufferPool struct {
	size int
	free chan *buffer
}

type buffer struct {
	mem  []byte
	refs atomic.Int32
	pool *bufferPool
}

func newBufferPool(n, size int) *bufferPool {
	p := &bufferPool{size: size, free: make(chan *buffer, n)}
	for range n {
		p.free <- &buffer{mem: alignedBuffer(size), pool: p}
	}
	return p
}

func (p *bufferPool) get(ctx context.Context) (*buffer, error) {
	select {
	case b := <-p.free:
		return b, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

func (b *buffer) release() {
	if b.refs.Add(-1) == 0 {
		b.pool.free <- b
	}
}

// drop returns a buffer that was never emitted.
func (b *buffer) drop() { b.pool.free <- b }

// chunk is a piece of image data in a pooled buffer.
type chunk struct {
	seq int
	piece
	data []byte
	head bool // inside the head area: written last, from headBuf
	buf  *buffer
}

// chunkSum is what verify compares a chunk read back from a target with.
type chunkSum struct {
	piece
	sum  [sha256.Size]byte
	head bool
}

// run is one Flash call's shared state.
type run struct {
	src  *Source
	opts Options
	log  *slog.Logger
	// headLen is where the head ends for cutting chunks (fixed);
	// headWrite how much of headBuf is written last (final after srcDone:
	// less when an image of unknown size turns out smaller).
	headLen   int64
	headWrite int64
	headBuf   []byte
	// headMapped counts the image bytes in the head; final after srcDone.
	headMapped int64

	// Filled by the hasher; read after hashDone closes.
	sums     []chunkSum
	hashDone chan struct{}

	// The source's final verdict (stream end, range checksums); read
	// after srcDone closes.
	srcErr  error
	srcSize int64
	srcDone chan struct{}
}

// Flash writes src to every target path at once and returns one result per
// target, in order. Targets must have passed CheckTargets.
func Flash(ctx context.Context, src *Source, targets []string, opts Options) []Result {
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	opts.ChunkSize = (opts.ChunkSize + ioAlign - 1) / ioAlign * ioAlign
	if opts.Buffers <= 0 {
		opts.Buffers = DefaultBuffers
	}
	r := &run{src: src, opts: opts, log: opts.Logger, hashDone: make(chan struct{}), srcDone: make(chan struct{})}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.headLen = HeadSize
	if src.Size >= 0 {
		r.headLen = min(r.headLen, src.Size)
	}
	r.headBuf = alignedBuffer(HeadSize)

	results := make([]Result, len(targets))
	var workers []*worker
	for i, path := range targets {
		results[i].Target = path
		t, err := openTarget(path)
		if err == nil && src.Size >= 0 {
			if err = t.prepareSize(src.Size); err != nil {
				t.Close()
			}
		}
		if err != nil {
			results[i].Error = err.Error()
			continue
		}
		workers = append(workers, &worker{run: r, n: i + 1, t: t, res: &results[i], ch: make(chan *chunk, opts.Buffers)})
	}
	if len(workers) == 0 {
		return results
	}

	streamCtx, cancelStream := context.WithCancelCause(ctx)
	defer cancelStream(nil)
	pool := newBufferPool(opts.Buffers, opts.ChunkSize)

	var consumers []chan *chunk
	for _, w := range workers {
		consumers = append(consumers, w.ch)
	}
	var consumersWG sync.WaitGroup
	// With a checksum for every range, verify compares against the map;
	// otherwise against chunk hashes taken here. Either way each byte is
	// hashed once while writing and once while verifying.
	if opts.Verify && !src.verifiesAgainstMap() {
		ch := make(chan *chunk, opts.Buffers)
		consumers = append(consumers, ch)
		go r.hash(ch)
	} else {
		close(r.hashDone)
	}
	var checkErr error
	if src.Map != nil && src.Map.ChecksumType != "" {
		ch := make(chan *chunk, opts.Buffers)
		consumers = append(consumers, ch)
		consumersWG.Add(1)
		go func() {
			defer consumersWG.Done()
			if checkErr = checkRanges(src, ch); checkErr != nil {
				cancelStream(checkErr)
			}
		}()
	}

	emit := func(c *chunk) bool {
		if c.head {
			copy(r.headBuf[c.off:], c.data)
			r.headMapped += c.len
		}
		c.buf.refs.Store(int32(len(consumers)))
		for _, ch := range consumers {
			ch <- c // never blocks: each channel holds as many chunks as there are buffers
		}
		return streamCtx.Err() == nil
	}
	var closeOnce sync.Once
	finish := func() {
		closeOnce.Do(func() {
			for _, ch := range consumers {
				close(ch)
			}
		})
	}
	go func() {
		res := src.stream(streamCtx, pool, r.headLen, emit, finish)
		consumersWG.Wait()
		r.srcSize, r.srcErr = res.size, res.err
		if checkErr != nil {
			r.srcErr = checkErr
		}
		r.headWrite = r.headLen
		if r.srcErr == nil && res.size < r.headLen {
			r.headWrite = res.size
		}
		close(r.srcDone)
	}()

	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.flash(ctx)
		}()
	}
	wg.Wait()
	return results
}

// hash records the SHA256 of every chunk for verify.
func (r *run) hash(ch chan *chunk) {
	defer close(r.hashDone)
	for c := range ch {
		r.sums = append(r.sums, chunkSum{piece: c.piece, sum: sha256.Sum256(c.data), head: c.head})
		c.buf.release()
	}
}

// checkRanges checks the image data against the block map's per-range
// checksums as it streams past, so that what is written (and later
// verified) is what the map promises.
func checkRanges(src *Source, ch chan *chunk) error {
	var failed error
	var h interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
	for c := range ch {
		if failed == nil {
			want := src.Map.Ranges[c.rng].Checksum
			if want != "" {
				if h == nil {
					h, _ = bmap.NewHash(src.Map.ChecksumType)
				}
				h.Write(c.data)
				if c.endOfRange {
					if got := hex.EncodeToString(h.Sum(nil)); got != want {
						rg := src.Map.Ranges[c.rng]
						br := src.Map.ByteRange(rg)
						failed = fmt.Errorf("image %s does not match its bmap %s: blocks %d-%d (bytes %d-%d) hash to %s, the bmap says %s",
							src.Path, src.MapOrigin, rg.First, rg.Last, br.Off, br.End()-1, got, want)
					}
					h = nil
				}
			}
		}
		c.buf.release()
	}
	return failed
}

// worker writes one target.
type worker struct {
	*run
	n   int
	t   *Target
	res *Result
	ch  chan *chunk
	// headWritten: the image's head went out, so clearing must write.
	headWritten bool
}

func (w *worker) name() string { return filepath.Base(w.t.Path) }

func (w *worker) flash(ctx context.Context) {
	start := time.Now()
	defer func() {
		w.res.Seconds = roundSeconds(time.Since(start))
		if !w.res.OK {
			// An image file we grew for a flash that failed goes back to
			// its old size (keeping the zeroed head that marks it
			// incomplete), not the size of an image it never received.
			w.t.shrinkAfterFailure()
		}
		if err := w.t.Close(); err != nil && w.res.OK {
			w.fail(err, false)
		}
	}()
	// Bar totals must be exact: a bar with a total completes only on
	// reaching it.
	task := w.opts.Progress.Start("write "+w.name(), w.bodyBytes())
	err := w.write(ctx, task)
	task.Done(err)
	w.res.WriteSeconds = roundSeconds(time.Since(start))
	if err != nil {
		w.fail(err, true)
		return
	}

	if w.opts.Verify {
		if h := w.opts.hooks.beforeVerify; h != nil {
			h(w.t.Path)
		}
		<-w.hashDone
		vstart := time.Now()
		err := w.verifyBody(ctx)
		w.res.VerifySeconds = roundSeconds(time.Since(vstart))
		if err != nil {
			// A damaged image reads back "wrong" too; blame the image
			// if that is what happened.
			<-w.srcDone
			if w.srcErr != nil {
				err = w.srcErr
			}
			w.fail(err, true)
			return
		}
	}

	<-w.srcDone
	if w.srcErr != nil {
		w.fail(w.srcErr, true)
		return
	}
	if err := w.writeHead(ctx); err != nil {
		w.fail(err, true)
		return
	}
	w.res.Verified = w.opts.Verify
	if len(w.opts.Customizers) > 0 {
		if err := w.customize(ctx); err != nil {
			w.fail(fmt.Errorf("customise: %w", err), w.clearHead() == nil)
			return
		}
		w.res.Customized = true
	}
	if err := w.t.finishSize(w.srcSize); err != nil {
		w.fail(err, false)
		return
	}
	w.res.OK = true
	w.log.Info("flashed", "target", w.t.Path, "bytes", w.res.BytesWritten, "verified", w.res.Verified, "seconds", roundSeconds(time.Since(start)))
}

// write zeroes the head, then writes every chunk outside it.
func (w *worker) write(ctx context.Context, task *progress.Task) error {
	var failed error
	defer func() {
		// Release whatever is left so the stream never waits on us.
		for c := range w.ch {
			c.buf.release()
		}
	}()
	if err := w.clearHead(); err != nil {
		return err
	}
	for c := range w.ch {
		if failed == nil && !c.head {
			if err := ctx.Err(); err != nil {
				failed = context.Cause(ctx)
			} else if h := w.opts.hooks.beforeWrite; h != nil {
				failed = h(w.t.Path, c.off)
			}
			if failed == nil {
				failed = w.writeChunk(c)
				task.Add(c.len)
			}
		}
		c.buf.release()
	}
	if failed == nil {
		failed = ctx.Err()
	}
	if failed != nil {
		return failed
	}
	return w.t.Sync()
}

func (w *worker) writeChunk(c *chunk) error {
	if w.t.Device && c.off+c.len > w.t.Size {
		return fmt.Errorf("%s is smaller than the image: it ends at byte %d, the image has data at byte %d", w.t.Path, w.t.Size, c.off+c.len-1)
	}
	if err := w.t.WriteAt(c.data, c.off); err != nil {
		return err
	}
	w.res.BytesWritten += c.len
	return nil
}

// bodyBytes is what the write phase writes (all but the head), or 0 when
// unknown.
func (w *worker) bodyBytes() int64 {
	var n int64
	for _, p := range w.src.pieces(int64(w.opts.ChunkSize), w.headLen) {
		if p.off >= w.headLen {
			n += p.len
		}
	}
	return n
}

// clearHead zeroes and syncs the head area, marking the target incomplete.
// An image file that was empty before reads as zeros there already.
func (w *worker) clearHead() error {
	if !w.t.Device && w.t.origSize == 0 && !w.headWritten {
		return nil
	}
	n := int64(HeadSize)
	if w.t.Device {
		n = min(n, w.t.Size)
	} else if w.src.Size >= 0 {
		n = min(n, max(w.src.Size, w.t.origSize))
	}
	if err := w.t.WriteAt(alignedBuffer(int(n)), 0); err != nil {
		return fmt.Errorf("mark %s incomplete: %w", w.t.Path, err)
	}
	return w.t.Sync()
}

// writeHead writes the image's first MiB, syncs and checks it.
func (w *worker) writeHead(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	head := w.headBuf[:w.headWrite]
	if w.headWrite%int64(w.t.sector) != 0 && w.t.Device {
		// Write whole sectors; the bytes past the image are zeros.
		head = w.headBuf[:(w.headWrite+int64(w.t.sector)-1)/int64(w.t.sector)*int64(w.t.sector)]
	}
	if len(head) == 0 {
		return nil
	}
	w.headWritten = true
	if err := w.t.WriteAt(head, 0); err != nil {
		return err
	}
	if err := w.t.Sync(); err != nil {
		return err
	}
	w.res.BytesWritten += w.headMapped
	if !w.opts.Verify {
		return nil
	}
	return w.verifyHead(head)
}

func (w *worker) fail(err error, incomplete bool) {
	if errors.Is(err, context.Canceled) {
		err = fmt.Errorf("interrupted: %w", err)
	}
	w.res.OK = false
	if w.res.Error == "" {
		msg := err.Error()
		if incomplete {
			msg += "; the first MiB of " + w.t.Path + " is zeroed, so it holds no partition table: flash it again"
		}
		w.res.Error = msg
	}
	w.res.Incomplete = w.res.Incomplete || incomplete
	w.log.Error("flash failed", "target", w.t.Path, "error", err)
}

func roundSeconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}
