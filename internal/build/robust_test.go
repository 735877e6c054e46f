package build

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/fs/fat"
	"github.com/bakeryhq/bakery/internal/progress"
	"github.com/bakeryhq/bakery/internal/testimage"
)

// TestReproducible builds the same spec twice into two directories: every
// output must be byte-identical.
func TestReproducible(t *testing.T) {
	src := strings.Replace(demoSpec, `formats = ["img", "bmap", "sha256"]`, `formats = ["img", "bmap", "sha256", "zst", "gz", "qcow2"]`, 1)
	files := map[string]string{"tool.bin": "tool\n"}
	base := demoBase(t, disk.TableMBR)
	s1 := loadSpec(t, base, src, files)
	s2 := loadSpec(t, base, src, files)
	need(t, "qemu-img")
	_, out1 := mustBuild(t, s1, func(o *Options) { o.SourceDateEpoch = nil })
	_, out2 := mustBuild(t, s2, func(o *Options) { o.SourceDateEpoch = nil })
	names := func(dir string) []string {
		var out []string
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			out = append(out, e.Name())
		}
		return out
	}
	n1, n2 := names(out1), names(out2)
	if strings.Join(n1, " ") != "SHA256SUMS node.img node.img.bmap node.img.gz node.img.zst node.qcow2" || strings.Join(n1, " ") != strings.Join(n2, " ") {
		t.Fatalf("outputs differ: %v vs %v", n1, n2)
	}
	for _, n := range n1 {
		if h1, h2 := testimage.FileSHA256(t, filepath.Join(out1, n)), testimage.FileSHA256(t, filepath.Join(out2, n)); h1 != h2 {
			t.Errorf("%s differs between two builds of the same spec", n)
		}
	}
	// A different variable value gives a different image (ids included).
	s3 := loadSpec(t, base, strings.Replace(src, `"correct horse battery staple"`, `"another passphrase!"`, 1), files)
	_, out3 := mustBuild(t, s3, func(o *Options) { o.SourceDateEpoch = nil })
	if testimage.FileSHA256(t, filepath.Join(out1, "node.img")) == testimage.FileSHA256(t, filepath.Join(out3, "node.img")) {
		t.Error("changing a variable did not change the image")
	}
}

// listDir lists every name in dir, hidden ones included.
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestFailedBuildLeavesNothing: a build failing late (after the copy and
// most steps) leaves no file behind, and the cached base is untouched.
func TestFailedBuildLeavesNothing(t *testing.T) {
	base := demoBase(t, disk.TableMBR)
	s := loadSpec(t, base, `base { url = "%BASE%" }
user "ops" { groups = ["sudo"] }
systemd {
  enable = ["consul"]
}`, nil)
	res, out, _, err := runBuild(t, s)
	if err == nil {
		t.Fatalf("build succeeded: %+v", res)
	}
	if !strings.Contains(err.Error(), "spec.hcl:4:") || !strings.Contains(err.Error(), "consul.service") {
		t.Errorf("error does not point at the unit: %v", err)
	}
	if got := listDir(t, out); len(got) != 0 {
		t.Errorf("a failed build left %v", got)
	}
	checkCacheUntouched(t)
}

// checkCacheUntouched verifies every cached raw base is still read-only
// and, where it was cached from a raw image (the demo bases), still
// hashes to its name.
func checkCacheUntouched(t *testing.T) {
	t.Helper()
	raws, _ := filepath.Glob(filepath.Join(testDir, "cache", "raw", "*.img"))
	if len(raws) == 0 {
		t.Fatal("no cached base")
	}
	demoSums := map[string]bool{}
	baseMu.Lock()
	for _, p := range baseCache {
		demoSums[testimage.FileSHA256(t, p)] = true
	}
	baseMu.Unlock()
	for _, r := range raws {
		fi, err := os.Stat(r)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o222 != 0 {
			t.Errorf("cached base %s is writable (%v)", r, fi.Mode())
		}
		name := strings.TrimSuffix(filepath.Base(r), ".img")
		if demoSums[name] {
			if got := testimage.FileSHA256(t, r); got != name {
				t.Errorf("cached base %s changed: it now hashes to %s", r, got)
			}
		}
	}
}

// TestCancelledBuildLeavesNothing cancels builds at many points (as
// Ctrl-C or SIGTERM do through the context): each must stop with the
// context's error and leave nothing, not even temporary files.
func TestCancelledBuildLeavesNothing(t *testing.T) {
	base := demoBase(t, disk.TableMBR)
	s := loadSpec(t, base, strings.Replace(demoSpec, `formats = ["img", "bmap", "sha256"]`, `formats = ["img", "bmap", "sha256", "zst"]`, 1),
		map[string]string{"tool.bin": "x"})
	// Cancel when the Nth progress task starts: copy, customise, block
	// map, write outputs.
	for n := 1; n <= 4; n++ {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var started atomic.Int32
			cw := &cancelWriter{after: int32(n), started: &started, cancel: cancel}
			rep := progress.New(cw, progress.Lines, slog.New(slog.NewTextHandler(cw, nil)))
			out := t.TempDir()
			epoch := int64(1)
			_, err := Run(ctx, s, Options{OutDir: out, CacheDir: filepath.Join(testDir, "cache"), Progress: rep, SourceDateEpoch: &epoch,
				Logger: discardLogger()})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			if got := listDir(t, out); len(got) != 0 {
				t.Errorf("cancelled build left %v", got)
			}
		})
	}
	checkCacheUntouched(t)
}

