package flash

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/bakeryhq/bakery/internal/units"
)

// SysPaths are where the OS describes disks and mounts. Tests point them
// at fabricated trees to exercise refusals that need hardware.
type SysPaths struct {
	Sys       string // /sys
	Mountinfo string // /proc/self/mountinfo
	Swaps     string // /proc/swaps
}

// DefaultSysPaths are the real ones.
func DefaultSysPaths() SysPaths {
	return SysPaths{Sys: "/sys", Mountinfo: "/proc/self/mountinfo", Swaps: "/proc/swaps"}
}

// SafetyOptions configure CheckTargets.
type SafetyOptions struct {
	// Force allows non-removable disks and existing files that do not
	// look like disk images. Nothing allows a mounted disk or the running
	// system's.
	Force bool
	// Sys defaults to DefaultSysPaths.
	Sys SysPaths
}

// TargetInfo describes a target for the confirmation prompt.
type TargetInfo struct {
	Path      string `json:"path"`
	Device    bool   `json:"device"`
	Exists    bool   `json:"exists"`
	Size      int64  `json:"size"`
	Model     string `json:"model,omitempty"`
	Vendor    string `json:"vendor,omitempty"`
	Transport string `json:"transport,omitempty"`
	Removable bool   `json:"removable"`
	// BackingFile is the file behind a loop device.
	BackingFile string `json:"backing_file,omitempty"`
}

// Describe is a one-line summary: "/dev/sdb  SanDisk Ultra  29.7GiB  usb, removable".
func (t TargetInfo) Describe() string {
	if !t.Device {
		if !t.Exists {
			return t.Path + "  (new image file)"
		}
		return fmt.Sprintf("%s  image file, %s", t.Path, units.Format(t.Size))
	}
	parts := []string{t.Path}
	if m := strings.TrimSpace(t.Vendor + " " + t.Model); m != "" {
		parts = append(parts, m)
	}
	parts = append(parts, units.Format(t.Size))
	var tags []string
	if t.Transport != "" {
		tags = append(tags, t.Transport)
	}
	if t.Removable {
		tags = append(tags, "removable")
	}
	if t.BackingFile != "" {
		tags = append(tags, "backed by "+t.BackingFile)
	}
	if len(tags) > 0 {
		parts = append(parts, strings.Join(tags, ", "))
	}
	return strings.Join(parts, "  ")
}

// RefusedError lists every reason the targets may not be written.
type RefusedError struct {
	Problems []string
}

func (e *RefusedError) Error() string {
	return "refusing to flash:\n  " + strings.Join(e.Problems, "\n  ")
}

// ErrRefused matches a *RefusedError with errors.Is.
var ErrRefused = errors.New("refusing to flash")

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// CheckTargets describes each target and refuses, all reasons at once,
// targets listed twice, the image itself, disks that are mounted (any
// partition, or anything stacked on them), that hold the running system
// (/, /boot, swap), that are partitions rather than whole disks, that are
// smaller than the image, or that are not removable (unless Force). New
// regular files are always allowed; an existing one only when it is empty
// or looks like a disk image (unless Force).
func CheckTargets(src *Source, paths []string, opts SafetyOptions) ([]TargetInfo, error) {
	if opts.Sys == (SysPaths{}) {
		opts.Sys = DefaultSysPaths()
	}
	var problems []string
	infos := make([]TargetInfo, 0, len(paths))
	seen := map[string]string{}
	imgStat, _ := os.Stat(src.Path)
	for _, path := range paths {
		abs, _ := filepath.Abs(path)
		key := abs
		info := TargetInfo{Path: path}
		st, err := os.Stat(path)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// A new image file, but never one in /dev: that is a typo for a
			// disk, and the file would fill the RAM-backed /dev.
			if strings.HasPrefix(abs, "/dev/") && !strings.HasPrefix(abs, "/dev/shm/") {
				problems = append(problems, fmt.Sprintf("%s does not exist (is the card inserted?)", path))
			}
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", path, err))
		case st.Mode().IsRegular():
			info.Exists, info.Size = true, st.Size()
			key = fileKey(st, abs)
			if imgStat != nil && os.SameFile(st, imgStat) {
				problems = append(problems, fmt.Sprintf("%s is the image itself", path))
			} else if !opts.Force {
				if err := checkExistingFile(path, st.Size(), src); err != nil {
					problems = append(problems, err.Error())
				}
			}
		case isDevice(st):
			info.Exists, info.Device = true, true
			key = fileKey(st, abs)
			var p []string
			info, p = checkDevice(path, st, opts)
			problems = append(problems, p...)
			if info.BackingFile != "" && imgStat != nil {
				if bst, err := os.Stat(info.BackingFile); err == nil && os.SameFile(bst, imgStat) {
					problems = append(problems, fmt.Sprintf("%s is a loop device over the image itself", path))
				}
			}
			if src.Size > 0 && info.Size > 0 && info.Size < src.Size {
				problems = append(problems, fmt.Sprintf("%s is %s, smaller than the %s image", path, units.Format(info.Size), units.Format(src.Size)))
			}
		default:
			problems = append(problems, fmt.Sprintf("%s is neither a disk nor a regular file (%s)", path, st.Mode().Type()))
		}
		if prev, dup := seen[key]; dup {
			problems = append(problems, fmt.Sprintf("%s is listed twice (also as %s)", path, prev))
		}
		seen[key] = path
		infos = append(infos, info)
	}
	if len(problems) > 0 {
		return infos, &RefusedError{Problems: problems}
	}
	return infos, nil
}

// checkExistingFile refuses to overwrite an existing regular file unless it
// is empty or looks like a disk image: its first sector ends in the boot
// signature 0x55AA (MBR, or GPT's protective MBR), begins with zeros (a
// blank file, or one a failed flash left marked incomplete), or equals a
// raw image's first sector (flashing the same image again). That keeps a
// mistyped target such as /etc/passwd or a qcow2 disk from being
// overwritten without --force.
func checkExistingFile(path string, size int64, src *Source) error {
	if size == 0 {
		return nil
	}
	head, err := firstSector(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case len(head) == 512 && head[510] == 0x55 && head[511] == 0xAA:
		return nil
	case bytes.Count(head, []byte{0}) == len(head):
		return nil
	case src.Format == "":
		if imageHead, err := firstSector(src.Path); err == nil && bytes.Equal(head, imageHead) {
			return nil
		}
	}
	return fmt.Errorf("%s is an existing %s file that does not look like a disk image (no partition table); pass --force to overwrite it", path, units.Format(size))
}

// firstSector reads up to 512 bytes from the start of a file.
func firstSector(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read its first sector: %w", err)
	}
	return head[:n], nil
}
