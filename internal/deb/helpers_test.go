package deb_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/fs/ext4"
	"github.com/bakeryhq/bakery/internal/testimage"
)

const baseStatus = `Package: base-files
Status: install ok installed
Priority: required
Section: admin
Installed-Size: 340
Maintainer: Santiago Vila <sanvila@debian.org>
Architecture: arm64
Version: 12.4+deb12u5
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy.

Package: zlib1g
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 164
Maintainer: Mark Brown <broonie@debian.org>
Architecture: arm64
Multi-Arch: same
Version: 1:1.2.13.dfsg-1
Description: compression library - runtime
`

// debianRoot makes an ext4 root with a dpkg database and merged /usr.
func debianRoot(t *testing.T) (fs.Filesystem, string) {
	t.Helper()
	testimage.Need(t, "mkfs.ext4", "e2fsck", "debugfs")
	dir := t.TempDir()
	for _, d := range []string{"usr/bin", "usr/lib", "etc", "var/lib/dpkg/info", "var/lib/dpkg/updates"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	os.Symlink("usr/bin", filepath.Join(dir, "bin"))
	os.Symlink("usr/lib", filepath.Join(dir, "lib"))
	os.WriteFile(filepath.Join(dir, "var/lib/dpkg/status"), []byte(baseStatus), 0o644)
	os.WriteFile(filepath.Join(dir, "var/lib/dpkg/info/base-files.list"), []byte("/.\n/etc\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nconsul:x:998:998::/var/lib/consul:/usr/sbin/nologin\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\nconsul:x:998:\n"), 0o644)
	img := testimage.Ext4Tree(t, dir, "64M")
	root, err := ext4.Open(testimage.Device(t, img), fs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return root, img
}

// dpkgDebBuild builds a package with dpkg-deb from a tree.
func dpkgDebBuild(t *testing.T, compression string, files map[string]string, modes map[string]os.FileMode, links map[string]string) string {
	t.Helper()
	testimage.Need(t, "dpkg-deb")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	for p, c := range files {
		full := filepath.Join(tree, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		mode := os.FileMode(0o644)
		if m, ok := modes[p]; ok {
			mode = m
		}
		if err := os.WriteFile(full, []byte(c), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(full, mode)
	}
	for p, target := range links {
		full := filepath.Join(tree, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "pkg.deb")
	cmd := exec.Command("dpkg-deb", "--root-owner-group", "-Z"+compression, "--build", tree, out)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build: %v\n%s", err, b)
	}
	return out
}

// extractAdmin dumps the image's /var/lib/dpkg with debugfs.
func extractAdmin(t *testing.T, img string) string {
	t.Helper()
	out := t.TempDir()
	if b, err := exec.Command("debugfs", "-R", "rdump /var/lib/dpkg "+out, img).CombinedOutput(); err != nil {
		t.Fatalf("debugfs rdump: %v\n%s", err, b)
	}
	return filepath.Join(out, "dpkg")
}

func dpkgQuery(t *testing.T, admin string, args ...string) string {
	t.Helper()
	return testimage.Run(t, "dpkg-query", append([]string{"--admindir=" + admin}, args...)...)
}

// entry is one member of a hand-made data.tar.
type entry struct {
	name, link string
	typ        byte
	body       string
	mode       int64
}

// craftDeb builds a .deb in Go, for packages dpkg-deb refuses to make.
func craftDeb(t testing.TB, control string, data []entry) []byte {
	t.Helper()
	tgz := func(ents []entry) []byte {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		tw := tar.NewWriter(gz)
		for _, e := range ents {
			mode := e.mode
			if mode == 0 {
				mode = 0o644
			}
			h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: mode, Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0), Uname: "root", Gname: "root"}
			if e.typ != tar.TypeReg {
				h.Size = 0
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if e.typ == tar.TypeReg {
				tw.Write([]byte(e.body))
			}
		}
		tw.Close()
		gz.Close()
		return buf.Bytes()
	}
	members := []struct {
		name string
		data []byte
	}{
		{"debian-binary", []byte("2.0\n")},
		{"control.tar.gz", tgz([]entry{{name: "./control", typ: tar.TypeReg, body: control}})},
		{"data.tar.gz", tgz(data)},
	}
	var out bytes.Buffer
	out.WriteString("!<arch>\n")
	for _, m := range members {
		fmt.Fprintf(&out, "%-16s%-12d%-6d%-6d%-8s%-10d`\n", m.name, 1700000000, 0, 0, "100644", len(m.data))
		out.Write(m.data)
		if len(m.data)%2 == 1 {
			out.WriteByte('\n')
		}
	}
	return out.Bytes()
}

const testControl = "Package: evil\nVersion: 1.0\nArchitecture: all\nMaintainer: x <x@example.com>\nDescription: test\n"

func writeTemp(t *testing.T, b []byte) string {
	p := filepath.Join(t.TempDir(), "x.deb")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func contains(haystack, needle string) bool { return strings.Contains(haystack, needle) }
