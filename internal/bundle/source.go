package bundle

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/bakeryhq/bakery/internal/atomicfile"
	"github.com/bakeryhq/bakery/internal/compress"
	"github.com/bakeryhq/bakery/internal/fetch"
	"github.com/bakeryhq/bakery/internal/streams"
)

// hashicorpKey is HashiCorp's release signing key (key id
// 34365D9472D7468F, fingerprint C874 011F 0AB4 0511 0D02 1055 3436 5D94
// 72D7 468F), as published at https://www.hashicorp.com/security.
//
//go:embed hashicorp.asc
var hashicorpKey []byte

// HashiCorpFingerprint is the fingerprint of the embedded key.
const HashiCorpFingerprint = "C874011F0AB405110D02105534365D9472D7468F"

// HashiCorpKey returns the embedded key, armored.
func HashiCorpKey() []byte { return bytes.Clone(hashicorpKey) }

// Limits on what we read from the network and from archives.
const (
	maxSumsBytes   = 1 << 20
	maxSigBytes    = 64 << 10
	maxBinaryBytes = 1 << 30
)

// Files names the release files of one product, version and arch.
type Files struct {
	Archive string // consul_1.20.1_linux_arm64.zip
	Sums    string // consul_1.20.1_SHA256SUMS
	Sig     string // consul_1.20.1_SHA256SUMS.sig ("" for Prometheus)
	// Arch is the vendor's name for the architecture ({arch}).
	Arch string
}

// ReleaseFiles returns the file names of a release.
func ReleaseFiles(p Product, version string, a Arch) Files {
	if p.Vendor == VendorPrometheus {
		arch := a.Prometheus()
		return Files{Archive: fmt.Sprintf("%s-%s.linux-%s.tar.gz", p.Release, version, arch), Sums: "sha256sums.txt", Arch: arch}
	}
	arch := a.HashiCorp()
	sums := fmt.Sprintf("%s_%s_SHA256SUMS", p.Release, version)
	return Files{Archive: fmt.Sprintf("%s_%s_linux_%s.zip", p.Release, version, arch), Sums: sums, Sig: sums + ".sig", Arch: arch}
}

// DefaultURLTemplate is where a vendor publishes releases.
func DefaultURLTemplate(p Product) string {
	if p.Vendor == VendorPrometheus {
		return "https://github.com/prometheus/{name}/releases/download/v{version}/{file}"
	}
	return "https://releases.hashicorp.com/{name}/{version}/{file}"
}

// ExpandURL fills a URL template.
func ExpandURL(template string, p Product, version, arch, file string) string {
	return strings.NewReplacer("{name}", p.Release, "{version}", version, "{os}", "linux", "{arch}", arch, "{file}", file).Replace(template)
}

// CheckMirror validates a mirror URL template.
func CheckMirror(m string) error {
	if m == "" {
		return nil
	}
	if !strings.Contains(m, "{file}") {
		return fmt.Errorf("mirror %q must contain {file} (and usually {name} and {version})", m)
	}
	u, err := url.Parse(strings.NewReplacer("{", "", "}", "").Replace(m))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") {
		return fmt.Errorf("mirror %q: want an http://, https:// or file:// URL template", m)
	}
	return nil
}

// Source downloads and verifies release archives, and extracts their
// binaries into the cache.
type Source struct {
	// Cache downloads archives into its content-addressed cache (its
	// CacheDir, HTTPClient and Logger are used here too).
	Cache *fetch.Fetcher
	// Now is the time signatures are checked at (default time.Now); the
	// key's and signature's validity periods are checked against it.
	Now func() time.Time
}

// Artifact is a verified release archive and its extracted binary.
type Artifact struct {
	Product Product
	Version string
	Arch    Arch
	Files   Files
	// ArchivePath is the verified archive in the cache; SHA256 its hash.
	ArchivePath string
	SHA256      string
	// BinaryPath is the extracted executable in the cache (read-only).
	BinaryPath string
	// Signer names the key that signed the checksums (HashiCorp only).
	Signer string
}

