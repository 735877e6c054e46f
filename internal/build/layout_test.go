package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/build/step"
	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/testimage"
)

// sfdiskDump parses `sfdisk --dump` (the oracle for tables).
type sfPart struct {
	start, size int64 // sectors
	typ, uuid   string
	name        string
}

func sfdiskDump(t *testing.T, img string) (label string, parts map[int]sfPart, raw string) {
	t.Helper()
	raw = testimage.Run(t, "sfdisk", "--dump", img)
	parts = map[int]sfPart{}
	line := regexp.MustCompile(`^\S+?(\d+) : start=\s*(\d+), size=\s*(\d+), type=([^,\s]+)(.*)$`)
	for _, l := range strings.Split(raw, "\n") {
		if strings.HasPrefix(l, "label: ") {
			label = strings.TrimPrefix(l, "label: ")
		}
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		p := sfPart{typ: m[4]}
		p.start, _ = strconv.ParseInt(m[2], 10, 64)
		p.size, _ = strconv.ParseInt(m[3], 10, 64)
		if u := regexp.MustCompile(`uuid=([0-9A-Fa-f-]+)`).FindStringSubmatch(m[5]); u != nil {
			p.uuid = strings.ToLower(u[1])
		}
		if u := regexp.MustCompile(`name="([^"]*)"`).FindStringSubmatch(m[5]); u != nil {
			p.name = u[1]
		}
		parts[n] = p
	}
	return label, parts, raw
}

func fsckPart(t *testing.T, img string, p sfPart) string {
	t.Helper()
	f := testimage.Extract(t, img, p.start*512, p.size*512)
	testimage.E2fsck(t, f)
	return f
}

// TestLayoutMBR grows root, adds an ext4 and a raw partition, and checks
// the table with sfdisk, the filesystems with e2fsck and the fstab.
func TestLayoutMBR(t *testing.T) {
	need(t, "sfdisk", "e2fsck", "dumpe2fs", "debugfs")
	s := loadSpec(t, demoBase(t, disk.TableMBR), `base { url = "%BASE%" }
layout {
  root_size = "256MiB"
  partition "data" {
    size    = "64MiB"
    mount   = "/var/lib/data"
    options = "defaults,noatime"
  }
  partition "raw" {
    size       = "16MiB"
    filesystem = "none"
  }
}`, nil)
	res, out := mustBuild(t, s)
	img := filepath.Join(out, "node.img")
	label, sp, raw := sfdiskDump(t, img)
	if label != "dos" || len(sp) != 4 {
		t.Fatalf("table:\n%s", raw)
	}
	root, data, rawp := sp[2], sp[3], sp[4]
	if root.size != 256<<11 || data.start != root.start+root.size || data.size != 64<<11 || rawp.start != data.start+data.size || rawp.size != 16<<11 {
		t.Errorf("layout:\n%s", raw)
	}
	if fi, _ := os.Stat(img); fi.Size() != (rawp.start+rawp.size)*512 {
		t.Errorf("image is %d bytes, want it to end with the last partition", fi.Size())
	}
	rootFS := fsckPart(t, img, root)
	if out := testimage.Run(t, "dumpe2fs", "-h", rootFS); !strings.Contains(out, "Block count:              65536\n") {
		t.Errorf("root filesystem not grown:\n%s", out)
	}
	dataFS := fsckPart(t, img, data)
	info := testimage.Run(t, "dumpe2fs", "-h", dataFS)
	uuid := res.Layout.Added[0].FSUUID
	if !strings.Contains(info, "Filesystem volume name:   data\n") || !strings.Contains(info, "Filesystem UUID:          "+uuid+"\n") {
		t.Errorf("data filesystem:\n%s", info)
	}
	p := &parts{root: rootFS}
	fstab := p.cat(t, "/etc/fstab")
	if !strings.Contains(fstab, "UUID="+uuid+"  /var/lib/data  ext4  defaults,noatime,nofail  0  2\n") || strings.Count(fstab, "\nUUID=") != 1 {
		t.Errorf("fstab:\n%s", fstab)
	}
	if !p.exists(t, "/var/lib/data") {
		t.Error("mount point missing")
	}
	unit := p.cat(t, "/etc/systemd/system/bakery-grow.service")
	if !strings.Contains(unit, "ExecStart=/usr/local/lib/bakery/grow 4 none\n") {
		t.Errorf("grow unit:\n%s", unit)
	}
	if got := p.readlink(t, "/etc/systemd/system/sysinit.target.wants/bakery-grow.service"); got != "/etc/systemd/system/bakery-grow.service" {
		t.Errorf("grow unit not enabled: %q", got)
	}
}

