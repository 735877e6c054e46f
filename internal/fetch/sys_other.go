//go:build !unix

package fetch

import (
	"context"
	"os"
)

func lockFile(ctx context.Context, path string, wait func()) (func(), error) {
	return lockByCreate(ctx, path, wait)
}

func inode(os.FileInfo) uint64 { return 0 }
