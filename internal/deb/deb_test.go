package deb_test

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/bundle/bundletest"
	"github.com/bakeryhq/bakery/internal/deb"
	"github.com/bakeryhq/bakery/internal/fetch"
	"github.com/bakeryhq/bakery/internal/pkg"
	"github.com/bakeryhq/bakery/internal/testimage"
)

func TestInstallDpkgDebBuilt(t *testing.T) {
	for _, z := range []string{"xz", "gzip", "zstd"} {
		t.Run(z, func(t *testing.T) {
			files := map[string]string{
				"DEBIAN/control":                       "Package: hello-bakery\nVersion: 1.2-3\nArchitecture: arm64\nMaintainer: Test <t@example.com>\nDepends: libc6\nDescription: a test package\n multi-line description.\n",
				"DEBIAN/conffiles":                     "/etc/hello/hello.conf\n",
				"DEBIAN/postinst":                      "#!/bin/sh\nset -e\necho configured > /var/lib/hello/state\n",
				"usr/bin/hello":                        "#!/bin/sh\necho hello\n",
				"etc/hello/hello.conf":                 "greeting = hi\n",
				"usr/share/doc/hello-bakery/copyright": "public domain\n",
			}
			modes := map[string]os.FileMode{"DEBIAN/postinst": 0o755, "usr/bin/hello": 0o755}
			debPath := dpkgDebBuild(t, z, files, modes, map[string]string{"usr/bin/hi": "hello", "bin/hey": "/usr/bin/hello"})
			root, img := debianRoot(t)
			p, f, err := deb.Open(debPath)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			res, err := deb.Install(context.Background(), root, p, deb.Options{Arch: "arm64", ModTime: time.Unix(1700000000, 0)})
			if err != nil {
				t.Fatal(err)
			}
			if res.Package != "hello-bakery" || len(res.Scripts) != 1 {
				t.Errorf("result %+v", res)
			}
			if err := root.Close(); err != nil {
				t.Fatal(err)
			}
			testimage.E2fsck(t, img)
			admin := extractAdmin(t, img)
			if got := dpkgQuery(t, admin, "-W", "-f=${Status} ${Version}", "hello-bakery"); got != "install ok unpacked 1.2-3" {
				t.Errorf("dpkg-query status: %q", got)
			}
			list := dpkgQuery(t, admin, "-L", "hello-bakery")
			for _, want := range []string{"/usr/bin/hello", "/usr/bin/hi", "/etc/hello/hello.conf", "/bin/hey"} {
				if !strings.Contains(list, want+"\n") {
					t.Errorf("dpkg-query -L lacks %s:\n%s", want, list)
				}
			}
			// The packages already installed are still there and the
			// database stays sorted.
			all := dpkgQuery(t, admin, "-W", "-f=${Package} ${Status}\n")
			if all != "base-files install ok installed\nhello-bakery install ok unpacked\nzlib1g install ok installed\n" {
				t.Errorf("dpkg-query -W:\n%s", all)
			}
			conff := dpkgQuery(t, admin, "-W", "-f=${Conffiles}", "hello-bakery")
			if !strings.Contains(conff, "/etc/hello/hello.conf ") {
				t.Errorf("conffiles: %q", conff)
			}
			if b, err := os.ReadFile(filepath.Join(admin, "info/hello-bakery.postinst")); err != nil || !strings.Contains(string(b), "configured") {
				t.Errorf("postinst not in info/: %v", err)
			}
			st := testimage.Debugfs(t, img, "stat /usr/bin/hello")
			if !strings.Contains(st, "Mode:  0755") {
				t.Errorf("/usr/bin/hello:\n%s", st)
			}
			if st := testimage.Debugfs(t, img, "stat /usr/bin/hey"); !strings.Contains(st, `Fast link dest: "/usr/bin/hello"`) {
				t.Errorf("/bin/hey went through the /bin -> usr/bin link:\n%s", st)
			}
		})
	}
}