// VerifyError is a release that failed verification.
type VerifyError struct {
	What string
	Err  error
}

func (e *VerifyError) Error() string { return e.What + ": " + e.Err.Error() }
func (e *VerifyError) Unwrap() error { return e.Err }

func (s *Source) logger() *slog.Logger {
	if s.Cache != nil && s.Cache.Logger != nil {
		return s.Cache.Logger
	}
	return slog.Default()
}

func (s *Source) client() *http.Client {
	if s.Cache != nil && s.Cache.HTTPClient != nil {
		return s.Cache.HTTPClient
	}
	return http.DefaultClient
}

func (s *Source) cacheDir() (string, error) {
	if s.Cache != nil && s.Cache.CacheDir != "" {
		return s.Cache.CacheDir, nil
	}
	return fetch.DefaultCacheDir()
}

// Fetch brings the release of set.Name/set.Version for arch into the
// cache, verifying the checksum list's signature (HashiCorp), the
// archive's checksum, and the binary's architecture.
func (s *Source) Fetch(ctx context.Context, set Settings, arch Arch) (*Artifact, error) {
	prod, err := Lookup(set.Name)
	if err != nil {
		return nil, err
	}
	if err := checkVersion(set.Version); err != nil {
		return nil, fmt.Errorf("bundle %q: version %w", set.Name, err)
	}
	if err := CheckMirror(set.Mirror); err != nil {
		return nil, fmt.Errorf("bundle %q: %w", set.Name, err)
	}
	files := ReleaseFiles(prod, set.Version, arch)
	tmpl := set.Mirror
	if tmpl == "" {
		tmpl = DefaultURLTemplate(prod)
	}
	urlOf := func(file string) string { return ExpandURL(tmpl, prod, set.Version, files.Arch, file) }
	what := fmt.Sprintf("%s %s", prod.Release, set.Version)

	sums, err := s.small(ctx, urlOf(files.Sums), maxSumsBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: checksums: %w", what, err)
	}
	art := &Artifact{Product: prod, Version: set.Version, Arch: arch, Files: files}
	if files.Sig != "" {
		sig, err := s.small(ctx, urlOf(files.Sig), maxSigBytes)
		if err != nil {
			return nil, fmt.Errorf("%s: checksum signature: %w", what, err)
		}
		key := set.PGPKey
		if len(key) == 0 {
			key = hashicorpKey
		}
		signer, err := VerifySignature(key, sums, sig, s.now())
		if err != nil {
			return nil, &VerifyError{What: fmt.Sprintf("%s: signature of %s", what, files.Sums), Err: err}
		}
		art.Signer = signer
	}
	sum, err := LookupSum(sums, files.Archive)
	if err != nil {
		return nil, &VerifyError{What: fmt.Sprintf("%s: %s", what, files.Sums), Err: err}
	}
	art.SHA256 = sum
	cache := s.Cache
	if cache == nil {
		cache = &fetch.Fetcher{}
	}
	archive, err := cache.Blob(ctx, urlOf(files.Archive), "sha256:"+sum)
	if err != nil {
		var ce *fetch.ChecksumError
		if errors.As(err, &ce) {
			return nil, &VerifyError{What: fmt.Sprintf("%s: %s", what, files.Archive), Err: err}
		}
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	art.ArchivePath = archive
	if art.BinaryPath, err = s.extract(ctx, art); err != nil {
		return nil, err
	}
	if err := checkBinaryArch(art.BinaryPath, files.Archive+": "+prod.Binary, arch); err != nil {
		return nil, err
	}
	s.logger().Info("bundle source verified", "bundle", prod.Name, "version", set.Version, "arch", arch.String(),
		"archive", files.Archive, "sha256", sum, "signer", art.Signer)
	return art, nil
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// small fetches a small file (a checksum list or signature) into memory.
func (s *Source) small(ctx context.Context, rawURL string, limit int64) ([]byte, error) {
	if strings.HasPrefix(rawURL, "file://") {
		u, err := url.Parse(rawURL)
		if err != nil {
			return nil, err
		}
		return readLimited(u.Path, limit)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(attempt) * time.Second):
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("User-Agent", "bakery")
		resp, err := s.client().Do(req)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			continue
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 500:
			lastErr = fmt.Errorf("download %s: the server answered %s", rawURL, resp.Status)
			continue
		case resp.StatusCode != http.StatusOK:
			return nil, fmt.Errorf("download %s: the server answered %s", rawURL, resp.Status)
		case err != nil:
			lastErr = fmt.Errorf("download %s: %w", rawURL, err)
			continue
		case int64(len(b)) > limit:
			return nil, fmt.Errorf("download %s: larger than %d bytes; this is not a checksum file", rawURL, limit)
		}
		return b, nil
	}
	return nil, lastErr
}