// cancelWriter cancels when the after-th "started" progress line is
// logged.
type cancelWriter struct {
	after   int32
	started *atomic.Int32
	cancel  func()
}

func (c *cancelWriter) Write(p []byte) (int, error) {
	if bytes.Contains(p, []byte(" started")) && c.started.Add(1) == c.after {
		c.cancel()
	}
	return len(p), nil
}

// TestBadInput: each kind of bad input gives one clear error (at its
// position in the spec where it has one) and no output.
func TestBadInput(t *testing.T) {
	base := demoBase(t, disk.TableMBR)
	dir := t.TempDir()
	corruptXZ := filepath.Join(dir, "corrupt.img.xz")
	os.WriteFile(corruptXZ, append([]byte("\xfd7zXZ\x00\x00\x04"), bytes.Repeat([]byte("not xz"), 1000)...), 0o644)
	noRoot := fatOnlyImage(t)
	piNoBoot := rootOnlyImage(t)
	sum := fmt.Sprintf("%x", sha256.Sum256([]byte("something else")))
	cases := []struct {
		name, spec string
		want       []string
	}{
		{"wrong checksum", `base {
  url      = "` + base + `"
  checksum = "sha256:` + sum + `"
}`, []string{"spec.hcl:3:3: ", "checksum mismatch"}},
		{"unreachable url", `base {
  url      = "http://127.0.0.1:1/base.img.xz"
  checksum = "sha256:` + sum + `"
}`, []string{"spec.hcl:2:3: ", "127.0.0.1:1"}},
		{"corrupt xz", `base { url = "` + corruptXZ + `" }`, []string{"spec.hcl:1:8: ", "xz"}},
		{"no root partition", `base { url = "` + noRoot + `" }`, []string{"spec.hcl:1:8: ", "no root partition"}},
		{"pi base without boot partition", `base { url = "` + piNoBoot + `" }`, []string{"spec.hcl:1:8: ", "no boot partition"}},
		{"unknown group", `base { url = "` + base + `" }
user "ops" {
  groups = ["sudo", "wheel"]
}`, []string{`spec.hcl:3:21: user "ops": group "wheel" does not exist in the base image`}},
		{"too many MBR partitions", `base { url = "` + base + `" }
layout {
  partition "a" { size = "8MiB" }
  partition "b" { size = "8MiB" }
  partition "c" { size = "8MiB" }
}`, []string{"spec.hcl:2:1: ", "4 primary partitions", `table = "gpt"`}},
		{"partition does not fit", `base { url = "` + base + `" }
layout {
  partition "huge" { size = "3TiB" }
}`, []string{"spec.hcl:", "2 TiB"}},
		{"root cannot shrink", `base { url = "` + base + `" }
layout {
  root_size = "64MiB"
}`, []string{"spec.hcl:3:3: ", "smaller than the base's root partition"}},
		{"missing timezone", `base { url = "` + base + `" }
timezone = "Europe/Atlantis"`, []string{"spec.hcl:2:1: ", `timezone "Europe/Atlantis" does not exist`}},
		{"cloud_init without cloud-init", `base { url = "` + piNoBootWithBoot(t) + `" }
cloud_init {
  user_data = "runcmd: [[true]]"
}`, []string{"spec.hcl:2:1: ", "no cloud-init"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := loadSpec(t, "", c.spec, nil)
			_, out, logs, err := runBuild(t, s)
			if err == nil {
				t.Fatal("build succeeded")
			}
			t.Log(err)
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q\n%s", err, w, logs)
				}
			}
			if strings.Count(err.Error(), "\n") > 0 {
				t.Errorf("error is not one line: %q", err)
			}
			if got := listDir(t, out); len(got) != 0 {
				t.Errorf("left %v", got)
			}
		})
	}
	checkCacheUntouched(t)
}

