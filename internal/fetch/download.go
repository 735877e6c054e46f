package fetch

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/atomicfile"
)

// partialMeta is the sidecar of an interrupted download: what the partial
// bytes are a prefix of. A resume is only attempted for the same URL, and
// with If-Range so that the server sends everything again if the file
// changed.
type partialMeta struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	Size         int64  `json:"size,omitempty"` // total, when known
}

// HTTPError is a download refused by the server.
type HTTPError struct {
	URL    string
	Status string
	Code   int
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("download %s: the server answered %s", e.URL, e.Status)
}

// transient reports whether a status may succeed on retry.
func (e *HTTPError) transient() bool {
	return e.Code >= 500 || e.Code == http.StatusTooManyRequests || e.Code == http.StatusRequestTimeout
}

// errRestart asks for the download to start again from byte 0.
var errRestart = errors.New("restart the download from the beginning")

func (f *Fetcher) attempts() int {
	if f.MaxAttempts > 0 {
		return f.MaxAttempts
	}
	return 5
}

func (f *Fetcher) client() *http.Client {
	if f.HTTPClient != nil {
		return f.HTTPClient
	}
	return http.DefaultClient
}

// download fetches url into blob (via blob+".partial"), verifying sum
// before the rename that publishes it. Transient failures are retried
// with backoff, each retry resuming where the last one stopped.
func (f *Fetcher) download(ctx context.Context, url string, sum Checksum, blob string) error {
	log := f.logger()
	partial := blob + ".partial"
	metaPath := partial + ".json"
	wait := f.RetryWait
	if wait <= 0 {
		wait = time.Second
	}
	var lastErr error
	restarts := 0
	for attempt := 1; attempt <= f.attempts(); attempt++ {
		err := f.downloadOnce(ctx, url, sum, partial, metaPath)
		if err == nil {
			if err := os.Chmod(partial, 0o444); err != nil {
				return err
			}
			if err := os.Rename(partial, blob); err != nil {
				return fmt.Errorf("publish download %s: %w", blob, err)
			}
			os.Remove(metaPath)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var sumErr *ChecksumError
		var httpErr *HTTPError
		switch {
		case errors.Is(err, errRestart) && restarts < 2:
			// A stale partial (the server changed the file, or resumed
			// bytes did not verify): start over at once.
			restarts++
			os.Remove(partial)
			os.Remove(metaPath)
			attempt--
			continue
		case errors.As(err, &sumErr):
			os.Remove(partial)
			os.Remove(metaPath)
			return err
		case errors.As(err, &httpErr) && !httpErr.transient():
			return err
		case isPermanentNetError(err):
			return fmt.Errorf("download %s: %w", url, err)
		}
		lastErr = err
		if attempt < f.attempts() {
			log.Warn("download interrupted; retrying", "url", url, "attempt", attempt, "error", err, "wait", wait)
			if err := sleep(ctx, wait); err != nil {
				return err
			}
			wait = min(2*wait, 30*time.Second)
		}
	}
	return fmt.Errorf("download %s: giving up after %d attempts: %w", url, f.attempts(), lastErr)
}

func isPermanentNetError(err error) bool {
	var dnsErr *net.DNSError
	return errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

func readMeta(path string) (partialMeta, bool) {
	var m partialMeta
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, &m) != nil {
		return m, false
	}
	return m, true
}

// downloadOnce makes one request, resuming a partial download when one
// exists for the same URL.
func (f *Fetcher) downloadOnce(ctx context.Context, url string, sum Checksum, partial, metaPath string) error {
	log := f.logger()
	var offset int64
	meta, haveMeta := readMeta(metaPath)
	if fi, err := os.Stat(partial); err == nil && haveMeta && meta.URL == url {
		offset = fi.Size()
	} else {
		os.Remove(partial)
		meta = partialMeta{URL: url}
	}

	// A connection that stops delivering is cancelled, so the retry loop
	// can resume elsewhere instead of hanging for ever.
	stall := f.StallTimeout
	if stall <= 0 {
		stall = 60 * time.Second
	}
	reqCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	watchdog := time.AfterFunc(stall, func() { cancel(fmt.Errorf("no data received for %s", stall)) })
	defer watchdog.Stop()

	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	req.Header.Set("User-Agent", "bakery")
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
		switch {
		case meta.ETag != "" && !strings.HasPrefix(meta.ETag, "W/"):
			req.Header.Set("If-Range", meta.ETag)
		case meta.LastModified != "":
			req.Header.Set("If-Range", meta.LastModified)
		}
	}
	resp, err := f.client().Do(req)
	if err != nil {
		if cause := context.Cause(reqCtx); cause != nil && ctx.Err() == nil {
			return cause
		}
		return err
	}
	defer resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusOK:
		if offset > 0 {
			log.Info("server sent the whole file again; restarting the download", "url", url)
			offset = 0
		}
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset || offset == 0 {
			return errRestart
		}
		// A server that ignores If-Range but changed the file.
		if et := resp.Header.Get("ETag"); et != "" && meta.ETag != "" && et != meta.ETag {
			return errRestart
		}
		meta.Size = total
		log.Info("resuming download", "url", url, "from", offset)
	case http.StatusRequestedRangeNotSatisfiable:
		if offset > 0 && meta.Size == offset {
			return f.verifyPartial(ctx, url, sum, partial, offset)
		}
		return errRestart
	default:
		return &HTTPError{URL: url, Status: resp.Status, Code: resp.StatusCode}
	}
	if resp.StatusCode == http.StatusOK {
		meta.ETag = resp.Header.Get("ETag")
		meta.LastModified = resp.Header.Get("Last-Modified")
		meta.Size = resp.ContentLength
		if meta.Size < 0 {
			meta.Size = 0
		}
	}
	mb, _ := json.Marshal(meta)
	if err := atomicfile.WriteFile(metaPath, mb, 0o644); err != nil {
		return err
	}

	h := sum.newHash()
	flags := os.O_CREATE | os.O_WRONLY
	if offset == 0 {
		flags |= os.O_TRUNC
	}
	out, err := os.OpenFile(partial, flags, 0o644)
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	defer out.Close()
	if offset > 0 {
		// The prefix already on disk counts toward the checksum.
		if err := hashPrefix(h, partial, offset); err != nil {
			return err
		}
		if _, err := out.Seek(offset, io.SeekStart); err != nil {
			return err
		}
	}
	total := int64(0)
	if meta.Size > 0 {
		total = meta.Size
	}
	task := f.Progress.Start("download", total)
	task.Add(offset)
	body := &watchedReader{r: resp.Body, watchdog: watchdog, stall: stall}
	n, err := io.CopyBuffer(io.MultiWriter(out, h), task.Reader(body), make([]byte, 1<<20))
	if err != nil && ctx.Err() == nil {
		if cause := context.Cause(reqCtx); cause != nil {
			err = cause
		}
	}
	if err == nil && meta.Size > 0 && offset+n != meta.Size {
		err = io.ErrUnexpectedEOF
	}
	task.Done(err)
	if err != nil {
		return fmt.Errorf("download %s: connection lost after %d bytes: %w", url, offset+n, err)
	}
	if err := out.Sync(); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum.Hex {
		if offset > 0 {
			log.Warn("resumed download does not verify; downloading it again from the start", "url", url)
			return errRestart
		}
		return &ChecksumError{What: url, Expected: sum, Actual: got}
	}
	return nil
}

// watchedReader pushes the stall watchdog back on every read that
// delivers data.
type watchedReader struct {
	r        io.Reader
	watchdog *time.Timer
	stall    time.Duration
}

func (w *watchedReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.watchdog.Reset(w.stall)
	}
	return n, err
}

// hashPrefix feeds the first n bytes of path to h.
func hashPrefix(h hash.Hash, path string, n int64) error {
	in, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read partial download: %w", err)
	}
	defer in.Close()
	got, err := io.CopyBuffer(h, io.LimitReader(in, n), make([]byte, 1<<20))
	if err == nil && got != n {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("read partial download %s: %w", path, err)
	}
	return nil
}

// verifyPartial checks a partial download that is already complete (the
// server answered 416 to a range starting at its end).
func (f *Fetcher) verifyPartial(ctx context.Context, url string, sum Checksum, partial string, size int64) error {
	got, err := f.hashFile(ctx, partial, sum.newHash(), "verify")
	if err != nil {
		return err
	}
	if got != sum.Hex {
		return errRestart
	}
	return nil
}

// parseContentRange parses "bytes START-END/TOTAL" (TOTAL may be "*").
func parseContentRange(s string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}
