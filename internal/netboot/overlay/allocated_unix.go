//go:build unix

package overlay

import (
	"os"
	"syscall"
)

// allocated is the disk space a layer file really uses (sparse files count
// only their data).
func allocated(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}