// fatOnlyImage is a disk with one FAT partition and no root.
func fatOnlyImage(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "fat-only.img")
	f, _ := os.Create(p)
	f.Truncate(40 << 20)
	f.Close()
	d, err := disk.Open(p, disk.OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.WriteTable(&disk.Table{Type: disk.TableMBR, DiskID: "12345678", Partitions: []disk.Partition{{Index: 1, Start: 1 << 20, Size: 38 << 20, Type: "0c"}}}); err != nil {
		t.Fatal(err)
	}
	r, _ := d.Region(1<<20, 38<<20)
	if err := fat.Format(r, fat.FormatParams{Type: "fat32", Label: "BOOT"}); err != nil {
		t.Fatal(err)
	}
	fsys, err := fat.Open(r, fs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fsys.WriteFile("/config.txt", strings.NewReader("arm_64bit=1\n"), fs.Attr{Mode: 0o644})
	fsys.Close()
	d.Commit()
	return p
}

// piRootTree writes a minimal Raspberry Pi OS root into dir.
func piRootTree(t *testing.T, dir string, extra map[string]string) {
	files := map[string]string{
		"etc/os-release":                         "PRETTY_NAME=\"Raspbian GNU/Linux 11 (bullseye)\"\nID=raspbian\nID_LIKE=debian\n",
		"etc/passwd":                             "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n",
		"etc/shadow":                             "root:*:19000:0:99999:7:::\npi:!:19000:0:99999:7:::\n",
		"etc/group":                              "root:x:0:\nsudo:x:27:pi\nnetdev:x:108:pi\npi:x:1000:\n",
		"etc/gshadow":                            "root:*::\nsudo:*::pi\nnetdev:*::pi\npi:!::\n",
		"etc/hostname":                           "raspberrypi\n",
		"etc/hosts":                              "127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n",
		"etc/fstab":                              "proc /proc proc defaults 0 0\nPARTUUID=5452574f-01 /boot vfat defaults 0 2\nPARTUUID=5452574f-02 / ext4 defaults,noatime 0 1\n",
		"usr/lib/raspberrypi-sys-mods/.keep":     "",
		"etc/machine-id":                         "0123456789abcdef0123456789abcdef\n",
		"etc/ssh/sshd_config":                    "PasswordAuthentication yes\n",
		"etc/ssh/ssh_host_ed25519_key":           "-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n-----END OPENSSH PRIVATE KEY-----\n",
		"usr/lib/systemd/system/ssh.service":     "[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n",
		"usr/lib/systemd/system/dhcpcd.service":  "[Service]\nExecStart=/usr/sbin/dhcpcd -q -b\n[Install]\nWantedBy=multi-user.target\n",
		"usr/sbin/wpa_supplicant":                "x",
		"etc/dhcpcd.conf":                        "hostname\nclientid\npersistent\n",
		"etc/wpa_supplicant/wpa_supplicant.conf": "ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev\n",
		"etc/skel/.bashrc":                       "# skel\n",
		"usr/lib/systemd/system/systemd-networkd.service": "[Service]\nExecStart=/lib/systemd/systemd-networkd\n[Install]\nWantedBy=multi-user.target\n",
	}
	for k, v := range extra {
		files[k] = v
	}
	for p, c := range files {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "etc/systemd/system/multi-user.target.wants"), 0o755)
	os.Symlink("/lib/systemd/system/dhcpcd.service", filepath.Join(dir, "etc/systemd/system/multi-user.target.wants/dhcpcd.service"))
	os.Symlink("usr/lib", filepath.Join(dir, "lib"))
	os.Chmod(filepath.Join(dir, "etc/shadow"), 0o640)
	os.Chmod(filepath.Join(dir, "etc/ssh/ssh_host_ed25519_key"), 0o600)
}

