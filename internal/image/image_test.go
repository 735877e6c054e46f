package image

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/testimage"
)

const (
	testCmdline = "console=serial0,115200 console=tty1 root=PARTUUID=5452574f-02 rootfstype=ext4 fsck.repair=yes rootwait\n"
	testConfig  = "# Raspberry Pi config\ndtparam=audio=on\ncamera_auto_detect=1\n\n[pi4]\narm_boost=1\n"
	prettyName  = "Debian GNU/Linux 12 (bookworm)"
)

// piTrees writes a boot tree (config.txt, cmdline.txt, overlays) and a
// root tree whose /etc/os-release is the usual relative symlink into
// /usr/lib.
func piTrees(t *testing.T) (boot, root string) {
	t.Helper()
	dir := t.TempDir()
	boot, root = filepath.Join(dir, "boot"), filepath.Join(dir, "root")
	write := func(p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(boot, "config.txt"), testConfig)
	write(filepath.Join(boot, "cmdline.txt"), testCmdline)
	for _, n := range []string{"vc4-kms-v3d.dtbo", "disable-bt.dtbo", "w1-gpio.dtbo"} {
		write(filepath.Join(boot, "overlays", n), strings.Repeat(n, 3000))
	}
	write(filepath.Join(boot, "kernel8.img"), strings.Repeat("kernel", 200000))
	write(filepath.Join(root, "usr/lib/os-release"), "PRETTY_NAME=\""+prettyName+"\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n")
	write(filepath.Join(root, "etc/hostname"), "raspberrypi\n")
	write(filepath.Join(root, "usr/bin/blob"), strings.Repeat("binary data ", 300000))
	if err := os.Symlink("../usr/lib/os-release", filepath.Join(root, "etc/os-release")); err != nil {
		t.Fatal(err)
	}
	return boot, root
}

func piImage(t *testing.T, table string) string {
	t.Helper()
	boot, root := piTrees(t)
	return testimage.PiImage(t, testimage.Layout{Table: table, BootTree: boot, RootTree: root})
}

// TestOpenRolesInspect opens Pi images with either table and checks the
// role detection, selectors, os-release through its symlink and the boot
// files Inspect reads back.
func TestOpenRolesInspect(t *testing.T) {
	for _, table := range []string{"mbr", "gpt"} {
		t.Run(table, func(t *testing.T) {
			img := piImage(t, table)
			im, err := Open(img, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer im.Close()
			if len(im.Partitions) != 2 {
				t.Fatalf("%d partitions, want 2", len(im.Partitions))
			}
			boot, root := im.Partitions[0], im.Partitions[1]
			if boot.Role != RoleBoot || boot.Filesystem != "fat32" || boot.Label != "BOOTFS" || boot.Start != 4<<20 {
				t.Errorf("partition 1 = %+v, want the fat32 boot partition BOOTFS at 4 MiB", boot)
			}
			if root.Role != RoleRoot || root.Filesystem != "ext4" || root.Label != "rootfs" {
				t.Errorf("partition 2 = %+v, want the ext4 root partition rootfs", root)
			}
			for sel, want := range map[string]int{"boot": 1, "root": 2, "1": 1, "2": 2} {
				if got, err := im.Resolve(sel); err != nil || got != want {
					t.Errorf("Resolve(%q) = %d, %v; want %d", sel, got, err, want)
				}
			}
			for _, sel := range []string{"3", "0", "efi", ""} {
				if _, err := im.Resolve(sel); err == nil {
					t.Errorf("Resolve(%q) succeeded", sel)
				}
			}
			osr, err := im.OSRelease()
			if err != nil || osr["PRETTY_NAME"] != prettyName || osr["ID"] != "debian" {
				t.Fatalf("OSRelease = %v, %v", osr, err)
			}
			rootFS, err := im.Role(RoleRoot)
			if err != nil {
				t.Fatal(err)
			}
			if fi, err := rootFS.Lstat("/etc/os-release"); err != nil || fi.Target != "../usr/lib/os-release" {
				t.Fatalf("Lstat /etc/os-release = %+v, %v; want the relative symlink", fi, err)
			}

			r := im.Inspect()
			if len(r.Warnings) != 0 {
				t.Errorf("warnings: %v", r.Warnings)
			}
			if r.Table != table || r.OSRelease["PRETTY_NAME"] != prettyName {
				t.Errorf("report table %q, os-release %v", r.Table, r.OSRelease)
			}
			if r.Boot == nil || r.Boot.Cmdline != testCmdline || r.Boot.Config != testConfig {
				t.Fatalf("boot files = %+v", r.Boot)
			}
			var text strings.Builder
			if err := r.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"OS:         " + prettyName, "rootwait", "arm_boost=1", "BOOTFS", "rootfs", "boot", "root"} {
				if !strings.Contains(text.String(), want) {
					t.Errorf("text report lacks %q:\n%s", want, text.String())
				}
			}
		})
	}
}

