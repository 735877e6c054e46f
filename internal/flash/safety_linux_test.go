//go:build linux

package flash

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/bakeryhq/bakery/internal/testimage"
)

// refusal runs CheckTargets and returns the problems (nil if accepted).
func refusal(t *testing.T, src *Source, targets []string, opts SafetyOptions) []string {
	t.Helper()
	_, err := CheckTargets(src, targets, opts)
	if err == nil {
		return nil
	}
	var re *RefusedError
	if !errors.As(err, &re) || !errors.Is(err, ErrRefused) {
		t.Fatalf("CheckTargets error %v is not a RefusedError", err)
	}
	return re.Problems
}

func wantRefusal(t *testing.T, problems []string, substr string) {
	t.Helper()
	for _, p := range problems {
		if strings.Contains(p, substr) {
			return
		}
	}
	t.Fatalf("no refusal mentions %q; got %q", substr, problems)
}

func testSource(t *testing.T) *Source {
	dir := t.TempDir()
	return openSource(t, makeImage(t, dir, testSize, testRegions), SourceOptions{})
}

func TestRefuseImageItselfAndDuplicates(t *testing.T) {
	src := testSource(t)
	p := refusal(t, src, []string{src.Path}, SafetyOptions{})
	wantRefusal(t, p, "is the image itself")

	target := filepath.Join(t.TempDir(), "card")
	link := target + ".link"
	os.WriteFile(target, nil, 0o644)
	os.Symlink(target, link)
	p = refusal(t, src, []string{target, link}, SafetyOptions{})
	wantRefusal(t, p, "listed twice")
	p = refusal(t, src, []string{"/dev/sdzz9"}, SafetyOptions{})
	wantRefusal(t, p, "/dev/sdzz9 does not exist")

	// New and empty files are fine.
	if p := refusal(t, src, []string{target, filepath.Join(t.TempDir(), "new.img")}, SafetyOptions{}); p != nil {
		t.Fatalf("file targets refused: %q", p)
	}
}

// TestRefuseExistingFileThatIsNotAnImage: a mistyped target such as
// /etc/passwd or a VM's qcow2 disk is refused and left as it was; files that
// look like disk images are accepted, and --force accepts anything.
func TestRefuseExistingFileThatIsNotAnImage(t *testing.T) {
	src := testSource(t)
	dir := t.TempDir()
	write := func(name string, data []byte, size int64) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o644)
		if size > 0 {
			os.Truncate(p, size)
		}
		return p
	}
	passwd := []byte("root:x:0:0:root:/root:/bin/bash\n")
	text := write("passwd", passwd, 0)
	qcow := write("vm.qcow2", []byte("QFI\xfb\x00\x00\x00\x03"), 1<<20)
	for _, p := range []string{text, qcow} {
		wantRefusal(t, refusal(t, src, []string{p}, SafetyOptions{}), filepath.Base(p)+" is an existing")
		if got := refusal(t, src, []string{p}, SafetyOptions{Force: true}); got != nil {
			t.Errorf("--force still refuses %s: %q", p, got)
		}
	}
	if got, _ := os.ReadFile(text); string(got) != string(passwd) {
		t.Errorf("refused file changed: %q", got)
	}

	mbr := make([]byte, 512)
	mbr[510], mbr[511] = 0x55, 0xAA
	copy(mbr, "not zero")
	imageHead, _ := firstSector(src.Path)
	if len(imageHead) != 512 || imageHead[510] == 0x55 || bytes.Count(imageHead, []byte{0}) == 512 {
		t.Fatal("the test image's first sector must be neither zeros nor an MBR, or same.img proves nothing")
	}
	accepted := []string{
		write("card.img", mbr, 4<<20),                             // a partition table
		write("blank.img", nil, 4<<20),                            // zeros: blank or marked incomplete
		write("same.img", append(imageHead, "other bytes"...), 0), // the same image again
		write("short.img", make([]byte, 100), 0),                  // shorter than a sector, zeros
	}
	if got := refusal(t, src, accepted, SafetyOptions{}); got != nil {
		t.Fatalf("image-like files refused: %q", got)
	}
}

func TestRefuseLoopOverImage(t *testing.T) {
	src := testSource(t)
	dev := loopDevice(t, src.Path)
	wantRefusal(t, refusal(t, src, []string{dev}, SafetyOptions{}), "loop device over the image itself")
}

func TestRefuseSmallerTarget(t *testing.T) {
	src := testSource(t)
	small := filepath.Join(t.TempDir(), "small")
	garbage(t, small, 8<<20, 1)
	dev := loopDevice(t, small)
	wantRefusal(t, refusal(t, src, []string{dev}, SafetyOptions{}), "smaller than the")
}

