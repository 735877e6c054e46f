package pkg_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/bundle/bundletest"
	"github.com/bakeryhq/bakery/internal/fetch"
	"github.com/bakeryhq/bakery/internal/pkg"
	"github.com/bakeryhq/bakery/internal/testimage"
)

func build(t *testing.T, m *bundletest.Mirror, cache, out string, name, version string, arches []bundle.Arch, formats []string) []pkg.Result {
	t.Helper()
	plan := &bundle.Plan{Bundles: []bundle.Settings{{Name: name, Version: version, Mirror: m.Template(), PGPKey: m.Key.Armored}}}
	res, err := pkg.Build(context.Background(), pkg.Options{
		Plan: plan, Name: name, Arches: arches, Formats: formats, OutDir: out,
		Source: &bundle.Source{Cache: &fetch.Fetcher{CacheDir: cache}},
		MTime:  time.Unix(1700000000, 0).UTC(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestDebPackage(t *testing.T) {
	testimage.Need(t, "dpkg-deb")
	m := bundletest.NewMirror(t)
	m.Release(t, "consul", "1.20.1", []bundle.Arch{bundle.ArchARM64, bundle.ArchARMv6}, nil)
	out := t.TempDir()
	res := build(t, m, t.TempDir(), out, "consul", "1.20.1", []bundle.Arch{bundle.ArchARM64, bundle.ArchARMv6}, []string{"deb"})
	if len(res) != 2 {
		t.Fatalf("%d packages", len(res))
	}
	for _, r := range res {
		info := testimage.Run(t, "dpkg-deb", "-I", r.Path)
		for _, want := range []string{"Package: consul", "Version: 1.20.1-1", "Architecture: " + r.Arch, "Section: admin", "Homepage: https://www.consul.io/",
			"preinst", "postinst", "prerm", "postrm", "conffiles"} {
			if !strings.Contains(info, want) {
				t.Errorf("%s: dpkg-deb -I lacks %q:\n%s", filepath.Base(r.Path), want, info)
			}
		}
		list := testimage.Run(t, "dpkg-deb", "-c", r.Path)
		for _, re := range []string{
			`-rwxr-xr-x root/root .* \./usr/bin/consul\n`,
			`drwxr-x--- consul/consul .* \./var/lib/consul/\n`,
			`drwxr-x--- root/consul .* \./etc/consul\.d/\n`,
			`-rw-r----- root/consul .* \./etc/consul\.d/consul\.hcl\n`,
			`-rw-r--r-- root/root .* \./usr/lib/systemd/system/consul\.service\n`,
			` 2023-11-14 22:13 `,
		} {
			if !regexp.MustCompile(re).MatchString(list) {
				t.Errorf("%s: dpkg-deb -c does not match %q:\n%s", filepath.Base(r.Path), re, list)
			}
		}
		conffiles := testimage.Run(t, "dpkg-deb", "-I", r.Path, "conffiles")
		if !strings.Contains(conffiles, "/etc/consul.d/consul.hcl") {
			t.Errorf("conffiles:\n%s", conffiles)
		}
		preinst := testimage.Run(t, "dpkg-deb", "-I", r.Path, "preinst")
		if !strings.Contains(preinst, "useradd --system --gid consul --home-dir /var/lib/consul") {
			t.Errorf("preinst:\n%s", preinst)
		}
		postrm := testimage.Run(t, "dpkg-deb", "-I", r.Path, "postrm")
		if !strings.Contains(postrm, `"${1:-}" = purge`) || !strings.Contains(postrm, "userdel consul") {
			t.Errorf("postrm:\n%s", postrm)
		}
		for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
			script := testimage.Run(t, "dpkg-deb", "-I", r.Path, s)
			cmd := exec.Command("sh", "-n")
			cmd.Stdin = strings.NewReader(script)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s is not valid sh: %v\n%s", s, err, b)
			}
		}
	}
	if !strings.HasSuffix(res[1].Path, "_armhf.deb") {
		t.Errorf("armhf package named %s", res[1].Path)
	}
}

func TestPackagesAreReproducible(t *testing.T) {
	m := bundletest.NewMirror(t)
	m.Release(t, "node_exporter", "1.8.2", []bundle.Arch{bundle.ArchARM64}, nil)
	a := build(t, m, t.TempDir(), t.TempDir(), "node_exporter", "1.8.2", []bundle.Arch{bundle.ArchARM64}, nil)
	b := build(t, m, t.TempDir(), t.TempDir(), "node_exporter", "1.8.2", []bundle.Arch{bundle.ArchARM64}, nil)
	if len(a) != 3 {
		t.Fatalf("%d packages, want deb, rpm and apk", len(a))
	}
	for i := range a {
		if a[i].SHA256 != b[i].SHA256 {
			t.Errorf("%s differs between two builds", filepath.Base(a[i].Path))
		}
		fi, err := os.Stat(a[i].Path)
		if err != nil || fi.Size() < 512 {
			t.Errorf("%s: %v (%d bytes)", a[i].Path, err, fi.Size())
		}
	}
	if !strings.HasSuffix(a[0].Path, "node-exporter_1.8.2-1_arm64.deb") || !strings.HasSuffix(a[1].Path, ".aarch64.rpm") || !strings.HasSuffix(a[2].Path, ".apk") {
		t.Errorf("names: %s %s %s", a[0].Path, a[1].Path, a[2].Path)
	}
	if _, err := exec.LookPath("rpm"); err == nil {
		out := testimage.Run(t, "rpm", "-qlp", "--dump", a[1].Path)
		if !strings.Contains(out, "/usr/bin/node_exporter") {
			t.Errorf("rpm -qlp:\n%s", out)
		}
		// The maintainer scripts create the service account.
		if out := testimage.Run(t, "rpm", "-qp", "--scripts", a[1].Path); !strings.Contains(out, "preinstall") || !strings.Contains(out, "node_exporter") {
			t.Errorf("rpm --scripts:\n%s", out)
		}
	}
}

func TestBuildRefusesUnverifiedSources(t *testing.T) {
	m := bundletest.NewMirror(t)
	m.Release(t, "nomad", "1.9.3", []bundle.Arch{bundle.ArchAMD64}, nil)
	plan := &bundle.Plan{Bundles: []bundle.Settings{{Name: "nomad", Version: "1.9.3", Mirror: m.Template()}}}
	out := t.TempDir()
	_, err := pkg.Build(context.Background(), pkg.Options{Plan: plan, Name: "nomad", Arches: []bundle.Arch{bundle.ArchAMD64}, OutDir: out,
		Source: &bundle.Source{Cache: &fetch.Fetcher{CacheDir: t.TempDir()}}})
	if err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("want a signature error, got %v", err)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("a failed build left %d files", len(entries))
	}
}

// TestBuildIsAllOrNothing: when one architecture fails, no package of the
// others is left behind (nor a temporary file).
func TestBuildIsAllOrNothing(t *testing.T) {
	m := bundletest.NewMirror(t)
	m.Release(t, "consul", "1.20.1", []bundle.Arch{bundle.ArchARM64}, nil)
	// The armhf node_exporter is really an amd64 binary.
	m.Release(t, "node_exporter", "1.8.2", []bundle.Arch{bundle.ArchARM64, bundle.ArchARMv6}, func(a bundle.Arch) bundle.Arch {
		if a == bundle.ArchARMv6 {
			return bundle.ArchAMD64
		}
		return a
	})
	for _, c := range []struct {
		name, version, want string
	}{
		{"consul", "1.20.1", "no checksum for consul_1.20.1_linux_arm.zip"}, // not released for armhf
		{"node_exporter", "1.8.2", "is built for amd64, but --arch is armhf (ARMv6)"},
	} {
		plan := &bundle.Plan{Bundles: []bundle.Settings{{Name: c.name, Version: c.version, Mirror: m.Template(), PGPKey: m.Key.Armored}}}
		out := t.TempDir()
		_, err := pkg.Build(context.Background(), pkg.Options{
			Plan: plan, Name: c.name, Arches: []bundle.Arch{bundle.ArchARM64, bundle.ArchARMv6}, Formats: []string{"deb", "rpm"}, OutDir: out,
			Source: &bundle.Source{Cache: &fetch.Fetcher{CacheDir: t.TempDir()}},
			MTime:  time.Unix(1700000000, 0).UTC(),
		})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: want an error about %q, got %v", c.name, c.want, err)
		}
		if entries, _ := os.ReadDir(out); len(entries) != 0 {
			t.Errorf("%s: a failed build left %v", c.name, entries)
		}
	}
	// Two architectures that would write the same file are refused, and
	// nothing is written.
	plan := &bundle.Plan{Bundles: []bundle.Settings{{Name: "node_exporter", Version: "1.8.2", Mirror: m.Template()}}}
	m.Release(t, "node_exporter", "1.8.3", []bundle.Arch{bundle.ArchARMv6, bundle.ArchARMv7}, nil)
	plan.Bundles[0].Version = "1.8.3"
	out := t.TempDir()
	_, err := pkg.Build(context.Background(), pkg.Options{
		Plan: plan, Name: "node_exporter", Arches: []bundle.Arch{bundle.ArchARMv6, bundle.ArchARMv7}, Formats: []string{"deb"}, OutDir: out,
		Source: &bundle.Source{Cache: &fetch.Fetcher{CacheDir: t.TempDir()}},
		MTime:  time.Unix(1700000000, 0).UTC(),
	})
	if err == nil || !strings.Contains(err.Error(), "would both be written to") {
		t.Errorf("want a clash, got %v", err)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("a refused build left %v", entries)
	}
}

