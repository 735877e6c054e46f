package step_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/build/step"
	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/bundle/bundletest"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/fs/ext4"
	"github.com/bakeryhq/bakery/internal/spec"
	"github.com/bakeryhq/bakery/internal/testimage"
)

// piRoot is an ext4 root like Raspberry Pi OS's: merged /usr, /boot/firmware,
// a dpkg database and account files.
func piRoot(t *testing.T) (fs.Filesystem, string) {
	t.Helper()
	testimage.Need(t, "mkfs.ext4", "e2fsck", "debugfs")
	dir := t.TempDir()
	for _, d := range []string{"usr/bin", "usr/sbin", "etc/systemd/system", "var/lib/dpkg/info", "boot/firmware"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	os.Symlink("usr/bin", filepath.Join(dir, "bin"))
	os.Symlink("usr/sbin", filepath.Join(dir, "sbin"))
	os.WriteFile(filepath.Join(dir, "usr/bin/dash"), bundletest.ELF(bundle.ArchARM64, "dash"), 0o755)
	os.Symlink("dash", filepath.Join(dir, "usr/bin/sh"))
	for p, c := range map[string]string{
		"etc/passwd":          "root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000:,,,:/home/pi:/bin/bash\n",
		"etc/group":           "root:x:0:\nshadow:x:42:\npi:x:1000:\n",
		"etc/shadow":          "root:*:19000:0:99999:7:::\npi:!:19000:0:99999:7:::\n",
		"etc/gshadow":         "root:*::\nshadow:*::\npi:!::\n",
		"etc/os-release":      "ID=debian\n",
		"var/lib/dpkg/status": "Package: base-files\nStatus: install ok installed\nMaintainer: Debian <d@example.com>\nArchitecture: arm64\nVersion: 12.4\nDescription: base\n",
	} {
		os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644)
	}
	img := testimage.Ext4Tree(t, dir, "96M")
	root, err := ext4.Open(testimage.Device(t, img), fs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return root, img
}

func parseSpec(t *testing.T, dir, src string) *spec.Spec {
	t.Helper()
	os.WriteFile(filepath.Join(dir, "base.img"), nil, 0o644)
	s, diags := spec.Parse(context.Background(), filepath.Join(dir, "spec.hcl"), []byte(`base { url = "base.img" }`+"\n"+src), spec.Inputs{Dir: dir})
	if diags.HasErrors() {
		t.Fatalf("spec: %v", diags)
	}
	return s
}

func stepContext(t *testing.T, s *spec.Spec, root fs.Filesystem) *step.Context {
	return &step.Context{Spec: s, Root: root, Flavour: &step.Flavour{Arch: "arm64"}, Time: time.Unix(1700000000, 0).UTC(),
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), FirstBoot: &step.FirstBoot{}}
}

func TestBundleAndDebSteps(t *testing.T) {
	testimage.Need(t, "dpkg-deb", "dpkg-query")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	m := bundletest.NewMirror(t)
	for _, r := range [][2]string{{"consul", "1.20.1"}, {"vault-agent", "1.18.2"}, {"node_exporter", "1.8.2"}} {
		m.Release(t, r[0], r[1], []bundle.Arch{bundle.ArchARM64}, nil)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "release.asc"), m.Key.Armored, 0o644)
	// A package made with dpkg-deb.
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "DEBIAN"), 0o755)
	os.MkdirAll(filepath.Join(tree, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(tree, "DEBIAN/control"), []byte("Package: tool\nVersion: 1.0\nArchitecture: arm64\nMaintainer: t <t@example.com>\nDescription: t\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "DEBIAN/postinst"), []byte("#!/bin/sh\nexit 0\n"), 0o755)
	os.WriteFile(filepath.Join(tree, "usr/bin/tool"), []byte("#!/bin/sh\n"), 0o755)
	testimage.Run(t, "dpkg-deb", "--root-owner-group", "--build", tree, filepath.Join(dir, "tool_1.0_arm64.deb"))

	s := parseSpec(t, dir, `
bundle "consul" {
  version      = "1.20.1"
  datacenter   = "home"
  retry_join   = ["provider=mdns service=consul-server"]
  mirror       = "`+m.Template()+`"
  pgp_key_file = "release.asc"
}
bundle "vault-agent" {
  version      = "1.18.2"
  vault_addr   = "https://vault.home:8200"
  role_id      = "6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69"
  mirror       = "`+m.Template()+`"
  pgp_key_file = "release.asc"
}
bundle "node_exporter" {
  version = "1.8.2"
  mirror  = "`+m.Template()+`"
}
deb "tool_1.0_arm64.deb" {}
`)
	root, img := piRoot(t)
	c := stepContext(t, s, root)
	if err := step.Bundles(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if err := step.Debs(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if len(c.FirstBoot.Commands) != 1 || strings.Join(c.FirstBoot.Commands[0].Argv, " ") != "dpkg --configure -a" {
		t.Errorf("first boot: %+v", c.FirstBoot.Commands)
	}
	if err := root.Close(); err != nil {
		t.Fatal(err)
	}
	testimage.E2fsck(t, img)
	agent := testimage.Debugfs(t, img, "cat /etc/vault-agent.d/agent.hcl")
	if !strings.Contains(agent, `secret_id_file_path                 = "/boot/firmware/bakery/secret-id"`) {
		t.Errorf("agent.hcl:\n%s", agent)
	}
	for _, u := range []string{"consul.service", "vault-agent.service", "node_exporter.service"} {
		if st := testimage.Debugfs(t, img, "stat /etc/systemd/system/multi-user.target.wants/"+u); !strings.Contains(st, "Type: symlink") {
			t.Errorf("%s not enabled:\n%s", u, st)
		}
	}
	out := t.TempDir()
	if b, err := exec.Command("debugfs", "-R", "rdump /var/lib/dpkg "+out, img).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, b)
	}
	if got := testimage.Run(t, "dpkg-query", "--admindir="+filepath.Join(out, "dpkg"), "-W", "-f=${Status}", "tool"); got != "install ok unpacked" {
		t.Errorf("tool: %q", got)
	}
}

func TestBundleStepPointsAtTheSpec(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	m := bundletest.NewMirror(t)
	m.Release(t, "nomad", "1.9.3", []bundle.Arch{bundle.ArchARM64}, nil)
	dir := t.TempDir()
	s := parseSpec(t, dir, `
bundle "nomad" {
  version = "1.9.3"
  mirror  = "`+m.Template()+`"
}
`)
	root, _ := piRoot(t)
	err := step.Bundles(context.Background(), stepContext(t, s, root))
	// Signed by the test key, not HashiCorp's: the build must stop, and
	// say where.
	if err == nil || !strings.Contains(err.Error(), "spec.hcl:4:3: bundle \"nomad\"") || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("got %v", err)
	}
}
