package fetch

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/compress"
)

// testImage is a deterministic 8 MiB "disk image": random data regions
// separated by zero runs (which the cache must keep as holes).
func testImage(t testing.TB) []byte {
	t.Helper()
	img := make([]byte, 8<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, r := range [][2]int{{0, 64 << 10}, {1 << 20, 300 << 10}, {5<<20 + 123, 70 << 10}, {8<<20 - 4096, 4096}} {
		for i := r[0]; i < r[0]+r[1]; i++ {
			img[i] = byte(rng.Uint32())
		}
	}
	return img
}

// compressed memoises fixtures: compressing 8 MiB with pure-Go xz is the
// slowest part of these tests.
var compressed sync.Map

func compressWith(t testing.TB, data []byte, format string) []byte {
	t.Helper()
	key := fmt.Sprintf("%s/%x", format, sha256.Sum256(data))
	if b, ok := compressed.Load(key); ok {
		return b.([]byte)
	}
	b := compressUncached(t, data, format)
	compressed.Store(key, b)
	return b
}

func compressUncached(t testing.TB, data []byte, format string) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch format {
	case "raw":
		return data
	case "bz2":
		if _, err := exec.LookPath("bzip2"); err != nil {
			t.Skip("bzip2 not installed")
		}
		cmd := exec.Command("bzip2", "-c", "-1")
		cmd.Stdin = bytes.NewReader(data)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		return out
	case "zip":
		return zipOf(t, map[string][]byte{"2026-01-01-test.img": data, "README.txt": []byte("hi")})
	case "tar.xz":
		var tb bytes.Buffer
		tw := tar.NewWriter(&tb)
		tw.WriteHeader(&tar.Header{Name: "disk.raw", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
		tw.Close()
		return compressWith(t, tb.Bytes(), compress.Xz)
	}
	w, err := compress.Writer(&buf, format)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zipOf(t testing.TB, files map[string][]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range sortedNames(files) {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(files[name])
	}
	zw.Close()
	return buf.Bytes()
}

func sortedNames(m map[string][]byte) []string {
	var names []string
	for k := range m {
		names = append(names, k)
	}
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			if names[j] < names[i] {
				names[i], names[j] = names[j], names[i]
			}
		}
	}
	return names
}

func sha256Of(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// server serves files with Range support (http.ServeContent) and can be
// told to fail in the ways real mirrors do.
type server struct {
	*httptest.Server
	mu          sync.Mutex
	files       map[string][]byte
	etags       map[string]string
	cut         map[string]int64 // abort the connection after N body bytes, once
	statuses    map[string][]int // answer these statuses first
	ignoreRange bool
	log         []request
}

type request struct{ path, rangeHdr, ifRange string }

func newServer(t testing.TB) *server {
	s := &server{files: map[string][]byte{}, etags: map[string]string{}, cut: map[string]int64{}, statuses: map[string][]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *server) add(path string, data []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = data
	s.etags[path] = fmt.Sprintf(`"%x"`, sha256.Sum256(data))
	return s.URL + path
}

func (s *server) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.log...)
}

type cutWriter struct {
	http.ResponseWriter
	left int64
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > c.left {
		c.ResponseWriter.Write(p[:c.left])
		c.ResponseWriter.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // drop the connection mid-body
	}
	c.left -= int64(len(p))
	return c.ResponseWriter.Write(p)
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.log = append(s.log, request{r.URL.Path, r.Header.Get("Range"), r.Header.Get("If-Range")})
	data, ok := s.files[r.URL.Path]
	etag := s.etags[r.URL.Path]
	var status int
	if q := s.statuses[r.URL.Path]; len(q) > 0 {
		status, s.statuses[r.URL.Path] = q[0], q[1:]
	}
	cut, doCut := s.cut[r.URL.Path]
	delete(s.cut, r.URL.Path)
	ignore := s.ignoreRange
	s.mu.Unlock()
	switch {
	case status != 0:
		http.Error(w, http.StatusText(status), status)
		return
	case !ok:
		http.NotFound(w, r)
		return
	}
	if doCut {
		w = &cutWriter{ResponseWriter: w, left: cut}
	}
	if ignore {
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		w.WriteHeader(http.StatusOK)
		w.Write(data)
		return
	}
	w.Header().Set("ETag", etag)
	http.ServeContent(w, r, "", time.Unix(1700000000, 0), bytes.NewReader(data))
}

var quiet = slog.New(slog.DiscardHandler)

func newFetcher(t testing.TB) *Fetcher {
	return &Fetcher{CacheDir: t.TempDir(), BaseDir: t.TempDir(), MaxAttempts: 3, RetryWait: time.Millisecond, Logger: quiet}
}

// checkRaw verifies a cached raw image: content, read-only, and sparse.
func checkRaw(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("raw image differs from the original (%d vs %d bytes)", len(got), len(want))
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o444 {
		t.Errorf("raw image mode %v, want 0444", fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Blocks*512 > int64(len(want))/2 {
		t.Errorf("raw image is not sparse: %d bytes allocated for %d", st.Blocks*512, len(want))
	}
}

func TestFetchFormats(t *testing.T) {
	img := testImage(t)
	srv := newServer(t)
	for _, format := range []string{"raw", compress.Xz, compress.Gzip, compress.Zstd, "bz2", "zip", "tar.xz"} {
		t.Run(format, func(t *testing.T) {
			blob := compressWith(t, img, format)
			// The name lies: formats are detected from the bytes.
			url := srv.add("/"+format+"/image.bin", blob)
			f := newFetcher(t)
			raw, err := f.Fetch(context.Background(), url, sha256Of(blob))
			if err != nil {
				t.Fatal(err)
			}
			checkRaw(t, raw, img)
			if format == "raw" {
				if exists(filepath.Join(f.CacheDir, "blobs/sha256", strings.TrimPrefix(sha256Of(blob), "sha256:"))) {
					t.Error("an uncompressed download should not be kept twice")
				}
			} else if !exists(filepath.Join(f.CacheDir, "blobs/sha256", strings.TrimPrefix(sha256Of(blob), "sha256:"))) {
				t.Error("the verified download should be in the blob cache")
			}
		})
	}
}

func TestFetchSHA512AndCacheHit(t *testing.T) {
	img := testImage(t)
	blob := compressWith(t, img, compress.Zstd)
	srv := newServer(t)
	url := srv.add("/img.zst", blob)
	sum := sha512.Sum512(blob)
	f := newFetcher(t)
	raw, err := f.Fetch(context.Background(), url, "SHA512:"+strings.ToUpper(hex.EncodeToString(sum[:])))
	if err != nil {
		t.Fatal(err)
	}
	checkRaw(t, raw, img)
	n := len(srv.requests())
	raw2, err := f.Fetch(context.Background(), url, "sha512:"+hex.EncodeToString(sum[:]))
	if err != nil || raw2 != raw {
		t.Fatalf("second fetch: %v %q", err, raw2)
	}
	if len(srv.requests()) != n {
		t.Error("a cache hit must not make any HTTP request")
	}
	// The raw image gone, the blob is decompressed again without a download.
	os.Remove(raw)
	if _, err := f.Fetch(context.Background(), url, "sha512:"+hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	if len(srv.requests()) != n {
		t.Error("a cached blob must not be downloaded again")
	}
}

func TestFetchResume(t *testing.T) {
	img := testImage(t)
	blob := compressWith(t, img, compress.Gzip)
	srv := newServer(t)
	url := srv.add("/img.gz", blob)
	cut := int64(len(blob) * 2 / 5)
	srv.cut["/img.gz"] = cut

	f := newFetcher(t)
	raw, err := f.Fetch(context.Background(), url, sha256Of(blob))
	if err != nil {
		t.Fatal(err)
	}
	checkRaw(t, raw, img)
	reqs := srv.requests()
	if len(reqs) != 2 {
		t.Fatalf("requests: %+v", reqs)
	}
	if reqs[0].rangeHdr != "" || reqs[1].rangeHdr != fmt.Sprintf("bytes=%d-", cut) || reqs[1].ifRange != srv.etags["/img.gz"] {
		t.Errorf("the retry must ask only for the missing bytes: %+v", reqs)
	}
	blobDir := filepath.Join(f.CacheDir, "blobs/sha256")
	if entries, _ := os.ReadDir(blobDir); len(entries) != 1 {
		t.Errorf("partial files left: %v", entries)
	}
}

// TestFetchResumeNextRun interrupts a download for good, then resumes it
// from another Fetcher (another bakery run).
func TestFetchResumeNextRun(t *testing.T) {
	img := testImage(t)
	blob := compressWith(t, img, compress.Xz)
	srv := newServer(t)
	url := srv.add("/img.xz", blob)
	cut := int64(len(blob) / 3)
	srv.cut["/img.xz"] = cut
	cache := t.TempDir()

	f1 := &Fetcher{CacheDir: cache, MaxAttempts: 1, Logger: quiet}
	if _, err := f1.Fetch(context.Background(), url, sha256Of(blob)); err == nil || !strings.Contains(err.Error(), "connection lost") {
		t.Fatalf("first run should fail mid-download, got %v", err)
	}
	partial := filepath.Join(cache, "blobs/sha256", strings.TrimPrefix(sha256Of(blob), "sha256:")+".partial")
	if fi, err := os.Stat(partial); err != nil || fi.Size() != cut {
		t.Fatalf("partial download: %v", err)
	}
	f2 := &Fetcher{CacheDir: cache, MaxAttempts: 1, Logger: quiet}
	raw, err := f2.Fetch(context.Background(), url, sha256Of(blob))
	if err != nil {
		t.Fatal(err)
	}
	checkRaw(t, raw, img)
	if reqs := srv.requests(); reqs[len(reqs)-1].rangeHdr != fmt.Sprintf("bytes=%d-", cut) {
		t.Errorf("second run did not resume: %+v", reqs)
	}
}

// TestFetchResumeRestarts covers servers that ignore Range and files that
// changed since the partial download: both start again from byte 0.
func TestFetchResumeRestarts(t *testing.T) {
	img := testImage(t)
	blob := compressWith(t, img, compress.Gzip)
	for _, tc := range []string{"ignores Range", "file changed"} {
		t.Run(tc, func(t *testing.T) {
			srv := newServer(t)
			cache := t.TempDir()
			var url string
			if tc == "file changed" {
				url = srv.add("/img.gz", bytes.Repeat([]byte("old"), len(blob)/3+10))
			} else {
				url = srv.add("/img.gz", blob)
			}
			srv.cut["/img.gz"] = int64(len(blob) / 2)
			f := &Fetcher{CacheDir: cache, MaxAttempts: 1, Logger: quiet}
			if _, err := f.Fetch(context.Background(), url, sha256Of(blob)); err == nil {
				t.Fatal("expected the cut to fail the first run")
			}
			if tc == "file changed" {
				srv.add("/img.gz", blob) // new content, new ETag
			} else {
				srv.ignoreRange = true
			}
			raw, err := f.Fetch(context.Background(), url, sha256Of(blob))
			if err != nil {
				t.Fatal(err)
			}
			checkRaw(t, raw, img)
			last := srv.requests()[len(srv.requests())-1]
			if last.rangeHdr == "" {
				t.Errorf("the second run should have tried to resume: %+v", srv.requests())
			}
		})
	}
}

func TestFetchErrors(t *testing.T) {
	img := testImage(t)
	blob := compressWith(t, img, compress.Xz)
	srv := newServer(t)
	good := srv.add("/good.img.xz", blob)

	t.Run("404", func(t *testing.T) {
		f := newFetcher(t)
		_, err := f.Fetch(context.Background(), srv.URL+"/missing.img.xz", sha256Of(blob))
		var he *HTTPError
		if !errors.As(err, &he) || he.Code != 404 || !strings.Contains(err.Error(), "404 Not Found") {
			t.Fatalf("err = %v", err)
		}
		n := 0
		for _, r := range srv.requests() {
			if r.path == "/missing.img.xz" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("a 404 must not be retried (%d requests)", n)
		}
	})

	t.Run("transient 503", func(t *testing.T) {
		srv.statuses["/good.img.xz"] = []int{503, 502}
		f := newFetcher(t)
		raw, err := f.Fetch(context.Background(), good, sha256Of(blob))
		if err != nil {
			t.Fatal(err)
		}
		checkRaw(t, raw, img)
	})

	t.Run("checksum mismatch", func(t *testing.T) {
		f := newFetcher(t)
		wrong := sha256Of([]byte("another file"))
		_, err := f.Fetch(context.Background(), good, wrong)
		var ce *ChecksumError
		if !errors.As(err, &ce) {
			t.Fatalf("err = %v", err)
		}
		msg := err.Error()
		if !strings.Contains(msg, "expected "+wrong) || !strings.Contains(msg, "got "+sha256Of(blob)) {
			t.Errorf("message must name expected and actual: %s", msg)
		}
		for _, d := range []string{"blobs/sha256", "raw"} {
			if entries, _ := os.ReadDir(filepath.Join(f.CacheDir, d)); len(entries) != 0 {
				t.Errorf("%s holds %v after a mismatch", d, entries)
			}
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := l.Addr().String()
		l.Close()
		f := newFetcher(t)
		_, err := f.Fetch(context.Background(), "http://"+addr+"/x.img", sha256Of(blob))
		if err == nil || !strings.Contains(err.Error(), "giving up after 3 attempts") || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("err = %v", err)
		}
	})

	t.Run("no checksum for a download", func(t *testing.T) {
		_, err := newFetcher(t).Fetch(context.Background(), good, "")
		if err == nil || !strings.Contains(err.Error(), "checksum is required") {
			t.Errorf("err = %v", err)
		}
	})

	t.Run("bad checksum syntax", func(t *testing.T) {
		_, err := newFetcher(t).Fetch(context.Background(), good, "md5:abc")
		if err == nil || !strings.Contains(err.Error(), "want sha256:") {
			t.Errorf("err = %v", err)
		}
	})

	t.Run("unsupported scheme", func(t *testing.T) {
		_, err := newFetcher(t).Fetch(context.Background(), "ftp://example.org/x.img", "")
		if err == nil || !strings.Contains(err.Error(), "unsupported scheme") {
			t.Errorf("err = %v", err)
		}
	})
}

func TestFetchCorrupt(t *testing.T) {
	img := testImage(t)
	xzData := compressWith(t, img, compress.Xz)
	corruptXZ := append([]byte(nil), xzData...)
	for i := len(corruptXZ) / 2; i < len(corruptXZ)/2+64; i++ {
		corruptXZ[i] ^= 0x5a
	}
	gz := compressWith(t, img, compress.Gzip)
	tests := []struct {
		name, want string
		data       []byte
	}{
		{"corrupt xz", "the xz data is corrupt", corruptXZ},
		{"truncated xz", "the xz data is truncated", xzData[:len(xzData)*2/3]},
		{"truncated gz", "the gz data is truncated", gz[:len(gz)/2]},
		{"truncated zst", "the zst data", compressWith(t, img, compress.Zstd)[:1000]},
		{"zip without image", "the zip archive holds 0 disk images; want exactly one *.img (entries: README.txt, boot.bin)", zipOf(t, map[string][]byte{"README.txt": nil, "boot.bin": {1}})},
		{"zip with two images", "the zip archive holds 2 disk images; want exactly one *.img (entries: a.img, b.img)", zipOf(t, map[string][]byte{"a.img": img[:4096], "b.img": img[:4096]})},
		{"truncated zip", "the zip data is corrupt", zipOf(t, map[string][]byte{"a.img": img})[:1000]},
		{"empty", "the decompressed image is empty", compressWith(t, nil, compress.Gzip)},
		{"double compression", "the gz stream holds xz data", compressWith(t, xzData, compress.Gzip)},
	}
	srv := newServer(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := srv.add("/"+strings.ReplaceAll(tt.name, " ", "-"), tt.data)
			f := newFetcher(t)
			_, err := f.Fetch(context.Background(), url, sha256Of(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if entries, _ := os.ReadDir(filepath.Join(f.CacheDir, "raw")); len(entries) != 0 {
				t.Errorf("raw cache holds %v after a failure", entries)
			}
		})
	}
}

func TestFetchZipOneImage(t *testing.T) {
	img := testImage(t)
	data := zipOf(t, map[string][]byte{"__MACOSX/._x.img": {1, 2}, "images/x.IMG": img, "notes.txt": []byte("x")})
	f := newFetcher(t)
	p := filepath.Join(f.BaseDir, "pi.zip")
	os.WriteFile(p, data, 0o644)
	raw, err := f.Fetch(context.Background(), "pi.zip", "")
	if err != nil {
		t.Fatal(err)
	}
	checkRaw(t, raw, img)
}

func TestFetchLocal(t *testing.T) {
	img := testImage(t)
	f := newFetcher(t)
	p := filepath.Join(f.BaseDir, "base.img")
	os.WriteFile(p, img, 0o644)

	raw, err := f.Fetch(context.Background(), "base.img", "")
	if err != nil {
		t.Fatal(err)
	}
	checkRaw(t, raw, img)
	if filepath.Base(raw) != strings.TrimPrefix(sha256Of(img), "sha256:")+".img" {
		t.Errorf("raw name %s is not the file's sha256", raw)
	}
	// file:// and an explicit checksum give the same cache entry.
	raw2, err := f.Fetch(context.Background(), "file://"+p, sha256Of(img))
	if err != nil || raw2 != raw {
		t.Fatalf("file:// fetch: %v %s", err, raw2)
	}
	// A changed file is hashed again and cached separately.
	img2 := append([]byte(nil), img...)
	img2[100] ^= 1
	os.WriteFile(p, img2, 0o644)
	os.Chtimes(p, time.Unix(1, 0), time.Unix(1, 0))
	raw3, err := f.Fetch(context.Background(), "base.img", "")
	if err != nil || raw3 == raw {
		t.Fatalf("changed file: %v %s", err, raw3)
	}
	checkRaw(t, raw3, img2)
	// A wrong checksum for a local file is refused.
	if _, err := f.Fetch(context.Background(), p, sha256Of([]byte("x"))); err == nil || !strings.Contains(err.Error(), "checksum mismatch for "+p) {
		t.Errorf("err = %v", err)
	}
	if _, err := f.Fetch(context.Background(), "nope.img", ""); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestFetchConcurrent(t *testing.T) {
	img := testImage(t)
	blob := compressWith(t, img, compress.Xz)
	srv := newServer(t)
	url := srv.add("/img.xz", blob)
	cache := t.TempDir()
	var wg sync.WaitGroup
	paths := make([]string, 4)
	errs := make([]error, 4)
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := &Fetcher{CacheDir: cache, Logger: quiet}
			paths[i], errs[i] = f.Fetch(context.Background(), url, sha256Of(blob))
		}()
	}
	wg.Wait()
	for i := range paths {
		if errs[i] != nil || paths[i] != paths[0] {
			t.Fatalf("fetch %d: %v %s", i, errs[i], paths[i])
		}
	}
	checkRaw(t, paths[0], img)
	if n := len(srv.requests()); n != 1 {
		t.Errorf("%d downloads for 4 concurrent fetches, want 1", n)
	}
}

func TestFetchQcow2(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img not installed")
	}
	img := testImage(t)
	f := newFetcher(t)
	rawSrc := filepath.Join(f.BaseDir, "src.raw")
	os.WriteFile(rawSrc, img, 0o644)
	q := filepath.Join(f.BaseDir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", rawSrc, q).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	raw, err := f.Fetch(context.Background(), "disk.qcow2", "")
	if err != nil {
		t.Fatal(err)
	}
	checkRaw(t, raw, img)

	overlay := filepath.Join(f.BaseDir, "overlay.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", "-b", rawSrc, "-F", "raw", overlay).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if _, err := f.Fetch(context.Background(), overlay, ""); err == nil || !strings.Contains(err.Error(), "refers to another file") {
		t.Errorf("a qcow2 with a backing file must be refused: %v", err)
	}
}

func TestParseChecksum(t *testing.T) {
	for _, bad := range []string{"sha256", "sha256:", "md5:" + strings.Repeat("a", 32), "sha256:" + strings.Repeat("g", 64), "sha512:" + strings.Repeat("a", 64)} {
		if _, err := ParseChecksum(bad); err == nil {
			t.Errorf("ParseChecksum(%q) accepted", bad)
		}
	}
	c, err := ParseChecksum(" SHA256:" + strings.Repeat("AB", 32) + " ")
	if err != nil || c.Algo != "sha256" || c.Hex != strings.Repeat("ab", 32) {
		t.Errorf("ParseChecksum = %+v %v", c, err)
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", "/x/cache")
	if d, _ := DefaultCacheDir(); d != "/x/cache/bakery" {
		t.Errorf("with XDG_CACHE_HOME: %s", d)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if d, _ := DefaultCacheDir(); d != "/home/u/.cache/bakery" {
		t.Errorf("without: %s", d)
	}
}

func TestContentRange(t *testing.T) {
	for s, want := range map[string][3]int64{
		"bytes 100-199/200": {100, 200, 1},
		"bytes 0-0/*":       {0, 0, 1},
		"bytes x-1/2":       {0, 0, 0},
		"items 1-2/3":       {0, 0, 0},
	} {
		start, total, ok := parseContentRange(s)
		if ok != (want[2] == 1) || ok && (start != want[0] || total != want[1]) {
			t.Errorf("%q: %d %d %v", s, start, total, ok)
		}
	}
}

var _ = io.EOF

// TestFetchStall abandons a connection that stops sending and resumes on
// a new one.
func TestFetchStall(t *testing.T) {
	img := testImage(t)
	blob := compressWith(t, img, compress.Gzip)
	half := len(blob) / 2
	var mu sync.Mutex
	var ranges []string
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		first := len(ranges) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Content-Length", fmt.Sprint(len(blob)))
			w.Write(blob[:half])
			w.(http.Flusher).Flush()
			select { // stall
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("ETag", `"v1"`)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
	}))
	defer srv.Close()
	defer close(release)
	f := newFetcher(t)
	f.StallTimeout = time.Second
	f.MaxAttempts = 5
	raw, err := f.Fetch(context.Background(), srv.URL+"/img.gz", sha256Of(blob))
	if err != nil {
		t.Fatal(err)
	}
	checkRaw(t, raw, img)
	mu.Lock()
	defer mu.Unlock()
	// A loaded machine may see further stalls; the point is that the
	// stalled connection was abandoned and the next one resumed.
	if len(ranges) < 2 || ranges[1] != fmt.Sprintf("bytes=%d-", half) {
		t.Errorf("requests' ranges %q: want the second to resume at %d", ranges, half)
	}
}
