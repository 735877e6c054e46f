package build

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/audit"
	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/testimage"
)

// TestBuildDemo builds a spec using every block on the demo base and
// judges the result with e2fsprogs, dosfstools, mtools, cloud-init,
// sha256sum and bmaptool.
func TestBuildDemo(t *testing.T) {
	need(t, "debugfs", "e2fsck", "fsck.fat", "mcopy")
	tool := bytes.Repeat([]byte("\x7fELF tool bytes\n"), 5000)
	s := loadSpec(t, demoBase(t, disk.TableMBR), demoSpec, map[string]string{"tool.bin": string(tool)})
	res, out, logs, err := runBuild(t, s)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, logs)
	}
	p := extract(t, filepath.Join(out, "node.img"), 2)
	testimage.E2fsck(t, p.root)
	testimage.FsckFat(t, p.boot)

	// Result.
	if res.FirstBoot != "cloud-init" || !res.Base.Flavour.RaspberryPiOS || res.Base.Flavour.Network != "networkmanager" {
		t.Errorf("flavour: %+v", res.Base.Flavour)
	}
	wantWarn := false
	for _, w := range res.Warnings {
		wantWarn = wantWarn || strings.Contains(w, "not-there.service")
	}
	if !wantWarn {
		t.Errorf("no warning about disabling a missing unit: %q", res.Warnings)
	}

	t.Run("hostname", func(t *testing.T) {
		if got := p.cat(t, "/etc/hostname"); got != "" {
			t.Errorf("/etc/hostname = %q, want empty", got)
		}
		if hosts := p.cat(t, "/etc/hosts"); strings.Contains(hosts, "127.0.1.1") || !strings.Contains(hosts, "localhost") {
			t.Errorf("/etc/hosts:\n%s", hosts)
		}
	})
	t.Run("users", func(t *testing.T) {
		passwd := p.cat(t, "/etc/passwd")
		for _, want := range []string{"ops:x:1001:1001::/home/ops:/bin/bash\n", "dev:x:1002:1002::/home/dev:/bin/sh\n"} {
			if !strings.Contains(passwd, want) {
				t.Errorf("passwd lacks %q", want)
			}
		}
		shadow := p.cat(t, "/etc/shadow")
		if !strings.Contains(shadow, "ops:!:20046:") || !strings.Contains(shadow, "dev:$6$rounds=5000$saltsalt$") {
			t.Errorf("shadow:\n%s", shadow)
		}
		if g := p.cat(t, "/etc/group"); !strings.Contains(g, "sudo:x:27:pi,ops\n") || !strings.Contains(g, "adm:x:4:pi,ops\n") {
			t.Errorf("group:\n%s", g)
		}
		if g := p.cat(t, "/etc/gshadow"); !strings.Contains(g, "sudo:*::pi,ops\n") || !strings.Contains(g, "ops:!::\n") {
			t.Errorf("gshadow:\n%s", g)
		}
		for path, want := range map[string]string{
			"/home/ops":                      "Mode:  0700",
			"/home/ops/.ssh":                 "Mode:  0700",
			"/home/ops/.ssh/authorized_keys": "Mode:  0600",
			"/home/ops/.bashrc":              "User:  1001   Group:  1001",
			"/etc/sudoers.d/90-bakery-ops":   "Mode:  0440",
		} {
			if st := p.stat(t, path); !strings.Contains(st, want) {
				t.Errorf("%s: want %q in\n%s", path, want, st)
			}
		}
		if st := p.stat(t, "/home/ops/.ssh/authorized_keys"); !strings.Contains(st, "User:  1001   Group:  1001") {
			t.Errorf("authorized_keys owner:\n%s", st)
		}
		if got := p.cat(t, "/etc/sudoers.d/90-bakery-dev"); !strings.HasSuffix(got, "dev ALL=(ALL:ALL) ALL\n") {
			t.Errorf("dev sudoers: %q", got)
		}
		// The Pi OS user wizard is off and tty1 has its login prompt.
		if p.exists(t, "/etc/systemd/system/multi-user.target.wants/userconfig.service") {
			t.Error("userconfig.service still enabled")
		}
		if got := p.readlink(t, "/etc/systemd/system/getty.target.wants/getty@tty1.service"); got != "/lib/systemd/system/getty@.service" {
			t.Errorf("getty@tty1 link = %q", got)
		}
	})
	t.Run("ssh", func(t *testing.T) {
		conf := p.cat(t, "/etc/ssh/sshd_config.d/50-bakery.conf")
		for _, want := range []string{"PasswordAuthentication no\n", "PermitRootLogin no\n", "Port 2222\n"} {
			if !strings.Contains(conf, want) {
				t.Errorf("drop-in lacks %q:\n%s", want, conf)
			}
		}
		if got := p.readlink(t, "/etc/systemd/system/multi-user.target.wants/ssh.service"); got != "/lib/systemd/system/ssh.service" {
			t.Errorf("ssh.service link = %q", got)
		}
		if got := p.readlink(t, "/etc/systemd/system/multi-user.target.wants/bakery-ssh-keygen.service"); got != "/etc/systemd/system/bakery-ssh-keygen.service" {
			t.Errorf("keygen link = %q", got)
		}
		if ls := testimage.Debugfs(t, p.root, "ls /etc/ssh"); strings.Contains(ls, "ssh_host_") {
			t.Errorf("host keys left: %s", ls)
		}
	})
	t.Run("wifi", func(t *testing.T) {
		path := "/etc/NetworkManager/system-connections/bakery-wifi.nmconnection"
		if st := p.stat(t, path); !strings.Contains(st, "Mode:  0600") || !strings.Contains(st, "User:     0") {
			t.Errorf("keyfile mode:\n%s", st)
		}
		kf := p.cat(t, path)
		for _, want := range []string{"type=wifi\n", "ssid=farm net\n", "hidden=true\n", "key-mgmt=wpa-psk\n", "psk=" + wpaPSKForTest("farm net", "correct horse battery staple") + "\n"} {
			if !strings.Contains(kf, want) {
				t.Errorf("wifi keyfile lacks %q:\n%s", want, kf)
			}
		}
		if strings.Contains(kf, "correct horse") {
			t.Error("the passphrase itself is in the keyfile")
		}
		if got := p.cat(t, "/var/lib/systemd/rfkill/platform-fe300000.mmcnr:wlan"); got != "0\n" {
			t.Errorf("rfkill state %q", got)
		}
		cmdline := string(testimage.Mtype(t, p.boot, "/cmdline.txt"))
		if !strings.Contains(cmdline, " cfg80211.ieee80211_regdom=IE") {
			t.Errorf("cmdline: %s", cmdline)
		}
	})
	t.Run("network", func(t *testing.T) {
		kf := p.cat(t, "/etc/NetworkManager/system-connections/bakery-eth0.nmconnection")
		for _, want := range []string{"interface-name=eth0\n", "[ipv4]\nmethod=manual\naddress1=192.168.1.10/24\ngateway=192.168.1.1\ndns=192.168.1.1;\ndns-search=lab.example;\nroute-metric=100\n", "[ipv6]\nmethod=disabled\n"} {
			if !strings.Contains(kf, want) {
				t.Errorf("eth0 keyfile lacks %q:\n%s", want, kf)
			}
		}
		if strings.Contains(kf, "2001:db8::53") {
			t.Error("IPv6 name server on an interface without IPv6")
		}
		if got := p.cat(t, "/etc/cloud/cloud.cfg.d/99-bakery-network.cfg"); !strings.Contains(got, "network: {config: disabled}") {
			t.Errorf("cloud-init network not disabled: %q", got)
		}
	})
	t.Run("locale", func(t *testing.T) {
		if got := p.readlink(t, "/etc/localtime"); got != "/usr/share/zoneinfo/Europe/Dublin" {
			t.Errorf("localtime -> %q", got)
		}
		if got := p.cat(t, "/etc/timezone"); got != "Europe/Dublin\n" {
			t.Errorf("timezone %q", got)
		}
		if got := p.cat(t, "/etc/default/locale"); got != "LANG=en_IE.UTF-8\n" {
			t.Errorf("locale %q", got)
		}
		if got := p.cat(t, "/etc/locale.gen"); !strings.Contains(got, "\nen_IE.UTF-8 UTF-8\n") {
			t.Errorf("locale.gen %q", got)
		}
		kb := p.cat(t, "/etc/default/keyboard")
		for _, want := range []string{`XKBLAYOUT="de"`, `XKBVARIANT="nodeadkeys"`, `XKBOPTIONS="ctrl:nocaps"`, `XKBMODEL="pc105"`, `BACKSPACE="guess"`} {
			if !strings.Contains(kb, want) {
				t.Errorf("keyboard lacks %s:\n%s", want, kb)
			}
		}
	})
	t.Run("files", func(t *testing.T) {
		if got := p.cat(t, "/opt/app/bin/tool"); got != string(tool) {
			t.Errorf("tool: %d bytes, want %d", len(got), len(tool))
		}
		if st := p.stat(t, "/opt/app/bin/tool"); !strings.Contains(st, "Mode:  0755") || !strings.Contains(st, "User:  1001   Group:     4") {
			t.Errorf("tool attributes:\n%s", st)
		}
		if st := p.stat(t, "/opt/app"); !strings.Contains(st, "Mode:  0755") || !strings.Contains(st, "User:     0   Group:     0") {
			t.Errorf("created parent:\n%s", st)
		}
		if st := p.stat(t, "/srv/data"); !strings.Contains(st, "Mode:  0750") || !strings.Contains(st, "User:  1001   Group:     0") {
			t.Errorf("directory:\n%s", st)
		}
		if got := p.readlink(t, "/srv/current"); got != "/srv/data" {
			t.Errorf("symlink -> %q", got)
		}
		if got := p.cat(t, "/etc/motd"); got != "hello\n" {
			t.Errorf("motd %q", got)
		}
	})
	t.Run("systemd", func(t *testing.T) {
		if got := p.readlink(t, "/etc/systemd/system/multi-user.target.wants/systemd-resolved.service"); got != "/lib/systemd/system/systemd-resolved.service" {
			t.Errorf("resolved link %q", got)
		}
		if got := p.readlink(t, "/etc/systemd/system/apt-daily.timer"); got != "/dev/null" {
			t.Errorf("mask %q", got)
		}
		for _, gone := range []string{"/etc/systemd/system/bluetooth.target.wants/bluetooth.service", "/etc/systemd/system/dbus-org.bluez.service"} {
			if p.exists(t, gone) {
				t.Errorf("%s still there", gone)
			}
		}
	})
	t.Run("cloud-init", func(t *testing.T) {
		need(t, "cloud-init")
		ud := testimage.Mtype(t, p.boot, "/user-data")
		f := filepath.Join(t.TempDir(), "user-data")
		os.WriteFile(f, ud, 0o644)
		if out, err := exec.Command("cloud-init", "schema", "--config-file", f).CombinedOutput(); err != nil {
			t.Fatalf("cloud-init schema: %v\n%s\n%s", err, out, ud)
		}
		for _, want := range []string{"packages:\n  - htop\n  - jq=1.6-2.1\n", "package_update: true\n", "ssh_pwauth: false\n",
			"preserve_hostname: true\n", "- - locale-gen\n", "- - touch\n    - /var/lib/first-boot-done\n", "write_files:\n", "mode: \"off\"\n"} {
			if !bytes.Contains(ud, []byte(want)) {
				t.Errorf("user-data lacks %q:\n%s", want, ud)
			}
		}
		md := string(testimage.Mtype(t, p.boot, "/meta-data"))
		if !regexp.MustCompile(`^instance-id: bakery-[0-9a-f]{16}\n$`).MatchString(md) {
			t.Errorf("meta-data %q", md)
		}
		cmdline := string(testimage.Mtype(t, p.boot, "/cmdline.txt"))
		if !strings.Contains(cmdline, " ds=nocloud") || strings.Contains(cmdline, "init=") {
			t.Errorf("cmdline: %s", cmdline)
		}
		if got := p.cat(t, "/etc/cloud/cloud.cfg.d/90-bakery-nocloud.cfg"); !strings.Contains(got, "fs_label: bootfs") {
			t.Errorf("nocloud cfg %q", got)
		}
		if p.exists(t, "/etc/systemd/system/"+"bakery-firstboot.service") {
			t.Error("bakery-firstboot.service installed on a cloud-init base: two first-boot mechanisms")
		}
	})
	t.Run("golden", func(t *testing.T) {
		if st := p.stat(t, "/etc/machine-id"); !strings.Contains(st, "Size: 0") {
			t.Errorf("machine-id not empty:\n%s", st)
		}
		for _, gone := range []string{"/var/lib/dbus/machine-id", "/var/lib/cloud/instances", "/var/lib/cloud/instance", "/var/lib/cloud/data",
			"/home/pi/.bash_history", "/root/.bash_history", "/var/lib/systemd/random-seed", "/var/log/syslog.1", "/var/log/auth.log.2.gz",
			"/var/log/journal/5f1b7a3c9d2e4f60a8b7c6d5e4f3a2b1", "/var/lib/NetworkManager/internal-4f6c1c3a-eth0.lease",
			"/var/lib/dhcp/dhclient.eth0.leases", "/tmp/demo-build.log"} {
			if p.exists(t, gone) {
				t.Errorf("%s survived golden cleanup", gone)
			}
		}
		for _, kept := range []string{"/var/log/syslog", "/var/log/journal", "/tmp", "/var/lib/cloud"} {
			if !p.exists(t, kept) {
				t.Errorf("%s was removed; it should stay", kept)
			}
		}
		if st := p.stat(t, "/var/log/syslog"); !strings.Contains(st, "Size: 0") || !strings.Contains(st, "Mode:  0640") {
			t.Errorf("syslog not truncated in place:\n%s", st)
		}
	})
	t.Run("outputs", func(t *testing.T) {
		need(t, "sha256sum")
		cmd := exec.Command("sha256sum", "-c", "--strict", "SHA256SUMS")
		cmd.Dir = out
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("sha256sum -c: %v\n%s", err, b)
		}
		entries, _ := os.ReadDir(out)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if strings.Join(names, " ") != "SHA256SUMS node.img node.img.bmap" {
			t.Errorf("output directory holds %v", names)
		}
		for _, o := range res.Outputs {
			if fi, err := os.Stat(o.Path); err != nil || fi.Size() != o.Size {
				t.Errorf("output %+v: %v", o, err)
			}
		}
	})
	t.Run("audit", func(t *testing.T) {
		rep, err := audit.ScanFile(context.Background(), filepath.Join(out, "node.img"), audit.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Failed(false) {
			t.Errorf("audit of a default build fails: %+v", rep.Findings)
		}
		if rep.Warnings != 1 || rep.Findings[0].Rule != "wifi-psk" {
			t.Errorf("want exactly the wifi psk warning, got %+v", rep.Findings)
		}
	})
	t.Run("secrets", func(t *testing.T) {
		b, _ := json.Marshal(res)
		for _, secret := range []string{"correct horse battery staple", "saltsalt$Y3EVHgwe7v3H9w", wpaPSKForTest("farm net", "correct horse battery staple")} {
			if strings.Contains(logs.String(), secret) || bytes.Contains(b, []byte(secret)) {
				t.Errorf("secret %q leaked into the log or the result", secret[:8])
			}
		}
	})
}

