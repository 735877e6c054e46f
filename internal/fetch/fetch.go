// Package fetch brings a build's base image into a local, content-addressed
// cache: it downloads (resuming interrupted downloads with HTTP Range),
// verifies the checksum before anything is trusted, decompresses (xz, gz,
// zstd, bzip2, zip, tar, qcow2) into a sparse raw image, and hands out the
// path of that read-only raw image. A rebuild finds it in the cache and
// only copies it (CopySparse, a reflink where the filesystem allows).
//
// Cache layout under CacheDir:
//
//	blobs/sha256/<hex>          verified downloads, as served (0444)
//	blobs/sha256/<hex>.partial  an interrupted download, with .partial.json
//	raw/<hex>.img               the decompressed raw image (sparse, 0444)
//	locks/<algo>-<hex>.lock     one lock per image, so concurrent builds
//	                            fetching the same base do not collide
//	local/<key>.json            remembered hashes of local files
//
// <hex> is the image's checksum as the spec gives it (sha256 or sha512),
// or the sha256 of a local file given without one.
package fetch

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/progress"
)

// Fetcher fetches base images into a cache. The zero value works: it uses
// DefaultCacheDir, http.DefaultClient, no progress and slog.Default.
type Fetcher struct {
	// CacheDir holds the cache (default DefaultCacheDir()).
	CacheDir string
	// BaseDir is what relative plain paths resolve against (default: the
	// working directory); the build passes the spec's directory.
	BaseDir string
	// HTTPClient does the downloads (default http.DefaultClient).
	HTTPClient *http.Client
	// Progress shows the "download" and "decompress" tasks.
	Progress *progress.Reporter
	// Logger receives what the fetcher does (cache hits, resumes, retries).
	Logger *slog.Logger
	// MaxAttempts bounds the tries for transient download errors
	// (default 5); RetryWait is the first pause between them, doubling
	// up to 30s (default 1s).
	MaxAttempts int
	RetryWait   time.Duration
	// StallTimeout abandons (and then resumes) a download that received
	// nothing for this long (default 60s).
	StallTimeout time.Duration
}

// DefaultCacheDir is $XDG_CACHE_HOME/bakery, else ~/.cache/bakery.
func DefaultCacheDir() (string, error) {
	if x := os.Getenv("XDG_CACHE_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "bakery"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the cache directory: %w (set XDG_CACHE_HOME or --cache)", err)
	}
	return filepath.Join(home, ".cache", "bakery"), nil
}

// Checksum is an expected digest, "sha256:HEX" or "sha512:HEX".
type Checksum struct {
	Algo string // "sha256" or "sha512"
	Hex  string // lower-case
}

// ParseChecksum parses "sha256:HEX" or "sha512:HEX" (case-insensitive).
// The empty string gives the zero Checksum.
func ParseChecksum(s string) (Checksum, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Checksum{}, nil
	}
	algo, hexs, ok := strings.Cut(strings.ToLower(s), ":")
	want := map[string]int{"sha256": 64, "sha512": 128}[algo]
	if !ok || want == 0 || len(hexs) != want {
		return Checksum{}, fmt.Errorf("checksum %q: want sha256:<64 hex digits> or sha512:<128 hex digits>", s)
	}
	if _, err := hex.DecodeString(hexs); err != nil {
		return Checksum{}, fmt.Errorf("checksum %q: not hexadecimal", s)
	}
	return Checksum{Algo: algo, Hex: hexs}, nil
}

// IsZero reports an absent checksum.
func (c Checksum) IsZero() bool { return c.Algo == "" }

func (c Checksum) String() string { return c.Algo + ":" + c.Hex }

func (c Checksum) newHash() hash.Hash {
	if c.Algo == "sha512" {
		return sha512.New()
	}
	return sha256.New()
}

// ChecksumError reports content that does not match its checksum.
type ChecksumError struct {
	What     string // the URL or path
	Expected Checksum
	Actual   string // hex
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("checksum mismatch for %s: expected %s, got %s:%s (the file is corrupt or the checksum is for another file)",
		e.What, e.Expected, e.Expected.Algo, e.Actual)
}

func (f *Fetcher) logger() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return slog.Default()
}

func (f *Fetcher) cacheDir() (string, error) {
	if f.CacheDir != "" {
		return f.CacheDir, nil
	}
	return DefaultCacheDir()
}