// rootOnlyImage is a Raspberry Pi OS-like root with no boot partition.
func rootOnlyImage(t *testing.T) string {
	need(t, "sfdisk", "mkfs.ext4")
	tree := t.TempDir()
	piRootTree(t, tree, nil)
	dir := t.TempDir()
	img := filepath.Join(dir, "root-only.img")
	f, _ := os.Create(img)
	f.Truncate(72 << 20)
	f.Close()
	testimage.RunIn(t, []byte("label: dos\nstart=2048, size=143360, type=83\n"), "sfdisk", "--no-reread", "--no-tell-kernel", img)
	part := filepath.Join(dir, "root.ext4")
	testimage.Run(t, "mkfs.ext4", "-q", "-F", "-d", tree, "-E", "root_owner=0:0", part, "70M")
	testimage.Splice(t, img, part, 1<<20)
	return img
}

// piNoBootWithBoot is a bullseye-like Pi image made with the reference
// tools (sfdisk, mkfs.fat, mkfs.ext4): dhcpcd, no cloud-init.
func piNoBootWithBoot(t *testing.T) string {
	tree := t.TempDir()
	piRootTree(t, tree, nil)
	boot := t.TempDir()
	os.WriteFile(filepath.Join(boot, "cmdline.txt"), []byte("console=serial0,115200 console=tty1 root=PARTUUID=5452574f-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspi-config/init_resize.sh systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n"), 0o644)
	os.WriteFile(filepath.Join(boot, "config.txt"), []byte("arm_64bit=1\n"), 0o644)
	os.WriteFile(filepath.Join(boot, "firstrun.sh"), []byte("#!/bin/bash\necho old\n"), 0o755)
	return testimage.PiImage(t, testimage.Layout{Table: "mbr", BootMiB: 40, RootMiB: 64, BootTree: boot, RootTree: tree})
}

// TestKilledBuildLeftoversRemoved: a build killed with SIGKILL can leave
// only hidden .partial files; the next build of the same outputs removes
// them (and only them).
func TestKilledBuildLeftoversRemoved(t *testing.T) {
	s := loadSpec(t, demoBase(t, disk.TableMBR), `base { url = "%BASE%" }
output {
  name    = "node"
  formats = ["img"]
}`, nil)
	out := t.TempDir()
	stale := []string{".node.img.123.partial", ".node.img.zst.456.partial", ".node.qcow2.789.partial"}
	keep := []string{".other.img.1.partial", "notes.txt"}
	for _, n := range append(append([]string{}, stale...), keep...) {
		os.WriteFile(filepath.Join(out, n), []byte("x"), 0o644)
	}
	mustBuild(t, s, func(o *Options) { o.OutDir = out })
	got := strings.Join(listDir(t, out), " ")
	for _, n := range stale {
		if strings.Contains(got, n) {
			t.Errorf("%s is still there: %s", n, got)
		}
	}
	for _, n := range append(keep, "node.img") {
		if !strings.Contains(got, n) {
			t.Errorf("%s is gone: %s", n, got)
		}
	}
}
