//go:build !unix

package nfs

// fileIno has no stable inode number to offer here; callers fall back to
// their own ids.
func fileIno(string) (uint64, error) { return 0, nil }

// hostSpace is unknown on this platform.
func hostSpace(string) (space, bool) { return space{}, false }