// TestLayoutToGPT converts the demo's MBR to GPT, adds an xfs-at-boot
// partition that grows at first boot, and checks that every PARTUUID
// reference follows.
func TestLayoutToGPT(t *testing.T) {
	need(t, "sfdisk", "e2fsck", "debugfs", "mcopy")
	s := loadSpec(t, demoBase(t, disk.TableMBR), `base { url = "%BASE%" }
layout {
  table = "gpt"
  partition "data" {
    size       = "32MiB"
    filesystem = "xfs-at-boot"
    mount      = "/data"
  }
  grow = "data"
}`, nil)
	res, out := mustBuild(t, s)
	img := filepath.Join(out, "node.img")
	label, sp, raw := sfdiskDump(t, img)
	if label != "gpt" || len(sp) != 3 {
		t.Fatalf("table:\n%s", raw)
	}
	if v, err := exec.Command("sfdisk", "--verify", img).CombinedOutput(); err != nil || strings.Contains(string(v), "not") {
		t.Errorf("sfdisk --verify: %v\n%s", err, v)
	}
	if sp[1].typ != disk.GPTTypeBasicData || sp[2].typ != disk.GPTTypeLinuxFS || sp[3].typ != disk.GPTTypeLinuxFS || sp[3].name != "data" {
		t.Errorf("types:\n%s", raw)
	}
	rootFS := fsckPart(t, img, sp[2])
	pp := &parts{root: rootFS}
	fstab := pp.cat(t, "/etc/fstab")
	for _, n := range []int{1, 2} {
		if !strings.Contains(fstab, "PARTUUID="+sp[n].uuid+" ") {
			t.Errorf("fstab lacks partition %d's new PARTUUID %s:\n%s", n, sp[n].uuid, fstab)
		}
	}
	if strings.Contains(fstab, "df59616a") {
		t.Errorf("fstab keeps an MBR PARTUUID:\n%s", fstab)
	}
	xfsUUID := res.Layout.Added[0].FSUUID
	if !strings.Contains(fstab, "UUID="+xfsUUID+"  /data  xfs  defaults,nofail,x-systemd.requires=bakery-mkfs-data.service  0  0\n") {
		t.Errorf("fstab xfs line:\n%s", fstab)
	}
	boot := testimage.Extract(t, img, sp[1].start*512, sp[1].size*512)
	testimage.FsckFat(t, boot)
	if cmdline := string(testimage.Mtype(t, boot, "/cmdline.txt")); !strings.Contains(cmdline, "root=PARTUUID="+sp[2].uuid+" ") {
		t.Errorf("cmdline.txt: %s", cmdline)
	}
	mkfs := pp.cat(t, "/etc/systemd/system/bakery-mkfs-data.service")
	if !strings.Contains(mkfs, "ExecStart=/usr/local/lib/bakery/mkfs-xfs /dev/disk/by-partuuid/"+sp[3].uuid+" data "+xfsUUID+"\n") ||
		!strings.Contains(mkfs, `Requires=dev-disk-by\x2dpartuuid-`+strings.ReplaceAll(sp[3].uuid, "-", `\x2d`)+".device") {
		t.Errorf("mkfs unit:\n%s", mkfs)
	}
	if unit := pp.cat(t, "/etc/systemd/system/bakery-grow.service"); !strings.Contains(unit, "ExecStart=/usr/local/lib/bakery/grow 3 xfs /data\n") {
		t.Errorf("grow unit:\n%s", unit)
	}
	if _, err := exec.LookPath("systemd-escape"); err == nil {
		want := strings.TrimSpace(testimage.Run(t, "systemd-escape", "--path", "--suffix=device", "/dev/disk/by-partuuid/"+sp[3].uuid))
		if !strings.Contains(mkfs, "Requires="+want+"\n") {
			t.Errorf("device unit name differs from systemd-escape's %s", want)
		}
	}
}

