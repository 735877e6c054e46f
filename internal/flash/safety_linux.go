//go:build linux

package flash

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/bakeryhq/bakery/internal/units"
)

// fileKey identifies a device by number and a file by inode, so /dev/sdb
// and a symlink to it count as the same target.
func fileKey(st os.FileInfo, abs string) string {
	s, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case !ok:
		return abs
	case isDevice(st):
		return "dev " + devString(s.Rdev)
	}
	return fmt.Sprintf("inode %d:%d", s.Dev, s.Ino)
}

// checkDevice looks the device up in sysfs and lists what forbids writing
// it.
func checkDevice(path string, st os.FileInfo, opts SafetyOptions) (TargetInfo, []string) {
	info := TargetInfo{Path: path, Device: true, Exists: true}
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return info, []string{path + ": cannot read the device number"}
	}
	dev := devString(s.Rdev)
	dir, err := filepath.EvalSymlinks(filepath.Join(opts.Sys.Sys, "dev", "block", dev))
	if err != nil {
		return info, []string{fmt.Sprintf("%s: device %s is not in %s/dev/block: %v", path, dev, opts.Sys.Sys, err)}
	}
	env, err := loadSysEnv(opts.Sys)
	if err != nil {
		return info, []string{fmt.Sprintf("%s: %v", path, err)}
	}
	d := env.describe(filepath.Base(dir), dir)
	info.Size, info.Model, info.Vendor, info.Transport = d.Size, d.Model, d.Vendor, d.Transport
	info.Removable, info.BackingFile = d.Removable, d.BackingFile
	if f, err := os.Open(path); err == nil {
		if n, err := f.Seek(0, 2); err == nil && n > 0 {
			info.Size = n
		}
		f.Close()
	}

	var problems []string
	if d.partition {
		problems = append(problems, fmt.Sprintf("%s is a partition of /dev/%s: give the whole disk", path, d.parentName))
	}
	if d.systemUse != "" {
		problems = append(problems, fmt.Sprintf("%s holds the running system (%s is on it)", path, d.systemUse))
	}
	if len(d.swapOn) > 0 {
		problems = append(problems, fmt.Sprintf("%s is in use as swap (%s)", path, strings.Join(d.swapOn, ", ")))
	}
	if len(d.mountedAt) > 0 {
		problems = append(problems, fmt.Sprintf("%s is mounted: %s; unmount it first", path, strings.Join(d.mountedAt, ", ")))
	}
	if d.ReadOnly {
		problems = append(problems, fmt.Sprintf("%s is read-only (write-protect switch?)", path))
	}
	// Loop devices are files in disguise; everything else must be removable
	// (USB readers often claim removable=0, so usb and mmc count too).
	if !d.Removable && d.Transport != "loop" && !opts.Force {
		kind := d.Transport
		if kind == "" {
			kind = "unknown transport"
		}
		about := []string{units.Format(d.Size), kind}
		if model := strings.TrimSpace(d.Vendor + " " + d.Model); model != "" {
			about = append([]string{model}, about...)
		}
		problems = append(problems, fmt.Sprintf("%s (%s) is not a removable disk: pass --force if you really mean it", path, strings.Join(about, ", ")))
	}
	return info, problems
}
