// Package testimage makes disk images for tests with the reference tools
// (sfdisk, mkfs.fat, mkfs.ext4 -d, mtools), so that what bakery reads and
// writes is checked against images bakery did not make, and checks results
// with the same tools (e2fsck, fsck.fat, debugfs).
package testimage

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Need skips the test when a tool is missing. CI installs all of them
// (scripts/ensure-deps.sh test), so skips only happen on developer machines.
func Need(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (run scripts/ensure-deps.sh test)", tool)
		}
	}
}

// Run runs a command and fails the test with its output on error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// RunIn runs a command with stdin.
func RunIn(t testing.TB, stdin []byte, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Layout describes a Pi-like image: a FAT boot partition and an ext4 root.
type Layout struct {
	Table    string // "mbr" or "gpt"
	BootMiB  int    // default 64
	RootMiB  int    // default 192
	BootTree string // directory copied into the FAT partition (optional)
	RootTree string // directory given to mkfs.ext4 -d (optional)
	// RootFeatures is passed to mkfs.ext4 -O (e.g. "orphan_file").
	RootFeatures string
}

// PiImage builds an image file with sfdisk, mkfs.fat and mkfs.ext4 and returns
// its path. Partition 1 starts at 4 MiB, like Raspberry Pi OS.
func PiImage(t testing.TB, l Layout) string {
	t.Helper()
	Need(t, "sfdisk", "mkfs.fat", "mkfs.ext4", "mcopy")
	if l.Table == "" {
		l.Table = "mbr"
	}
	if l.BootMiB == 0 {
		l.BootMiB = 64
	}
	if l.RootMiB == 0 {
		l.RootMiB = 192
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "pi.img")
	total := int64(4+l.BootMiB+l.RootMiB+1) << 20
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(total)
	f.Close()
	var script string
	if l.Table == "gpt" {
		script = fmt.Sprintf("label: gpt\nstart=8192, size=%d, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=bootfs\nsize=%d, type=linux, name=rootfs\n",
			l.BootMiB*2048, l.RootMiB*2048)
	} else {
		script = fmt.Sprintf("label: dos\nlabel-id: 0x5452574f\nstart=8192, size=%d, type=c\nsize=%d, type=83\n", l.BootMiB*2048, l.RootMiB*2048)
	}
	RunIn(t, []byte(script), "sfdisk", "--no-reread", "--no-tell-kernel", img)

	boot := filepath.Join(dir, "boot.fat")
	Run(t, "mkfs.fat", "-F", "32", "-n", "BOOTFS", "-C", boot, fmt.Sprint(l.BootMiB*1024))
	if l.BootTree != "" {
		entries, _ := os.ReadDir(l.BootTree)
		for _, e := range entries {
			Run(t, "mcopy", "-s", "-i", boot, filepath.Join(l.BootTree, e.Name()), "::/"+e.Name())
		}
	}
	root := filepath.Join(dir, "root.ext4")
	args := []string{"-q", "-F", "-L", "rootfs", "-E", "root_owner=0:0"}
	if l.RootFeatures != "" {
		args = append(args, "-O", l.RootFeatures)
	}
	if l.RootTree != "" {
		args = append(args, "-d", l.RootTree)
	}
	args = append(args, root, fmt.Sprintf("%dM", l.RootMiB))
	Run(t, "mkfs.ext4", args...)
	Splice(t, img, boot, 4<<20)
	Splice(t, img, root, int64(4+l.BootMiB)<<20)
	os.Remove(boot)
	os.Remove(root)
	return img
}

// Splice copies a filesystem image into the disk image at offset, keeping
// holes sparse.
func Splice(t testing.TB, img, part string, offset int64) {
	t.Helper()
	Run(t, "dd", "if="+part, "of="+img, "bs=1M", fmt.Sprintf("seek=%d", offset>>20), "conv=notrunc,sparse", "status=none")
}

// Extract copies bytes [offset, offset+size) of img into a new file so that
// e2fsck, fsck.fat, debugfs and mtools can check one partition.
func Extract(t testing.TB, img string, offset, size int64) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), fmt.Sprintf("part-%d.img", offset))
	Run(t, "dd", "if="+img, "of="+out, "bs=1M", "iflag=skip_bytes,count_bytes",
		fmt.Sprintf("skip=%d", offset), fmt.Sprintf("count=%d", size), "conv=sparse", "status=none")
	return out
}

// E2fsck runs e2fsck -fn on an ext filesystem image and fails on any error.
func E2fsck(t testing.TB, fsImage string) {
	t.Helper()
	out, err := exec.Command("e2fsck", "-fn", fsImage).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn %s reports errors: %v\n%s", fsImage, err, out)
	}
}

// FsckFat runs fsck.fat -n and fails on errors or warnings.
func FsckFat(t testing.TB, fsImage string) {
	t.Helper()
	out, err := exec.Command("fsck.fat", "-n", fsImage).CombinedOutput()
	if err != nil || strings.Contains(string(out), "wrong") || strings.Contains(string(out), "uninitialized") {
		t.Fatalf("fsck.fat -n %s reports problems: %v\n%s", fsImage, err, out)
	}
}

// Debugfs runs one debugfs request read-only and returns its output.
func Debugfs(t testing.TB, fsImage, request string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, fsImage).Output()
	if err != nil {
		t.Fatalf("debugfs -R %q %s: %v", request, fsImage, err)
	}
	return string(out)
}

// Mtype returns a file's bytes as mtools reads them from a FAT image.
func Mtype(t testing.TB, fsImage, path string) []byte {
	t.Helper()
	out, err := exec.Command("mcopy", "-n", "-i", fsImage, "::"+path, "-").Output()
	if err != nil {
		t.Fatalf("mcopy -i %s ::%s: %v", fsImage, path, err)
	}
	return out
}

// Ext4Tree makes an ext4 image of size (mkfs.ext4 syntax: "64M") holding
// tree, with mkfs.ext4 -d (root-owned, label rootfs), and returns its
// path.
func Ext4Tree(t testing.TB, tree, size string) string {
	t.Helper()
	Need(t, "mkfs.ext4")
	img := filepath.Join(t.TempDir(), "root.ext4")
	Run(t, "mkfs.ext4", "-q", "-F", "-L", "rootfs", "-E", "root_owner=0:0", "-d", tree, img, size)
	return img
}

// FileSHA256 returns the hex SHA256 of a file's content.
func FileSHA256(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