// LockOutputs takes the cache's lock for one set of outputs (a directory
// and a name), waiting, and calling wait once, while another build holds
// it. The lock dies with its process, so a killed build never leaves one
// behind.
func (f *Fetcher) LockOutputs(ctx context.Context, dir, name string, wait func()) (unlock func(), err error) {
	cache, err := f.cacheDir()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(cache, "locks"), 0o755); err != nil {
		return nil, fmt.Errorf("cache %s: %w", cache, err)
	}
	sum := sha256.Sum256([]byte(abs))
	return lockFile(ctx, filepath.Join(cache, "locks", "output-"+hex.EncodeToString(sum[:8])+".lock"), wait)
}

// Source classifies a base URL: remote (http, https) or a local path.
type source struct {
	remote bool
	url    string // for remote
	path   string // absolute, for local
}

func (f *Fetcher) classify(raw string) (source, error) {
	lower := strings.ToLower(raw)
	switch {
	case strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://"):
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return source{}, fmt.Errorf("base URL %q is not a valid URL", raw)
		}
		return source{remote: true, url: raw}, nil
	case strings.HasPrefix(lower, "file://"):
		u, err := url.Parse(raw)
		if err != nil || (u.Host != "" && u.Host != "localhost") || u.Path == "" {
			return source{}, fmt.Errorf("base URL %q: want file:///absolute/path", raw)
		}
		return source{path: f.resolve(u.Path)}, nil
	case strings.Contains(raw, "://"):
		return source{}, fmt.Errorf("base URL %q: unsupported scheme (want https, http, file or a plain path)", raw)
	case raw == "":
		return source{}, errors.New("base URL is empty")
	}
	return source{path: f.resolve(raw)}, nil
}

func (f *Fetcher) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	base := f.BaseDir
	if base == "" {
		base, _ = os.Getwd()
	}
	return filepath.Join(base, p)
}

// Fetch returns the path of the cached raw image for url, fetching and
// decompressing it first if needed. The file is read-only and shared:
// copy it (CopySparse) before editing. checksum ("sha256:HEX" or
// "sha512:HEX") is required for http(s) URLs; for local files it is
// verified when given, and the file is hashed when not.
func (f *Fetcher) Fetch(ctx context.Context, rawURL, checksum string) (string, error) {
	sum, err := ParseChecksum(checksum)
	if err != nil {
		return "", err
	}
	src, err := f.classify(rawURL)
	if err != nil {
		return "", err
	}
	if src.remote && sum.IsZero() {
		return "", fmt.Errorf("base %s: a checksum is required for downloads", rawURL)
	}
	cache, err := f.cacheDir()
	if err != nil {
		return "", err
	}
	for _, d := range []string{"blobs/sha256", "blobs/sha512", "raw", "locks", "local"} {
		if err := os.MkdirAll(filepath.Join(cache, d), 0o755); err != nil {
			return "", fmt.Errorf("create cache directory: %w", err)
		}
	}
	log := f.logger()

	if !src.remote {
		fi, err := os.Stat(src.path)
		if err != nil {
			return "", fmt.Errorf("base image: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("base image %s is not a regular file", src.path)
		}
		if sum.IsZero() {
			if sum, err = f.hashLocal(ctx, cache, src.path); err != nil {
				return "", err
			}
		}
	}

	rawPath := filepath.Join(cache, "raw", sum.Hex+".img")
	if exists(rawPath) {
		log.Debug("base image cached", "url", rawURL, "raw", rawPath)
		return rawPath, nil
	}
	unlock, err := lockFile(ctx, filepath.Join(cache, "locks", sum.Algo+"-"+sum.Hex+".lock"), func() {
		log.Info("waiting for another bakery fetching the same base", "url", rawURL)
	})
	if err != nil {
		return "", err
	}
	defer unlock()
	if exists(rawPath) { // another process finished while we waited
		return rawPath, nil
	}

	input := src.path
	if src.remote {
		blob := filepath.Join(cache, "blobs", sum.Algo, sum.Hex)
		if exists(blob) {
			log.Debug("base download cached", "url", rawURL, "blob", blob)
		} else if err := f.download(ctx, src.url, sum, blob); err != nil {
			return "", err
		}
		input = blob
	} else if checksum != "" {
		if err := f.verifyLocal(ctx, src.path, sum); err != nil {
			return "", err
		}
	}
	format, err := f.decompress(ctx, input, rawPath, !src.remote)
	if err != nil {
		return "", err
	}
	if src.remote && format == formatRaw {
		// The raw image holds the same bytes, sparse; keep one copy.
		os.Remove(input)
	}
	log.Info("base image ready", "url", rawURL, "format", format, "raw", rawPath)
	return rawPath, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