func TestInstallBakeryPackage(t *testing.T) {
	testimage.Need(t, "dpkg-deb", "dpkg-query")
	m := bundletest.NewMirror(t)
	m.Release(t, "consul", "1.20.1", []bundle.Arch{bundle.ArchARM64}, nil)
	out := t.TempDir()
	res, err := pkg.Build(context.Background(), pkg.Options{
		Plan: &bundle.Plan{Bundles: []bundle.Settings{{Name: "consul", Version: "1.20.1", Mirror: m.Template(), PGPKey: m.Key.Armored}}},
		Name: "consul", Arches: []bundle.Arch{bundle.ArchARM64}, Formats: []string{"deb"}, OutDir: out,
		Source: &bundle.Source{Cache: &fetch.Fetcher{CacheDir: t.TempDir()}}, MTime: time.Unix(1700000000, 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	root, img := debianRoot(t)
	p, f, err := deb.Open(res[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := deb.Install(context.Background(), root, p, deb.Options{Arch: "arm64"}); err != nil {
		t.Fatal(err)
	}
	root.Close()
	testimage.E2fsck(t, img)
	admin := extractAdmin(t, img)
	if got := dpkgQuery(t, admin, "-W", "-f=${Status}", "consul"); got != "install ok unpacked" {
		t.Errorf("status %q", got)
	}
	if list := dpkgQuery(t, admin, "-L", "consul"); !strings.Contains(list, "/usr/bin/consul\n") || !strings.Contains(list, "/usr/lib/systemd/system/consul.service\n") {
		t.Errorf("list:\n%s", list)
	}
	// consul exists in the test root's passwd (uid 998): names resolve.
	if st := testimage.Debugfs(t, img, "stat /var/lib/consul"); !strings.Contains(st, "User:   998") {
		t.Errorf("/var/lib/consul owner:\n%s", st)
	}
}

func TestRefusesArchitecture(t *testing.T) {
	root, _ := debianRoot(t)
	b := craftDeb(t, strings.Replace(testControl, "Architecture: all", "Architecture: amd64", 1), []entry{{name: "./usr/bin/x", typ: tar.TypeReg, body: "x"}})
	p, f, err := deb.Open(writeTemp(t, b))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = deb.Install(context.Background(), root, p, deb.Options{Arch: "arm64"})
	if err == nil || !strings.Contains(err.Error(), "is for amd64, but the image is arm64") {
		t.Fatalf("got %v", err)
	}
}

func TestRefusesEscapes(t *testing.T) {
	for _, c := range []struct {
		name string
		data []entry
		want string
	}{
		{"dotdot", []entry{{name: "./../../etc/passwd", typ: tar.TypeReg, body: "x"}}, "climbs out of the root"},
		{"absolute", []entry{{name: "/etc/passwd", typ: tar.TypeReg, body: "x"}}, "absolute path"},
		{"through own symlink", []entry{
			{name: "./usr/lib/evil", typ: tar.TypeSymlink, link: "../../etc"},
			{name: "./usr/lib/evil/shadow", typ: tar.TypeReg, body: "root::0:0:::::\n"},
		}, "a symlink this package created"},
		{"hard link to a file it does not own", []entry{{name: "./usr/bin/p", typ: tar.TypeLink, link: "etc/passwd"}}, "not a file of this package"},
		{"hard link climbing", []entry{{name: "./usr/bin/p", typ: tar.TypeLink, link: "../etc/passwd"}}, "climbs out"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root, _ := debianRoot(t)
			p, f, err := deb.Open(writeTemp(t, craftDeb(t, testControl, c.data)))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			_, err = deb.Install(context.Background(), root, p, deb.Options{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want %q, got %v", c.want, err)
			}
			if passwd, _ := root.ReadFile("/etc/passwd"); strings.Contains(string(passwd), "x\n") && len(passwd) < 5 {
				t.Fatal("/etc/passwd was overwritten")
			}
		})
	}
}

func TestRefusesMalformed(t *testing.T) {
	good := craftDeb(t, testControl, []entry{{name: "./x", typ: tar.TypeReg, body: "x"}})
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"not ar", []byte("hello world, not a package")},
		{"truncated", good[:len(good)-40]},
		{"bad control", craftDeb(t, "Package: Evil Name\nVersion: 1\nArchitecture: all\n", nil)},
		{"no version", craftDeb(t, "Package: x\nArchitecture: all\n", nil)},
	} {
		_, f, err := deb.Open(writeTemp(t, c.b))
		if f != nil {
			f.Close()
		}
		if err == nil || !errors.Is(err, deb.ErrFormat) && !strings.Contains(err.Error(), "data.tar") {
			t.Errorf("%s: got %v", c.name, err)
		}
	}
}

func TestNoDpkgDatabase(t *testing.T) {
	root, _ := debianRoot(t)
	if err := root.Remove(deb.StatusFile); err != nil {
		t.Fatal(err)
	}
	p, f, err := deb.Open(writeTemp(t, craftDeb(t, testControl, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := deb.Install(context.Background(), root, p, deb.Options{}); err == nil || !strings.Contains(err.Error(), "no dpkg database") {
		t.Fatalf("got %v", err)
	}
}