// partitionedLoop makes a loop device with two partitions (losetup -P) and
// an ext4 filesystem in the first.
func partitionedLoop(t *testing.T) (dev string) {
	testimage.Need(t, "sfdisk", "mkfs.ext4")
	file := filepath.Join(t.TempDir(), "disk")
	garbage(t, file, 32<<20, 2)
	testimage.RunIn(t, []byte("label: dos\nstart=2048, size=20480, type=83\nsize=20480, type=83\n"), "sfdisk", "--no-reread", "--no-tell-kernel", file)
	dev = loopDevice(t, file, "-P")
	part := dev + "p1"
	if _, err := os.Stat(part); err != nil {
		exec.Command("partx", "-a", dev).Run() // some kernels scan only when asked again
	}
	if _, err := os.Stat(part); err != nil {
		t.Skipf("no partition nodes for %s: %v", dev, err)
	}
	testimage.Run(t, "mkfs.ext4", "-q", "-F", part)
	return dev
}

func TestRefuseMountedAndPartition(t *testing.T) {
	src := testSource(t)
	dev := partitionedLoop(t)
	if p := refusal(t, src, []string{dev}, SafetyOptions{}); p != nil {
		t.Fatalf("unmounted loop device refused: %q", p)
	}
	wantRefusal(t, refusal(t, src, []string{dev + "p2"}, SafetyOptions{}), "is a partition of /dev/"+filepath.Base(dev))

	mnt := t.TempDir()
	if out, err := exec.Command("mount", dev+"p1", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount ext4 here: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	p := refusal(t, src, []string{dev}, SafetyOptions{Force: true})
	wantRefusal(t, p, fmt.Sprintf("%sp1 at %s", dev, mnt))
	// The kernel refuses an exclusive open too, should the check be skipped.
	if _, err := openTarget(dev); err == nil || !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("exclusive open of a mounted disk: %v", err)
	}
	// And bakery devices reports it.
	devs, err := Devices(ListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range devs {
		if d.Path == dev {
			found = true
			if !d.Mounted || len(d.Mountpoints) != 1 || d.Mountpoints[0] != mnt || len(d.Partitions) != 2 {
				t.Fatalf("devices: %+v", d)
			}
		}
	}
	if !found {
		t.Fatalf("%s not listed", dev)
	}
}

// TestRefuseRunningSystemDisk uses whatever disk holds / here.
func TestRefuseRunningSystemDisk(t *testing.T) {
	src := testSource(t)
	env, err := loadSysEnv(DefaultSysPaths())
	if err != nil {
		t.Fatal(err)
	}
	var rootDev string
	for _, m := range env.mounts {
		if m.mountpoint == "/" {
			rootDev = m.source
		}
	}
	if devOfPath(rootDev) == "" {
		t.Skipf("/ is on %q, not a block device", rootDev)
	}
	p := refusal(t, src, []string{rootDev}, SafetyOptions{Force: true})
	wantRefusal(t, p, "holds the running system (/ is on it)")
	wantRefusal(t, p, "is mounted")
}

// fakeSys fabricates a sysfs tree and mount table describing the real loop
// device dev as other hardware.
type fakeSys struct {
	root  string
	paths SysPaths
}

func newFakeSys(t *testing.T) *fakeSys {
	root := t.TempDir()
	f := &fakeSys{root: root, paths: SysPaths{
		Sys:       filepath.Join(root, "sys"),
		Mountinfo: filepath.Join(root, "mountinfo"),
		Swaps:     filepath.Join(root, "swaps"),
	}}
	os.MkdirAll(filepath.Join(f.paths.Sys, "dev", "block"), 0o755)
	os.MkdirAll(filepath.Join(f.paths.Sys, "block"), 0o755)
	os.WriteFile(f.paths.Mountinfo, []byte("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"), 0o644)
	os.WriteFile(f.paths.Swaps, []byte("Filename\tType\tSize\tUsed\tPriority\n"), 0o644)
	return f
}

// disk adds a disk at devpath (below sys/devices) with the given device
// number and attributes.
func (f *fakeSys) disk(t *testing.T, devpath, devnum string, attrs map[string]string) string {
	dir := filepath.Join(f.paths.Sys, "devices", devpath)
	name := filepath.Base(dir)
	os.MkdirAll(filepath.Join(dir, "holders"), 0o755)
	os.MkdirAll(filepath.Join(dir, "device"), 0o755)
	attrs["dev"] = devnum
	for k, v := range attrs {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, k)), 0o755)
		os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o644)
	}
	os.Symlink(dir, filepath.Join(f.paths.Sys, "dev", "block", devnum))
	os.Symlink(dir, filepath.Join(f.paths.Sys, "block", name))
	return dir
}

