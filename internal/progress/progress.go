// Package progress shows the progress of long phases (download, decompress,
// customise, write, flash, upload): mpb bars on a terminal, plain slog lines
// otherwise, nothing in quiet or JSON mode. Libraries take a *Reporter and
// never decide how progress looks.
package progress

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// Mode chooses the presentation.
type Mode int

const (
	// Auto uses bars when the output is a terminal, else log lines.
	Auto Mode = iota
	Bars
	Lines
	Quiet
)

// Reporter creates tasks. A nil *Reporter is valid and reports nothing.
type Reporter struct {
	mode   Mode
	pool   *mpb.Progress
	logger *slog.Logger
}

// New makes a reporter writing bars to w (normally stderr).
func New(w io.Writer, mode Mode, logger *slog.Logger) *Reporter {
	if logger == nil {
		logger = slog.Default()
	}
	if mode == Auto {
		mode = Lines
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = Bars
		}
	}
	r := &Reporter{mode: mode, logger: logger}
	if mode == Bars {
		r.pool = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	}
	return r
}

// Task is one phase with a byte total (0 when unknown).
type Task struct {
	r     *Reporter
	name  string
	bar   *mpb.Bar
	total int64
	start time.Time

	mu       sync.Mutex
	done     int64
	lastLog  time.Time
	finished bool
}

// Start begins a task.
func (r *Reporter) Start(name string, total int64) *Task {
	t := &Task{r: r, name: name, total: total, start: time.Now(), lastLog: time.Now()}
	if r == nil {
		return t
	}
	switch r.mode {
	case Bars:
		if total <= 0 {
			// No byte total (a step, a stream of unknown length): a
			// spinner with what has passed so far, not "0 b / 0 b 0 %".
			t.bar = r.pool.New(0, mpb.SpinnerStyle(),
				mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), decor.Any(func(st decor.Statistics) string {
					if st.Current == 0 {
						return ""
					}
					return fmt.Sprintf("% .1f", decor.SizeB1024(st.Current))
				}, decor.WCSyncSpace)),
				mpb.AppendDecorators(decor.Elapsed(decor.ET_STYLE_GO, decor.WCSyncSpace)),
				mpb.BarRemoveOnComplete(),
			)
			break
		}
		t.bar = r.pool.AddBar(total,
			mpb.PrependDecorators(decor.Name(name, decor.WCSyncSpaceR), decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncSpace)),
			mpb.AppendDecorators(decor.Percentage(decor.WCSyncSpace), decor.AverageSpeed(decor.SizeB1024(0), "% .1f", decor.WCSyncSpace)),
			mpb.BarRemoveOnComplete(),
		)
	case Lines:
		r.logger.Info(name+" started", "bytes", total)
	}
	return t
}

// Add records n more bytes done.
func (t *Task) Add(n int64) {
	if t == nil || t.r == nil {
		return
	}
	t.mu.Lock()
	t.done += n
	done, total := t.done, t.total
	logNow := t.r.mode == Lines && time.Since(t.lastLog) >= 5*time.Second
	if logNow {
		t.lastLog = time.Now()
	}
	t.mu.Unlock()
	if t.bar != nil {
		t.bar.IncrInt64(n)
	}
	if logNow {
		args := []any{"bytes", done}
		if total > 0 {
			args = append(args, "percent", done*100/total)
		}
		t.r.logger.Info(t.name+" in progress", args...)
	}
}

// SetTotal changes the total once it becomes known.
func (t *Task) SetTotal(total int64) {
	if t == nil || t.r == nil {
		return
	}
	t.mu.Lock()
	t.total = total
	t.mu.Unlock()
	if t.bar != nil {
		t.bar.SetTotal(total, false)
	}
}

// Done ends the task; err non-nil marks it failed.
func (t *Task) Done(err error) {
	if t == nil || t.r == nil {
		return
	}
	t.mu.Lock()
	if t.finished {
		t.mu.Unlock()
		return
	}
	t.finished = true
	done, total := t.done, t.total
	t.mu.Unlock()
	if t.bar != nil {
		switch {
		case err != nil:
			t.bar.Abort(false)
		case total > 0:
			// A bar with a total completes only by reaching it; a short
			// stream must still finish, or Wait would hang.
			t.bar.SetCurrent(total)
		default:
			t.bar.SetTotal(-1, true)
		}
	}
	if t.r.mode == Lines {
		if err != nil {
			// The caller returns the error and the command prints it
			// once; a warning here would say the same thing twice.
			t.r.logger.Debug(t.name+" failed", "error", err)
		} else {
			t.r.logger.Info(t.name+" done", "bytes", done, "seconds", time.Since(t.start).Round(time.Millisecond).Seconds())
		}
	}
}

// Reader counts bytes read through r into the task.
func (t *Task) Reader(r io.Reader) io.Reader { return &countingReader{r, t} }

// Writer counts bytes written through w into the task.
func (t *Task) Writer(w io.Writer) io.Writer { return &countingWriter{w, t} }

// Wait waits for bars to finish drawing.
func (r *Reporter) Wait() {
	if r != nil && r.pool != nil {
		r.pool.Wait()
	}
}

type countingReader struct {
	r io.Reader
	t *Task
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.t.Add(int64(n))
	return n, err
}

type countingWriter struct {
	w io.Writer
	t *Task
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.t.Add(int64(n))
	return n, err
}