// TestBmapFlashesDirtyCard copies the image with bmaptool onto a "card"
// full of garbage: every filesystem must still check clean, which needs
// the block map to include metadata that is all zeros in the image.
func TestBmapFlashesDirtyCard(t *testing.T) {
	need(t, "bmaptool", "e2fsck", "fsck.fat")
	s := loadSpec(t, demoBase(t, disk.TableMBR), `base { url = "%BASE%" }
layout {
  partition "data" {
    size  = "64MiB"
    mount = "/data"
  }
}`, nil)
	_, out := mustBuild(t, s)
	img := filepath.Join(out, "node.img")
	fi, _ := os.Stat(img)
	card := filepath.Join(t.TempDir(), "card")
	f, err := os.Create(card)
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte("garbage!\xff\x00\x55\xaa"), 1<<16)
	for off := int64(0); off < fi.Size(); off += int64(len(junk)) {
		f.WriteAt(junk[:min(int64(len(junk)), fi.Size()-off)], off)
	}
	f.Close()
	testimage.Run(t, "bmaptool", "copy", "--bmap", img+".bmap", img, card)
	p := extract(t, card, 2)
	testimage.E2fsck(t, p.root)
	testimage.FsckFat(t, p.boot)
	d, _ := disk.Open(card, disk.OpenOptions{})
	tbl, _ := d.ReadTable()
	d.Close()
	data, _ := tbl.Partition(3)
	testimage.E2fsck(t, testimage.Extract(t, card, data.Start, data.Size))
}

// wpaPSKForTest is wpa_passphrase's derivation, checked against the IEEE
// 802.11i test vector in TestWPAPSKVector.
func wpaPSKForTest(ssid, pass string) string { return wpaPSKHex(ssid, pass) }

func wpaPSKHex(ssid, pass string) string {
	k, err := pbkdf2.Key(sha1.New, pass, []byte(ssid), 4096, 32)
	if err != nil {
		panic(err)
	}
	return hex.EncodeToString(k)
}

func TestWPAPSKVector(t *testing.T) {
	// IEEE 802.11i-2004, annex H.4.
	if got := wpaPSKHex("IEEE", "password"); got != "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e" {
		t.Fatalf("got %s", got)
	}
}