// TestMaintainerScriptsRun runs the scripts with stub commands on PATH
// (nothing touches the host) and checks what they would do.
func TestMaintainerScriptsRun(t *testing.T) {
	plan := &bundle.Plan{Bundles: []bundle.Settings{{Name: "consul", Version: "1.20.1", Role: "server"}}}
	if err := plan.Normalize(); err != nil {
		t.Fatal(err)
	}
	l, err := plan.Layout("consul", bundle.LayoutOptions{UnitDir: pkg.UnitDir, TmpfilesDir: "/usr/lib/tmpfiles.d"})
	if err != nil {
		t.Fatal(err)
	}
	sc := pkg.Scripts(l)
	stubs := t.TempDir()
	log := filepath.Join(stubs, "calls.log")
	for _, cmd := range []string{"getent", "groupadd", "useradd", "install", "chown", "chmod", "systemctl", "systemd-tmpfiles", "userdel", "groupdel", "rm"} {
		body := "#!/bin/sh\necho \"" + cmd + " $*\" >> " + log + "\n"
		if cmd == "getent" {
			body += "exit 2\n" // nothing exists yet
		}
		os.WriteFile(filepath.Join(stubs, cmd), []byte(body), 0o755)
	}
	run := func(script string, args ...string) string {
		os.Remove(log)
		cmd := exec.Command("/bin/sh", append([]string{"-c", script, "script"}, args...)...)
		cmd.Env = []string{"PATH=" + stubs}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v\n%s\n%s", err, out, script)
		}
		b, _ := os.ReadFile(log)
		return string(b)
	}
	pre := run(sc.PreInstall, "install")
	if !strings.Contains(pre, "groupadd --system consul") || !strings.Contains(pre, "useradd --system --gid consul --home-dir /var/lib/consul --no-create-home") {
		t.Errorf("preinst calls:\n%s", pre)
	}
	post := run(sc.PostInstall, "configure")
	for _, want := range []string{"useradd --system", "install -d -m 0750 -o consul -g consul /var/lib/consul", "install -d -m 0750 -o root -g consul /etc/consul.d",
		"systemctl enable consul.service"} {
		if !strings.Contains(post, want) {
			t.Errorf("postinst lacks %q:\n%s", want, post)
		}
	}
	if got := run(sc.PostRemove, "remove"); strings.Contains(got, "userdel") || strings.Contains(got, "rm ") {
		t.Errorf("postrm remove deleted things:\n%s", got)
	}
	// (getent answers "missing" in the stubs, so userdel is skipped here.)
	if got := run(sc.PostRemove, "purge"); !strings.Contains(got, "rm -rf /var/lib/consul") || !strings.Contains(got, "rm -rf /etc/consul.d") {
		t.Errorf("postrm purge:\n%s", got)
	}
	if got := run(sc.PreRemove, "upgrade"); strings.Contains(got, "disable") {
		t.Errorf("prerm on upgrade disabled the unit:\n%s", got)
	}
	if got := run(sc.PreRemove, "remove"); !strings.Contains(got, "systemctl disable consul.service") {
		t.Errorf("prerm remove:\n%s", got)
	}
}
