package systemd

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/fs/ext4"
	"github.com/bakeryhq/bakery/internal/testimage"
)

// units is a small but realistic unit set: aliases, templates with a
// default instance, Also=, RequiredBy=, a static unit, a local unit in
// /etc/systemd/system, and an existing enablement link.
var units = map[string]string{
	"usr/lib/systemd/system/ssh.service":             "[Unit]\nDescription=OpenBSD Secure Shell server\n[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n",
	"usr/lib/systemd/system/getty@.service":          "[Service]\nExecStart=-/sbin/agetty %I\n[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\n",
	"usr/lib/systemd/system/wpa_supplicant@.service": "[Unit]\nBindsTo=sys-subsystem-net-devices-%i.device\n[Service]\nExecStart=/sbin/wpa_supplicant -i%I\n[Install]\nWantedBy=multi-user.target\n",
	"usr/lib/systemd/system/docker.service":          "[Service]\nExecStart=/usr/bin/dockerd\n[Install]\nWantedBy=multi-user.target\nAlso=docker.socket\n",
	"usr/lib/systemd/system/docker.socket":           "[Socket]\nListenStream=/run/docker.sock\n[Install]\nWantedBy=sockets.target\n",
	"usr/lib/systemd/system/needed.service":          "[Service]\nExecStart=/bin/true\n[Install]\n# a comment\nRequiredBy=local-fs.target \\\n  remote-fs.target\nWantedBy=\nWantedBy=default.target\n",
	"usr/lib/systemd/system/static.service":          "[Service]\nExecStart=/bin/true\n",
	"usr/lib/systemd/system/apt-daily.timer":         "[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n",
	"usr/lib/systemd/system/bluetooth.service":       "[Service]\nExecStart=/usr/libexec/bluetooth/bluetoothd\n[Install]\nWantedBy=bluetooth.target\nAlias=dbus-org.bluez.service\n",
	"etc/systemd/system/local.service":               "[Service]\nExecStart=/usr/local/bin/thing\n[Install]\nWantedBy=multi-user.target\n",
}

var links = map[string]string{
	"lib": "usr/lib",
	"etc/systemd/system/bluetooth.target.wants/bluetooth.service": "/lib/systemd/system/bluetooth.service",
	"etc/systemd/system/dbus-org.bluez.service":                   "/lib/systemd/system/bluetooth.service",
	"etc/systemd/system/getty.target.wants/getty@tty1.service":    "/lib/systemd/system/getty@.service",
}