func readLimited(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", p, limit)
	}
	return b, nil
}

// VerifySignature checks a detached signature (binary or armored) over
// signed with the armored public key(s) in key, at time now. It returns the
// signer's identity and fingerprint.
func VerifySignature(key, signed, sig []byte, now time.Time) (string, error) {
	keyring, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(key))
	if err != nil {
		return "", fmt.Errorf("read the PGP public key: %w", err)
	}
	cfg := &packet.Config{Time: func() time.Time { return now }}
	sigReader := io.Reader(bytes.NewReader(sig))
	if bytes.HasPrefix(bytes.TrimSpace(sig), []byte("-----BEGIN")) {
		blk, err := armor.Decode(bytes.NewReader(sig))
		if err != nil {
			return "", fmt.Errorf("read the armored signature: %w", err)
		}
		sigReader = blk.Body
	}
	signer, err := openpgp.CheckDetachedSignature(keyring, bytes.NewReader(signed), sigReader, cfg)
	if err != nil {
		return "", fmt.Errorf("the PGP signature does not verify with the trusted key (%v): the checksums were not signed by the vendor, or were altered", err)
	}
	id := ""
	for name := range signer.Identities {
		id = name
		break
	}
	return fmt.Sprintf("%s %X", id, signer.PrimaryKey.Fingerprint), nil
}

// LookupSum finds file's SHA-256 in a SHA256SUMS-style list
// ("HEX  NAME" or "HEX *NAME" lines).
func LookupSum(sums []byte, file string) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(sums))
	sc.Buffer(make([]byte, 0, 4096), maxSumsBytes)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		name := strings.TrimPrefix(fields[1], "*")
		if name != file && strings.TrimPrefix(name, "./") != file {
			continue
		}
		h := strings.ToLower(fields[0])
		if b, err := hex.DecodeString(h); err != nil || len(b) != sha256.Size {
			return "", fmt.Errorf("the entry for %s is not a SHA-256 (%q)", file, fields[0])
		}
		return h, nil
	}
	return "", fmt.Errorf("no checksum for %s (wrong version or architecture?)", file)
}

// extract copies the product's binary out of the archive into the cache:
// bin/<archive sha256>/<binary>.
func (s *Source) extract(ctx context.Context, art *Artifact) (string, error) {
	cache, err := s.cacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "bin", art.SHA256)
	out := filepath.Join(dir, art.Product.Binary)
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	rc, size, err := OpenBinary(art.ArchivePath, art.Files.Archive, art.Product.Binary)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	f, err := atomicfile.Create(out, 0o555)
	if err != nil {
		return "", err
	}
	n, err := io.Copy(f, streams.WithContext(ctx, io.LimitReader(rc, maxBinaryBytes+1)))
	if err == nil && n != size {
		err = fmt.Errorf("%s: %s is %d bytes, expected %d", art.Files.Archive, art.Product.Binary, n, size)
	}
	if err != nil {
		f.Abort()
		return "", fmt.Errorf("extract %s from %s: %w", art.Product.Binary, art.Files.Archive, err)
	}
	if err := f.Commit(); err != nil {
		return "", err
	}
	return out, nil
}

