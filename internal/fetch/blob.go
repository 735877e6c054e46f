package fetch

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Blob returns the path of a verified copy of rawURL in the cache
// (blobs/<algo>/<hex>), downloading it first when it is not there yet. It
// is the plain "download a file with a checksum" half of Fetch, without
// decompression, for release archives and other artifacts that are used
// as served. checksum is required. A local path or file:// URL is
// verified in place and its own path returned (nothing is copied).
func (f *Fetcher) Blob(ctx context.Context, rawURL, checksum string) (string, error) {
	sum, err := ParseChecksum(checksum)
	if err != nil {
		return "", err
	}
	if sum.IsZero() {
		return "", fmt.Errorf("%s: a checksum is required", rawURL)
	}
	src, err := f.classify(rawURL)
	if err != nil {
		return "", err
	}
	if !src.remote {
		if err := f.verifyLocal(ctx, src.path, sum); err != nil {
			return "", err
		}
		return src.path, nil
	}
	cache, err := f.cacheDir()
	if err != nil {
		return "", err
	}
	for _, d := range []string{"blobs/" + sum.Algo, "locks"} {
		if err := os.MkdirAll(filepath.Join(cache, d), 0o755); err != nil {
			return "", fmt.Errorf("create cache directory: %w", err)
		}
	}
	blob := filepath.Join(cache, "blobs", sum.Algo, sum.Hex)
	if exists(blob) {
		f.logger().Debug("download cached", "url", rawURL, "blob", blob)
		return blob, nil
	}
	unlock, err := lockFile(ctx, filepath.Join(cache, "locks", "blob-"+sum.Algo+"-"+sum.Hex+".lock"), func() {
		f.logger().Info("waiting for another bakery downloading the same file", "url", rawURL)
	})
	if err != nil {
		return "", err
	}
	defer unlock()
	if exists(blob) {
		return blob, nil
	}
	if err := f.download(ctx, src.url, sum, blob); err != nil {
		return "", err
	}
	return blob, nil
}
