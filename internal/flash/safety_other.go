//go:build !linux

package flash

import (
	"fmt"
	"os"
	"path/filepath"
)

func fileKey(st os.FileInfo, abs string) string {
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real
	}
	return abs
}

// checkDevice: the mount and system-disk checks exist for Linux only. On
// macOS a disk is accepted with --force after the user has checked it with
// `diskutil list` and unmounted it (`diskutil unmountDisk`); opening it
// exclusively then fails if anything still holds it.
func checkDevice(path string, st os.FileInfo, opts SafetyOptions) (TargetInfo, []string) {
	info := TargetInfo{Path: path, Device: true, Exists: true}
	if f, err := os.Open(path); err == nil {
		if n, err := f.Seek(0, 2); err == nil {
			info.Size = n
		}
		f.Close()
	}
	if !opts.Force {
		return info, []string{fmt.Sprintf("%s: mount and system-disk checks are implemented on Linux only; check the disk with `diskutil list`, unmount it with `diskutil unmountDisk`, and pass --force", path)}
	}
	return info, nil
}