// OpenBinary opens the executable named binary in a release archive (zip,
// or tar.gz with one top-level directory) and returns its size.
func OpenBinary(archivePath, name, binary string) (io.ReadCloser, int64, error) {
	f, err := os.Open(archivePath)
	if err != nil {
		return nil, 0, err
	}
	head := make([]byte, 8)
	n, _ := io.ReadFull(f, head)
	if compress.Detect(head[:n]) == compress.Zip {
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		zr, err := zip.NewReader(f, fi.Size())
		if err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("%s: not a valid zip archive: %w", name, err)
		}
		for _, zf := range zr.File {
			if zf.Name != binary || zf.FileInfo().IsDir() {
				continue
			}
			if zf.UncompressedSize64 > maxBinaryBytes {
				f.Close()
				return nil, 0, fmt.Errorf("%s: %s is %d bytes, more than the %d a release binary may have", name, binary, zf.UncompressedSize64, int64(maxBinaryBytes))
			}
			rc, err := zf.Open()
			if err != nil {
				f.Close()
				return nil, 0, fmt.Errorf("%s: %w", name, err)
			}
			return multiCloser{rc, f}, int64(zf.UncompressedSize64), nil
		}
		f.Close()
		return nil, 0, fmt.Errorf("%s holds no file named %s at its top level", name, binary)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, err
	}
	dec, _, err := compress.Reader(f)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("%s: %w", name, err)
	}
	tr := tar.NewReader(dec)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			dec.Close()
			f.Close()
			return nil, 0, fmt.Errorf("%s: corrupt tar archive: %w", name, err)
		}
		clean := path.Clean(strings.TrimPrefix(h.Name, "./"))
		if h.Typeflag != tar.TypeReg || path.Base(clean) != binary || strings.Count(clean, "/") > 1 {
			continue
		}
		if h.Size > maxBinaryBytes {
			dec.Close()
			f.Close()
			return nil, 0, fmt.Errorf("%s: %s is %d bytes, more than the %d a release binary may have", name, binary, h.Size, int64(maxBinaryBytes))
		}
		return multiCloser{io.NopCloser(tr), dec, f}, h.Size, nil
	}
	dec.Close()
	f.Close()
	return nil, 0, fmt.Errorf("%s holds no file named %s in its top-level directory", name, binary)
}

type multiCloser []io.Closer

func (m multiCloser) Read(p []byte) (int, error) { return m[0].(io.Reader).Read(p) }
func (m multiCloser) Close() error {
	var first error
	for _, c := range m {
		if err := c.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func checkBinaryArch(p, what string, want Arch) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	got, err := ELFArch(f, fi.Size(), what)
	if err != nil {
		return err
	}
	if !Compatible(got, want) {
		return &ArchError{What: what, Got: got, Want: want}
	}
	return nil
}

// BinaryModTime returns the modification time the release archive
// records for its binary.
func BinaryModTime(archivePath, binary string) (time.Time, error) {
	f, err := os.Open(archivePath)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	head := make([]byte, 8)
	n, _ := io.ReadFull(f, head)
	if compress.Detect(head[:n]) == compress.Zip {
		fi, err := f.Stat()
		if err != nil {
			return time.Time{}, err
		}
		zr, err := zip.NewReader(f, fi.Size())
		if err != nil {
			return time.Time{}, err
		}
		for _, zf := range zr.File {
			if zf.Name == binary {
				return zf.Modified, nil
			}
		}
		return time.Time{}, fmt.Errorf("no %s in %s", binary, archivePath)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return time.Time{}, err
	}
	dec, _, err := compress.Reader(f)
	if err != nil {
		return time.Time{}, err
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	for {
		h, err := tr.Next()
		if err != nil {
			return time.Time{}, err
		}
		if h.Typeflag == tar.TypeReg && path.Base(h.Name) == binary {
			return h.ModTime, nil
		}
	}
}
