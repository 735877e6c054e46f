//go:build linux

package flash

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Devices lists the disks that could be flashed, from /sys/block and the
// mount table.
func Devices(opts ListOptions) ([]Device, error) {
	if opts.Sys == (SysPaths{}) {
		opts.Sys = DefaultSysPaths()
	}
	entries, err := os.ReadDir(filepath.Join(opts.Sys.Sys, "block"))
	if err != nil {
		return nil, fmt.Errorf("list disks: %w", err)
	}
	env, err := loadSysEnv(opts.Sys)
	if err != nil {
		return nil, err
	}
	var out []Device
	for _, e := range entries {
		name := e.Name()
		dir, err := filepath.EvalSymlinks(filepath.Join(opts.Sys.Sys, "block", name))
		if err != nil {
			continue
		}
		d := env.describe(name, dir)
		if !opts.All && (d.Size == 0 || isVirtual(name)) {
			continue
		}
		out = append(out, d.Device)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func isVirtual(name string) bool {
	for _, p := range []string{"loop", "ram", "zram", "dm-", "md", "nbd", "sr"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// mount is one line of mountinfo.
type mount struct {
	dev        string // "major:minor"
	mountpoint string
	source     string
}

// sysEnv is the mount and swap state read once per check.
type sysEnv struct {
	paths  SysPaths
	mounts []mount
	swaps  []string // devices used as swap, "major:minor"
	// systemDevs are the devices mounted at the system's own mount points.
	systemDevs map[string]string
}

// systemMountpoints are the mounts that make a disk the running system's.
var systemMountpoints = []string{"/", "/boot", "/boot/efi", "/boot/firmware", "/usr", "/var"}

func loadSysEnv(p SysPaths) (*sysEnv, error) {
	env := &sysEnv{paths: p, systemDevs: map[string]string{}}
	f, err := os.Open(p.Mountinfo)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if m, ok := parseMountinfoLine(sc.Text()); ok {
			env.mounts = append(env.mounts, m)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", p.Mountinfo, err)
	}
	for _, m := range env.mounts {
		for _, sp := range systemMountpoints {
			if m.mountpoint == sp {
				env.systemDevs[m.dev] = sp
				if d := devOfPath(m.source); d != "" {
					env.systemDevs[d] = sp
				}
			}
		}
	}
	if b, err := os.ReadFile(p.Swaps); err == nil {
		for i, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if i == 0 || len(f) < 2 || f[1] != "partition" {
				continue
			}
			if d := devOfPath(unescapeMount(f[0])); d != "" {
				env.swaps = append(env.swaps, d)
			}
		}
	}
	return env, nil
}

// parseMountinfoLine reads "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS".
func parseMountinfoLine(line string) (mount, bool) {
	f := strings.Fields(line)
	if len(f) < 7 {
		return mount{}, false
	}
	m := mount{dev: f[2], mountpoint: unescapeMount(f[4])}
	for i := 6; i < len(f)-2; i++ {
		if f[i] == "-" {
			m.source = unescapeMount(f[i+2])
			break
		}
	}
	return m, true
}

// unescapeMount undoes the kernel's octal escapes (\040 for space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// devOfPath is "major:minor" of a block device path, or "".
func devOfPath(path string) string {
	if !strings.HasPrefix(path, "/") {
		return ""
	}
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFBLK {
		return ""
	}
	return devString(st.Rdev)
}

func devString(rdev uint64) string {
	return fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev))
}

// diskState is a disk with the facts safety decisions need.
type diskState struct {
	Device
	partition  bool   // the sysfs node is a partition, not a disk
	parentName string // for a partition, its disk
	devs       map[string]string
	mountedAt  []string // "/dev/sdb1 at /media/x"
	swapOn     []string
	systemUse  string // "/" when the disk holds the running root
}

// describe reads a disk's sysfs directory and its partitions and holders,
// and matches them against the mounts and swaps.
func (env *sysEnv) describe(name, dir string) diskState {
	d := diskState{Device: Device{Name: name, Path: "/dev/" + name}, devs: map[string]string{}}
	if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
		d.partition = true
		d.parentName = filepath.Base(filepath.Dir(dir))
	}
	if n, err := strconv.ParseInt(readSys(dir, "size"), 10, 64); err == nil {
		d.Size = n * 512
	}
	d.Model = readSys(dir, "device/model")
	if d.Model == "" {
		d.Model = readSys(dir, "device/name") // MMC/SD cards
	}
	if v := readSys(dir, "device/vendor"); !strings.HasPrefix(v, "0x") {
		d.Vendor = v // SCSI vendor; virtio and NVMe show a PCI id here
	}
	d.Serial = readSys(dir, "device/serial")
	d.ReadOnly = readSys(dir, "ro") == "1"
	d.BackingFile = readSys(dir, "loop/backing_file")
	d.Transport = transport(name, dir)
	d.Removable = readSys(dir, "removable") == "1" || d.Transport == "usb" || d.Transport == "mmc"

	// The disk, its partitions and everything stacked on them (LVM, dm-crypt, RAID).
	var walk func(name, dir string, depth int)
	walk = func(name, dir string, depth int) {
		if depth > 8 {
			return
		}
		if dev := readSys(dir, "dev"); dev != "" {
			d.devs[dev] = name
		}
		holders, _ := os.ReadDir(filepath.Join(dir, "holders"))
		for _, h := range holders {
			if hdir, err := filepath.EvalSymlinks(filepath.Join(dir, "holders", h.Name())); err == nil {
				walk(h.Name(), hdir, depth+1)
			}
		}
	}
	walk(name, dir, 0)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		pdir := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(pdir, "partition")); err == nil {
			d.Partitions = append(d.Partitions, "/dev/"+e.Name())
			walk(e.Name(), pdir, 1)
		}
	}
	for _, m := range env.mounts {
		part, ok := d.devs[m.dev]
		if !ok {
			if sd := devOfPath(m.source); sd != "" {
				part, ok = d.devs[sd]
			}
		}
		if ok {
			d.Mounted = true
			d.Mountpoints = append(d.Mountpoints, m.mountpoint)
			d.mountedAt = append(d.mountedAt, fmt.Sprintf("/dev/%s at %s", part, m.mountpoint))
		}
	}
	for _, s := range env.swaps {
		if part, ok := d.devs[s]; ok {
			d.swapOn = append(d.swapOn, "/dev/"+part)
		}
	}
	for dev, mp := range env.systemDevs {
		if _, ok := d.devs[dev]; ok && (d.systemUse == "" || mp == "/") {
			d.systemUse = mp
		}
	}
	d.System = d.systemUse != "" || len(d.swapOn) > 0
	return d
}

// transport guesses how a disk is attached from where it sits in sysfs.
func transport(name, dir string) string {
	switch {
	case strings.HasPrefix(name, "loop"):
		return "loop"
	case strings.Contains(dir, "/usb"):
		return "usb"
	case strings.HasPrefix(name, "mmcblk") || strings.Contains(dir, "/mmc_host/"):
		return "mmc"
	case strings.HasPrefix(name, "nvme"):
		return "nvme"
	case strings.Contains(dir, "/ata"):
		return "sata"
	case strings.Contains(dir, "/virtio"):
		return "virtio"
	case strings.HasPrefix(name, "dm-"), strings.HasPrefix(name, "md"):
		return "virtual"
	}
	return ""
}

func readSys(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
