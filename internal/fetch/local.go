package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/bakeryhq/bakery/internal/atomicfile"
	"github.com/bakeryhq/bakery/internal/streams"
)

// localRecord remembers the hash of a local file, so that a base given as
// a plain path without a checksum is hashed once, not on every build. It
// is trusted only while the file's size, modification time and inode stay
// the same.
type localRecord struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
	Inode   uint64 `json:"inode"`
	SHA256  string `json:"sha256"`
}

func (f *Fetcher) hashLocal(ctx context.Context, cache, path string) (Checksum, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Checksum{}, fmt.Errorf("base image: %w", err)
	}
	key := sha256.Sum256([]byte(path))
	indexPath := filepath.Join(cache, "local", hex.EncodeToString(key[:16])+".json")
	want := localRecord{Path: path, Size: fi.Size(), ModTime: fi.ModTime().UnixNano(), Inode: inode(fi)}
	if b, err := os.ReadFile(indexPath); err == nil {
		var rec localRecord
		if json.Unmarshal(b, &rec) == nil && len(rec.SHA256) == 64 {
			got := rec
			got.SHA256 = ""
			if got == want {
				return Checksum{Algo: "sha256", Hex: rec.SHA256}, nil
			}
		}
	}
	sum, err := f.hashFile(ctx, path, sha256.New(), "checksum")
	if err != nil {
		return Checksum{}, err
	}
	want.SHA256 = sum
	if b, err := json.Marshal(want); err == nil {
		// Best effort: without the record the file is hashed again.
		if err := atomicfile.WriteFile(indexPath, b, 0o644); err != nil {
			f.logger().Warn("cannot remember the base image's hash", "error", err)
		}
	}
	return Checksum{Algo: "sha256", Hex: sum}, nil
}

func (f *Fetcher) verifyLocal(ctx context.Context, path string, sum Checksum) error {
	got, err := f.hashFile(ctx, path, sum.newHash(), "verify")
	if err != nil {
		return err
	}
	if got != sum.Hex {
		return &ChecksumError{What: path, Expected: sum, Actual: got}
	}
	return nil
}

func (f *Fetcher) hashFile(ctx context.Context, path string, h hash.Hash, task string) (string, error) {
	in, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("base image: %w", err)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return "", err
	}
	t := f.Progress.Start(task, fi.Size())
	_, err = io.CopyBuffer(h, t.Reader(streams.WithContext(ctx, in)), make([]byte, 1<<20))
	t.Done(err)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
