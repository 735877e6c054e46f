//go:build unix

package nfs

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// fileIno is the host inode number of a disk image file, used as its stable
// NFS file id.
func fileIno(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino), nil
	}
	return 0, nil
}

// hostSpace reports the space of the host filesystem holding dir.
func hostSpace(dir string) (space, bool) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return space{}, false
	}
	bs := uint64(sfs.Bsize)
	return space{
		avail: uint64(sfs.Bavail) * bs, free: uint64(sfs.Bfree) * bs, total: uint64(sfs.Blocks) * bs,
		files: uint64(sfs.Files), freeFiles: uint64(sfs.Ffree),
	}, true
}
