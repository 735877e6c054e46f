package flash

import (
	"errors"
	"fmt"
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
	// Force allows non-removable disks. Nothing allows a mounted disk or
	// the running system's.
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
// smaller than the image, or that are not removable (unless Force). Regular
// files are always allowed.
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
