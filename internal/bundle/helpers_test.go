package bundle_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/bundle/bundletest"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/fs/ext4"
	"github.com/bakeryhq/bakery/internal/testimage"
)

// debianTree writes a minimal Debian-like root: merged /usr with /bin a
// symlink, /bin/sh -> dash an ELF for arch, and the account files.
func debianTree(t *testing.T, arch bundle.Arch) string {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"usr/bin", "usr/sbin", "etc/systemd/system", "var/lib", "lib/systemd/system", "boot/firmware"} {
		must(os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	must(os.Symlink("usr/bin", filepath.Join(dir, "bin")))
	must(os.Symlink("usr/sbin", filepath.Join(dir, "sbin")))
	must(os.WriteFile(filepath.Join(dir, "usr/bin/dash"), bundletest.ELF(arch, "dash"), 0o755))
	must(os.Symlink("dash", filepath.Join(dir, "usr/bin/sh")))
	must(os.WriteFile(filepath.Join(dir, "usr/sbin/nologin"), bundletest.ELF(arch, "nologin"), 0o755))
	files := map[string]string{
		"etc/passwd":     "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nsystemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n",
		"etc/group":      "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nsystemd-network:x:998:\npi:x:1000:\n",
		"etc/shadow":     "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nsystemd-network:!*:19000::::::\npi:!:19000:0:99999:7:::\n",
		"etc/gshadow":    "root:*::\ndaemon:*::\nshadow:*::\nsystemd-network:!*::\npi:!::\n",
		"etc/os-release": "ID=debian\nVERSION_ID=\"12\"\n",
	}
	for p, c := range files {
		must(os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644))
	}
	return dir
}

// ext4Root makes an ext4 image of tree with mkfs.ext4 -d and opens it.
func ext4Root(t *testing.T, tree string) (fs.Filesystem, string) {
	t.Helper()
	testimage.Need(t, "mkfs.ext4", "e2fsck", "debugfs")
	img := testimage.Ext4Tree(t, tree, "64M")
	root, err := ext4.Open(testimage.Device(t, img), fs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return root, img
}

// rdump extracts a directory of an ext4 image with debugfs.
func rdump(t *testing.T, img, dir string) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("debugfs", "-R", "rdump "+dir+" "+out, img)
	if b, err := cmd.CombinedOutput(); err != nil || strings.Contains(string(b), "rdump:") {
		t.Fatalf("debugfs rdump %s: %v\n%s", dir, err, b)
	}
	return out
}