// TestLayoutGPTToMBR converts the GPT demo to MBR and grows root.
func TestLayoutGPTToMBR(t *testing.T) {
	need(t, "sfdisk", "e2fsck", "mcopy")
	s := loadSpec(t, demoBase(t, disk.TableGPT), `base { url = "%BASE%" }
layout {
  table     = "mbr"
  root_size = "200MiB"
}`, nil)
	_, out := mustBuild(t, s)
	img := filepath.Join(out, "node.img")
	label, sp, raw := sfdiskDump(t, img)
	if label != "dos" || len(sp) != 2 || sp[1].typ != "c" || sp[2].typ != "83" || sp[2].size != 200<<11 {
		t.Fatalf("table:\n%s", raw)
	}
	// No GPT header may survive at LBA 1 or in the last sector.
	f, _ := os.Open(img)
	fi, _ := f.Stat()
	for _, off := range []int64{512, fi.Size() - 512} {
		sig := make([]byte, 8)
		f.ReadAt(sig, off)
		if string(sig) == "EFI PART" {
			t.Errorf("a GPT header survived at byte %d", off)
		}
	}
	f.Close()
	id := regexp.MustCompile(`label-id: 0x([0-9a-f]{8})`).FindStringSubmatch(raw)
	boot := testimage.Extract(t, img, sp[1].start*512, sp[1].size*512)
	if cmdline := string(testimage.Mtype(t, boot, "/cmdline.txt")); id == nil || !strings.Contains(cmdline, "root=PARTUUID="+id[1]+"-02 ") {
		t.Errorf("cmdline.txt: %s (disk id %v)", cmdline, id)
	}
	fsckPart(t, img, sp[2])
}

// TestLayoutKeepGPTGrowsBackup grows root on a GPT image: the image gets
// bigger and the backup GPT must move to its new end.
func TestLayoutKeepGPTGrowsBackup(t *testing.T) {
	need(t, "sfdisk", "e2fsck")
	s := loadSpec(t, demoBase(t, disk.TableGPT), `base { url = "%BASE%" }
layout { root_size = "512MiB" }`, nil)
	_, out := mustBuild(t, s)
	img := filepath.Join(out, "node.img")
	if v, err := exec.Command("sfdisk", "--verify", img).CombinedOutput(); err != nil || strings.Contains(string(v), "not") || strings.Contains(string(v), "mismatch") {
		t.Errorf("sfdisk --verify: %v\n%s", err, v)
	}
	_, sp, _ := sfdiskDump(t, img)
	fi, _ := os.Stat(img)
	if sp[2].size != 512<<11 || (sp[2].start+sp[2].size)*512+33*512 > fi.Size() {
		t.Errorf("root %+v in a %d-byte image", sp[2], fi.Size())
	}
	fsckPart(t, img, sp[2])
}

// TestGrowScript runs the first-boot grow script against loop devices:
// an MBR and a GPT image, each extended by 48 MiB as a bigger card would
// be, must end with partition 2 and its ext4 filling the disk.
func TestGrowScript(t *testing.T) {
	need(t, "losetup", "sfdisk", "partx", "resize2fs", "e2fsck", "dumpe2fs", "findmnt", "lsblk")
	if os.Geteuid() != 0 {
		t.Skip("loop devices need root")
	}
	script := filepath.Join(t.TempDir(), "grow")
	os.WriteFile(script, []byte(step.GrowScriptSource), 0o755)
	for _, table := range []string{"mbr", "gpt"} {
		t.Run(table, func(t *testing.T) {
			img := testimage.PiImage(t, testimage.Layout{Table: table, BootMiB: 16, RootMiB: 48})
			fi, _ := os.Stat(img)
			if err := os.Truncate(img, fi.Size()+48<<20); err != nil {
				t.Fatal(err)
			}
			lo, err := exec.Command("losetup", "--find", "--show", "--partscan", img).Output()
			if err != nil {
				t.Skipf("no loop device: %v", err)
			}
			dev := strings.TrimSpace(string(lo))
			defer exec.Command("losetup", "-d", dev).Run()
			cmd := exec.Command("sh", script, "2", "ext4", "/")
			cmd.Env = append(os.Environ(), "BAKERY_GROW_DISK="+dev)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("grow: %v\n%s", err, b)
			}
			// Judge on the image file once the device is gone.
			exec.Command("losetup", "-d", dev).Run()
			_, sp, raw := sfdiskDump(t, img)
			total := (fi.Size() + 48<<20) / 512
			end := sp[2].start + sp[2].size
			wantEnd := total
			if table == "gpt" {
				wantEnd = total - 33 // the backup GPT
				if v, _ := exec.Command("sfdisk", "--verify", img).CombinedOutput(); strings.Contains(string(v), "not") {
					t.Errorf("sfdisk --verify:\n%s", v)
				}
			}
			if end < wantEnd-2048 || end > wantEnd {
				t.Errorf("partition 2 ends at sector %d, disk has %d:\n%s", end, total, raw)
			}
			rootFS := fsckPart(t, img, sp[2])
			info := testimage.Run(t, "dumpe2fs", "-h", rootFS)
			m := regexp.MustCompile(`Block count:\s+(\d+)`).FindStringSubmatch(info)
			blocks, _ := strconv.ParseInt(m[1], 10, 64)
			bs := regexp.MustCompile(`Block size:\s+(\d+)`).FindStringSubmatch(info)
			bsz, _ := strconv.ParseInt(bs[1], 10, 64)
			// resize2fs leaves a few blocks of slack at the end.
			if blocks*bsz < sp[2].size*512-64<<10 || blocks*bsz < int64(90)<<20 {
				t.Errorf("filesystem has %d bytes, partition %d", blocks*bsz, sp[2].size*512)
			}
		})
	}
}