func writeTree(t *testing.T, dir string) {
	t.Helper()
	for p, c := range units {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for p, target := range links {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
}

// ext4Tree makes an ext4 image from the tree with mkfs.ext4 -d and opens it.
func ext4Tree(t *testing.T, tree string) (fs.Filesystem, func() string) {
	t.Helper()
	testimage.Need(t, "mkfs.ext4", "debugfs")
	img := testimage.Ext4Tree(t, tree, "32M")
	f, err := ext4.Open(testimage.Device(t, img), fs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	finish := func() string {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		testimage.E2fsck(t, img)
		return img
	}
	return f, finish
}

// linksIn lists "path -> target" for every symlink under etc/systemd/system.
func linksIn(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	base := filepath.Join(root, "etc/systemd/system")
	filepath.Walk(base, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel+" -> "+target)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// TestMatchesSystemctl runs the same operations with `systemctl --root`
// on a directory tree and with this package on an ext4 image of the same
// tree, and compares the resulting symlinks (read back with debugfs).
func TestMatchesSystemctl(t *testing.T) {
	testimage.Need(t, "systemctl")
	ops := []struct{ op, unit string }{
		{"enable", "ssh.service"},
		{"enable", "getty@.service"},
		{"enable", "getty@tty3.service"},
		{"enable", "wpa_supplicant@wlan0.service"},
		{"enable", "docker.service"},
		{"enable", "needed.service"},
		{"enable", "local.service"},
		{"disable", "bluetooth.service"},
		{"mask", "apt-daily.timer"},
		{"disable", "getty@tty3.service"},
		{"enable", "ssh.service"}, // idempotent
		{"mask", "static.service"},
		{"unmask", "static.service"},
	}
	ref := t.TempDir()
	writeTree(t, ref)
	for _, o := range ops {
		out, err := exec.Command("systemctl", "--root="+ref, o.op, o.unit).CombinedOutput()
		if err != nil {
			t.Fatalf("systemctl %s %s: %v\n%s", o.op, o.unit, err, out)
		}
	}
	want := linksIn(t, ref)

	tree := t.TempDir()
	writeTree(t, tree)
	f, finish := ext4Tree(t, tree)
	for _, o := range ops {
		var err error
		switch o.op {
		case "enable":
			_, err = Enable(f, o.unit)
		case "disable":
			_, err = Disable(f, o.unit)
		case "mask":
			_, err = Mask(f, o.unit)
		case "unmask":
			_, err = Unmask(f, o.unit)
		}
		if err != nil {
			t.Fatalf("%s %s: %v", o.op, o.unit, err)
		}
	}
	img := finish()
	dump := t.TempDir()
	os.MkdirAll(filepath.Join(dump, "etc/systemd"), 0o755)
	testimage.Run(t, "debugfs", "-R", "rdump /etc/systemd/system "+filepath.Join(dump, "etc/systemd"), img)
	got := linksIn(t, dump)
	if len(want) < 10 {
		t.Fatalf("systemctl made only %d links: %v", len(want), want)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("symlinks differ from systemctl --root:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(want, "\n      "))
	}
}

func TestErrors(t *testing.T) {
	tree := t.TempDir()
	writeTree(t, tree)
	f, _ := ext4Tree(t, tree)
	if _, err := Enable(f, "nope.service"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing unit: %v", err)
	}
	if _, err := Enable(f, "static.service"); !errors.Is(err, ErrNoInstall) {
		t.Errorf("static unit: %v", err)
	}
	if _, err := Enable(f, "wpa_supplicant@.service"); err == nil || !strings.Contains(err.Error(), "instance") {
		t.Errorf("template without default instance: %v", err)
	}
	if _, err := Mask(f, "local.service"); err == nil {
		t.Error("masking over a unit file in /etc/systemd/system succeeded")
	}
	if _, err := Mask(f, "ssh.service"); err != nil {
		t.Fatal(err)
	}
	if _, err := Enable(f, "ssh.service"); !errors.Is(err, ErrMasked) {
		t.Errorf("enabling a masked unit: %v", err)
	}
	if _, err := Disable(f, "nope.service"); !errors.Is(err, ErrNotFound) {
		t.Errorf("disabling a missing unit: %v", err)
	}
	if _, err := ParseName("foo"); !errors.Is(err, ErrBadName) {
		t.Errorf("name without suffix: %v", err)
	}
}

func TestParseInstall(t *testing.T) {
	in, err := ParseInstall([]byte(units["usr/lib/systemd/system/needed.service"]))
	if err != nil {
		t.Fatal(err)
	}
	want := Install{RequiredBy: []string{"local-fs.target", "remote-fs.target"}, WantedBy: []string{"default.target"}}
	if !reflect.DeepEqual(in, want) {
		t.Errorf("got %+v, want %+v", in, want)
	}
	if _, err := ParseInstall([]byte("[Install\nWantedBy=x\n")); err == nil {
		t.Error("bad header accepted")
	}
}

func TestIsEnabled(t *testing.T) {
	tree := t.TempDir()
	writeTree(t, tree)
	f, _ := ext4Tree(t, tree)
	if ok, _ := IsEnabled(f, "ssh.service"); ok {
		t.Error("ssh enabled before enabling")
	}
	Enable(f, "ssh.service")
	if ok, _ := IsEnabled(f, "ssh.service"); !ok {
		t.Error("ssh not enabled after enabling")
	}
	if ok, _ := IsEnabled(f, "getty@tty1.service"); !ok {
		t.Error("getty@tty1 not seen as enabled")
	}
}

func FuzzParseInstall(f *testing.F) {
	for _, c := range units {
		f.Add([]byte(c))
	}
	f.Add([]byte("[Install]\nWantedBy=a \\\n b\\\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := ParseInstall(data)
		if err != nil {
			return
		}
		for _, l := range [][]string{in.WantedBy, in.RequiredBy, in.Alias, in.Also} {
			for _, v := range l {
				if strings.ContainsAny(v, " \t\n") || v == "" {
					t.Fatalf("list value %q holds whitespace", v)
				}
			}
		}
	})
}