// TestUsedRangesOnReusedCard is the flashing oracle for whole images: a
// sparse Pi image is copied onto a "card" full of random bytes, writing
// only its data ranges plus UsedRanges. The partition table must read back
// unchanged and both filesystems must pass fsck with their files intact.
// Copying the data ranges alone (what bmaptool maps) corrupts the FAT.
func TestUsedRangesOnReusedCard(t *testing.T) {
	testimage.Need(t, "fallocate", "fsck.fat", "e2fsck", "debugfs", "mcopy")
	for _, table := range []string{"mbr", "gpt"} {
		t.Run(table, func(t *testing.T) {
			img := piImage(t, table)
			testimage.MakeSparse(t, img)
			im, err := Open(img, Options{})
			if err != nil {
				t.Fatal(err)
			}
			used, err := im.UsedRanges()
			if err != nil {
				t.Fatal(err)
			}
			parts := im.Partitions
			size := im.Disk.Size()
			im.Close()
			for i, e := range used {
				if e.Len <= 0 || e.End() > size || (i > 0 && e.Off <= used[i-1].End()) {
					t.Fatalf("range %d %+v: not sorted, merged and inside the %d-byte image", i, e, size)
				}
			}
			if used[0].Off != 0 {
				t.Fatalf("first range %+v does not start with the partition table", used[0])
			}
			if table == "gpt" {
				// Backup header (last sector) and array.
				if last := used[len(used)-1]; last.End() != size || last.Len < 33*512 {
					t.Fatalf("last range %+v does not cover the backup GPT", last)
				}
			}
			data := testimage.DataRanges(t, img)
			card := testimage.ReusedCard(t, img, fs.MergeExtents(append(append([]fs.Extent(nil), data...), used...)), 42)

			want := sfdiskDump(t, img)
			if got := sfdiskDump(t, card); got != want {
				t.Fatalf("partition table on the card:\n%s\nwant:\n%s", got, want)
			}
			bootImg := testimage.Extract(t, card, parts[0].Start, parts[0].Size)
			rootImg := testimage.Extract(t, card, parts[1].Start, parts[1].Size)
			testimage.FsckFat(t, bootImg)
			testimage.E2fsck(t, rootImg)
			if got := string(testimage.Mtype(t, bootImg, "/cmdline.txt")); got != testCmdline {
				t.Fatalf("cmdline.txt on the card = %q", got)
			}
			if got := testimage.Debugfs(t, rootImg, "cat /usr/lib/os-release"); !strings.Contains(got, prettyName) {
				t.Fatalf("os-release on the card = %q", got)
			}

			bad := testimage.ReusedCard(t, img, data, 42)
			badBoot := testimage.Extract(t, bad, parts[0].Start, parts[0].Size)
			if out, err := exec.Command("fsck.fat", "-n", badBoot).CombinedOutput(); err == nil {
				t.Fatalf("data ranges alone: fsck.fat -n passed:\n%s", out)
			}
		})
	}
}

// sfdiskDump is sfdisk -d without the device names, failing on any
// warning (a corrupt primary or backup GPT).
func sfdiskDump(t *testing.T, img string) string {
	t.Helper()
	out, err := exec.Command("sfdisk", "-d", img).CombinedOutput()
	if err != nil || strings.Contains(string(out), "corrupt") || strings.Contains(string(out), "mismatch") {
		t.Fatalf("sfdisk -d %s: %v\n%s", img, err, out)
	}
	return strings.ReplaceAll(string(out), img, "IMG")
}

// FuzzParseOSRelease parses an image's /etc/os-release: keys are never
// empty and values never hold a control character (inspect prints them).
func FuzzParseOSRelease(f *testing.F) {
	f.Add([]byte("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n# comment\nVERSION_ID='12'\n"))
	f.Add([]byte("=\n\"\nA=\"unterminated\nB=\\\"x\\\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for k, v := range ParseOSRelease(b) {
			if k == "" || strings.ContainsFunc(v, unicode.IsControl) {
				t.Fatalf("ParseOSRelease: %q=%q", k, v)
			}
		}
	})
}

// TestWriteTextNeutralisesTerminalEscapes: labels, cmdline.txt and
// config.txt come from an untrusted image; the text report must not pass
// escape sequences through to a terminal.
func TestWriteTextNeutralisesTerminalEscapes(t *testing.T) {
	r := &Report{Path: "x.img", Table: "mbr", SectorSize: 512,
		Partitions: []Partition{{Label: "boot\x1b]0;pwned\x07"}},
		Boot:       &BootFiles{Cmdline: "console=tty1 \x1b[2J", Config: "arm_64bit=1\r\n\x1b[31mred\n"}}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); strings.ContainsAny(out, "\x1b\x07\r") {
		t.Fatalf("control characters reached the output: %q", out)
	}
}

// TestRoleNotFoundSaysWhy: when the root filesystem does not open (here a
// damaged superblock checksum), "no root partition" names the reason.
func TestRoleNotFoundSaysWhy(t *testing.T) {
	img := piImage(t, "mbr")
	im, err := Open(img, Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := im.Partitions[1].Start
	im.Close()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("bad!"), start+1024+1020) // s_checksum
	f.Close()
	im, err = Open(img, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if _, err := im.Resolve(RoleRoot); err == nil || !strings.Contains(err.Error(), "no root partition found") || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("got %v", err)
	}
}