func devNumOf(t *testing.T, path string) string {
	d := devOfPath(path)
	if d == "" {
		t.Fatalf("%s is not a block device", path)
	}
	return d
}

func TestRefuseNonRemovableUnlessForced(t *testing.T) {
	src := testSource(t)
	card := filepath.Join(t.TempDir(), "card")
	garbage(t, card, 16<<20, 3)
	dev := loopDevice(t, card)
	num := devNumOf(t, dev)
	size := fmt.Sprint(16 << 20 / 512)

	f := newFakeSys(t)
	f.disk(t, "pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sdz", num,
		map[string]string{"removable": "0", "size": size, "device/model": "Samsung SSD 870", "device/vendor": "ATA"})
	opts := SafetyOptions{Sys: f.paths}
	p := refusal(t, src, []string{dev}, opts)
	wantRefusal(t, p, "is not a removable disk: pass --force")
	wantRefusal(t, p, "ATA Samsung SSD 870")
	opts.Force = true
	if p := refusal(t, src, []string{dev}, opts); p != nil {
		t.Fatalf("--force did not allow a non-removable disk: %q", p)
	}

	// A USB card reader claiming removable=0 counts as removable.
	f = newFakeSys(t)
	f.disk(t, "pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host6/target6:0:0/6:0:0:0/block/sdy", num,
		map[string]string{"removable": "0", "size": size, "device/model": "SD Card Reader"})
	infos, err := CheckTargets(src, []string{dev}, SafetyOptions{Sys: f.paths})
	if err != nil {
		t.Fatalf("USB reader refused: %v", err)
	}
	if !infos[0].Removable || infos[0].Transport != "usb" || !strings.Contains(infos[0].Describe(), "SD Card Reader") {
		t.Fatalf("info = %+v (%s)", infos[0], infos[0].Describe())
	}
}

func TestRefuseSwapAndStackedSystem(t *testing.T) {
	src := testSource(t)
	card := filepath.Join(t.TempDir(), "card")
	garbage(t, card, 16<<20, 4)
	dev := loopDevice(t, card)
	num := devNumOf(t, dev)
	size := fmt.Sprint(16 << 20 / 512)

	// Swap on the disk itself.
	f := newFakeSys(t)
	f.disk(t, "platform/mmc_host/mmc0/mmc0:0001/block/mmcblk9", num, map[string]string{"removable": "0", "size": size, "device/name": "SD64G"})
	os.WriteFile(f.paths.Swaps, []byte("Filename\tType\tSize\tUsed\tPriority\n"+dev+"\tpartition\t1024\t0\t-2\n"), 0o644)
	wantRefusal(t, refusal(t, src, []string{dev}, SafetyOptions{Sys: f.paths}), "in use as swap (/dev/mmcblk9)")

	// The root filesystem on an LVM volume (dm-7) whose physical volume is
	// a partition of this disk.
	f = newFakeSys(t)
	disk := f.disk(t, "platform/mmc_host/mmc0/mmc0:0001/block/mmcblk9", num, map[string]string{"removable": "0", "size": size, "device/name": "SD64G"})
	part := filepath.Join(disk, "mmcblk9p2")
	os.MkdirAll(filepath.Join(part, "holders"), 0o755)
	os.WriteFile(filepath.Join(part, "partition"), []byte("2\n"), 0o644)
	os.WriteFile(filepath.Join(part, "dev"), []byte("179:2\n"), 0o644)
	dm := f.disk(t, "virtual/block/dm-7", "253:7", map[string]string{"size": "1000"})
	os.Symlink(dm, filepath.Join(part, "holders", "dm-7"))
	os.WriteFile(f.paths.Mountinfo, []byte("27 1 253:7 / / rw,relatime - ext4 /dev/mapper/vg-root rw\n30 27 179:2 / /srv\\040data rw - ext4 /dev/mmcblk9p2 rw\n"), 0o644)
	p := refusal(t, src, []string{dev}, SafetyOptions{Sys: f.paths, Force: true})
	wantRefusal(t, p, "holds the running system (/ is on it)")
	wantRefusal(t, p, "/dev/mmcblk9p2 at /srv data")

	devs, err := Devices(ListOptions{Sys: f.paths})
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || devs[0].Name != "mmcblk9" || !devs[0].System || !devs[0].Removable || devs[0].Transport != "mmc" || devs[0].Model != "SD64G" {
		t.Fatalf("devices = %+v", devs)
	}
}
