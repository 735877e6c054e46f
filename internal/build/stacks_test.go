package build

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/testimage"
)

// TestPiOSBullseyeBase builds on a Raspberry Pi OS-like base made with the
// reference tools (sfdisk, mkfs.fat, mkfs.ext4 -d) that has no cloud-init
// and uses dhcpcd + wpa_supplicant, and whose cmdline.txt still carries
// an rpi-imager firstrun.sh hook and the old init_resize.sh.
func TestPiOSBullseyeBase(t *testing.T) {
	need(t, "debugfs", "mcopy", "e2fsck", "fsck.fat")
	s := loadSpec(t, piNoBootWithBoot(t), `base { url = "%BASE%" }
hostname = "node1.lab.example"
user "admin" {
  groups = ["sudo", "netdev"]
  sudo   = "nopasswd"
}
wifi {
  ssid    = "lab"
  psk     = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  country = "DE"
}
network {
  interface "eth0" {
    address      = "10.0.0.5/24"
    gateway      = "10.0.0.1"
    dns          = ["10.0.0.1"]
    route_metric = 50
  }
}
locale   = "de_DE.UTF-8"
packages = ["htop"]
`, nil)
	res, out := mustBuild(t, s)
	if res.FirstBoot != "bakery-firstboot" || res.Base.Flavour.Network != "dhcpcd" || !res.Base.Flavour.RaspberryPiOS {
		t.Fatalf("flavour %+v", res.Base.Flavour)
	}
	p := extract(t, filepath.Join(out, "node.img"), 2)
	testimage.E2fsck(t, p.root)
	testimage.FsckFat(t, p.boot)

	cmdline := string(testimage.Mtype(t, p.boot, "/cmdline.txt"))
	for _, gone := range []string{"systemd.run", "init_resize", "kernel-command-line.target"} {
		if strings.Contains(cmdline, gone) {
			t.Errorf("cmdline.txt keeps %s: %s", gone, cmdline)
		}
	}
	if !strings.Contains(cmdline, "cfg80211.ieee80211_regdom=DE") || strings.Contains(cmdline, "ds=nocloud") {
		t.Errorf("cmdline.txt: %s", cmdline)
	}
	if out, _ := exec.Command("mdir", "-i", p.boot, "::/firstrun.sh").CombinedOutput(); !strings.Contains(string(out), "not found") {
		t.Errorf("firstrun.sh still on the boot partition: %s", out)
	}
	if got := p.cat(t, "/etc/hostname"); got != "node1.lab.example\n" {
		t.Errorf("hostname %q", got)
	}
	if got := p.cat(t, "/etc/hosts"); got != "127.0.0.1\tlocalhost\n127.0.1.1\tnode1.lab.example node1\n" {
		t.Errorf("hosts %q", got)
	}
	wpa := p.cat(t, "/etc/wpa_supplicant/wpa_supplicant.conf")
	for _, want := range []string{"country=DE\n", "\tssid=\"lab\"\n", "\tpsk=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n", "key_mgmt=WPA-PSK"} {
		if !strings.Contains(wpa, want) {
			t.Errorf("wpa_supplicant.conf lacks %q:\n%s", want, wpa)
		}
	}
	if st := p.stat(t, "/etc/wpa_supplicant/wpa_supplicant.conf"); !strings.Contains(st, "Mode:  0600") {
		t.Errorf("wpa_supplicant.conf mode:\n%s", st)
	}
	dh := p.cat(t, "/etc/dhcpcd.conf")
	if !strings.Contains(dh, "hostname\nclientid\npersistent\n\n# bakery: interface eth0\ninterface eth0\nstatic ip_address=10.0.0.5/24\nstatic routers=10.0.0.1\nstatic domain_name_servers=10.0.0.1\nmetric 50\nnodhcp\n") {
		t.Errorf("dhcpcd.conf:\n%s", dh)
	}
	if got := p.readlink(t, "/etc/systemd/system/multi-user.target.wants/bakery-firstboot.service"); got != "/etc/systemd/system/bakery-firstboot.service" {
		t.Errorf("firstboot link %q", got)
	}
	script := p.cat(t, "/usr/local/lib/bakery/firstboot")
	if !strings.Contains(script, "\nlocale-gen\n") || !strings.Contains(script, "apt-get install -y --no-install-recommends htop\n") {
		t.Errorf("firstboot script:\n%s", script)
	}
	if got := p.cat(t, "/etc/locale.gen"); got != "de_DE.UTF-8 UTF-8\n" {
		t.Errorf("locale.gen %q", got)
	}
	// The image's own files were made by mkfs.ext4 -d, not by us: golden
	// cleanup must still find them.
	if p.exists(t, "/etc/ssh/ssh_host_ed25519_key") {
		t.Error("host key left")
	}
	if st := p.stat(t, "/etc/machine-id"); !strings.Contains(st, "Size: 0") {
		t.Error("machine-id not emptied")
	}
	// sshd_config had no Include line: it gets one, first.
	if got := p.cat(t, "/etc/ssh/sshd_config"); !strings.HasPrefix(got, "Include /etc/ssh/sshd_config.d/*.conf\n") {
		t.Errorf("sshd_config:\n%s", got)
	}
}