// TestUnitsVerify checks every unit bakery writes with systemd-analyze
// verify, against the built root (plus the host's targets, which the demo
// base does not ship).
func TestUnitsVerify(t *testing.T) {
	need(t, "systemd-analyze", "debugfs")
	// A base without cloud-init (disabled by a first build), so that
	// bakery-firstboot is used.
	s := loadSpec(t, demoBase(t, disk.TableMBR), `base { url = "%BASE%" }
file "/etc/cloud/cloud-init.disabled" { content = "" }
layout { grow = "none" }
`, nil)
	_, out := mustBuild(t, s)
	base2 := filepath.Join(t.TempDir(), "nocloud.img")
	copyFile(t, filepath.Join(out, "node.img"), base2)
	s2 := loadSpec(t, base2, `base { url = "%BASE%" }
packages = ["htop"]
layout {
  partition "data" {
    size       = "16MiB"
    filesystem = "xfs-at-boot"
    mount      = "/data"
  }
}
`, nil)
	res, out2 := mustBuild(t, s2)
	if res.FirstBoot != "bakery-firstboot" {
		t.Fatalf("first boot mechanism %q", res.FirstBoot)
	}
	p := extract(t, filepath.Join(out2, "node.img"), 2)
	root := p.rdump(t, "/")
	// The host's targets and slices make the image's systemd complete.
	for _, dir := range []string{"/lib/systemd/system", "/usr/lib/systemd/system"} {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".target") || strings.HasSuffix(e.Name(), ".slice") {
				dst := filepath.Join(root, "usr/lib/systemd/system", e.Name())
				if _, err := os.Lstat(dst); err != nil {
					if b, err := os.ReadFile(filepath.Join(dir, e.Name())); err == nil {
						os.WriteFile(dst, b, 0o644)
					}
				}
			}
		}
	}
	units, _ := filepath.Glob(filepath.Join(root, "etc/systemd/system/bakery-*.service"))
	var names []string
	for _, u := range units {
		names = append(names, filepath.Base(u))
	}
	want := "bakery-firstboot.service bakery-grow.service bakery-mkfs-data.service bakery-ssh-keygen.service"
	if strings.Join(names, " ") != want {
		t.Fatalf("units %v, want %s", names, want)
	}
	args := append([]string{"verify", "--root=" + root}, names...)
	if b, err := exec.Command("systemd-analyze", args...).CombinedOutput(); err != nil || len(b) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, b)
	}
	script, _ := os.ReadFile(filepath.Join(root, "usr/local/lib/bakery/firstboot"))
	for _, want := range []string{"apt-get install -y --no-install-recommends htop\n", "systemctl disable bakery-firstboot.service\n"} {
		if !strings.Contains(string(script), want) {
			t.Errorf("firstboot script lacks %q:\n%s", want, script)
		}
	}
	if sh, err := exec.LookPath("sh"); err == nil {
		for _, f := range []string{"usr/local/lib/bakery/firstboot", "usr/local/lib/bakery/grow", "usr/local/lib/bakery/mkfs-xfs"} {
			if b, err := exec.Command(sh, "-n", filepath.Join(root, f)).CombinedOutput(); err != nil {
				t.Errorf("sh -n %s: %v\n%s", f, err, b)
			}
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	testimage.Run(t, "cp", "--sparse=always", from, to)
}