// TestNetworkdWifi: a base using systemd-networkd joins wifi through
// wpa_supplicant@wlan0 and a .network file, and gets DNS via resolved.
func TestNetworkdWifi(t *testing.T) {
	need(t, "debugfs", "systemctl")
	// Switch the demo base from NetworkManager to networkd in a first
	// build, then build on that.
	s := loadSpec(t, demoBase(t, disk.TableMBR), `base { url = "%BASE%" }
systemd {
  disable = ["NetworkManager"]
  enable  = ["systemd-networkd"]
}
layout { grow = "none" }
`, nil)
	_, out := mustBuild(t, s)
	base2 := filepath.Join(t.TempDir(), "networkd.img")
	copyFile(t, filepath.Join(out, "node.img"), base2)
	s2 := loadSpec(t, base2, `base { url = "%BASE%" }
wifi {
  ssid    = "lab"
  psk     = "a passphrase of some length"
  country = "FR"
}
network {
  interface "wlan0" {
    address = "10.1.0.9/16"
    gateway = "10.1.0.1"
    dns     = ["10.1.0.1"]
  }
}
layout { grow = "none" }
`, nil)
	res, out2 := mustBuild(t, s2)
	if res.Base.Flavour.Network != "networkd" {
		t.Fatalf("network stack %q", res.Base.Flavour.Network)
	}
	p := extract(t, filepath.Join(out2, "node.img"), 2)
	if got := p.readlink(t, "/etc/systemd/system/multi-user.target.wants/wpa_supplicant@wlan0.service"); got != "/lib/systemd/system/wpa_supplicant@.service" {
		t.Errorf("wpa_supplicant@wlan0 link %q", got)
	}
	nw := p.cat(t, "/etc/systemd/network/10-bakery-wlan0.network")
	if nw != "# Written by bakery build.\n[Match]\nName=wlan0\n\n[Network]\nDHCP=ipv6\nIPv6AcceptRA=yes\nAddress=10.1.0.9/16\nDNS=10.1.0.1\n\n[Route]\nGateway=10.1.0.1\n" {
		t.Errorf(".network file:\n%s", nw)
	}
	if conf := p.cat(t, "/etc/wpa_supplicant/wpa_supplicant-wlan0.conf"); !strings.Contains(conf, "country=FR\n") || strings.Contains(conf, "a passphrase") {
		t.Errorf("wpa conf:\n%s", conf)
	}
	if got := p.readlink(t, "/etc/resolv.conf"); got != "../run/systemd/resolve/stub-resolv.conf" {
		t.Errorf("resolv.conf -> %q", got)
	}
	if got := p.readlink(t, "/etc/systemd/system/multi-user.target.wants/systemd-resolved.service"); got == "" {
		t.Error("resolved not enabled")
	}
	if p.exists(t, "/etc/NetworkManager/system-connections/bakery-wifi.nmconnection") {
		t.Error("NetworkManager profile written on a networkd base")
	}
}

// TestSystemdBlockMatchesSystemctl: the links a build leaves under
// /etc/systemd/system are those `systemctl --root` leaves on the same
// base for the same operations.
func TestSystemdBlockMatchesSystemctl(t *testing.T) {
	need(t, "systemctl", "debugfs")
	base := demoBase(t, disk.TableMBR)
	s := loadSpec(t, base, `base { url = "%BASE%" }
ssh { enabled = false }
systemd {
  enable  = ["systemd-resolved", "getty@tty2", "wpa_supplicant@wlan1.service"]
  disable = ["bluetooth", "NetworkManager"]
  mask    = ["apt-daily.timer", "wpa_supplicant.service"]
}
layout { grow = "none" }
golden { ssh_host_keys = false }
`, nil)
	_, out := mustBuild(t, s)
	built := extract(t, filepath.Join(out, "node.img"), 2)

	// The oracle: systemctl on the base's own tree.
	orig := extract(t, base, 2)
	ref := orig.rdump(t, "/")
	os.Symlink("usr/lib", filepath.Join(ref, "lib")) // rdump keeps symlinks; make sure /lib resolves
	for _, op := range [][]string{
		{"disable", "ssh.service"},
		{"mask", "apt-daily.timer", "wpa_supplicant.service"},
		{"disable", "bluetooth.service", "NetworkManager.service"},
		{"enable", "systemd-resolved.service", "getty@tty2.service", "wpa_supplicant@wlan1.service"},
	} {
		args := append([]string{"--root=" + ref}, op...)
		if b, err := exec.Command("systemctl", args...).CombinedOutput(); err != nil {
			t.Fatalf("systemctl %v: %v\n%s", op, err, b)
		}
	}
	want := linkSet(t, filepath.Join(ref, "etc/systemd/system"))
	got := linkSet(t, built.rdump(t, "/etc/systemd/system"))
	if len(want) < 8 {
		t.Fatalf("systemctl left only %v", want)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("links differ from systemctl --root:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

// linkSet lists the symlinks under dir (path relative to dir -> target),
// leaving out bakery's own units.
func linkSet(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.Mode()&os.ModeSymlink == 0 || strings.Contains(p, "bakery-") {
			return nil
		}
		target, _ := os.Readlink(p)
		rel, _ := filepath.Rel(dir, p)
		out = append(out, rel+" -> "+target)
		return nil
	})
	sort.Strings(out)
	return out
}
