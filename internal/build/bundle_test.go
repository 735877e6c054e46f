package build

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/audit"
	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/bundle/bundletest"
	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/testimage"
)

// TestBuildWithClusterBundles runs the whole pipeline with cluster
// bundles and a local .deb: the bundle and deb steps run between files
// and systemd, release archives come through the build's own download
// cache (fetched once for two builds), the image passes e2fsck, and the
// audit finds no secret on it.
func TestBuildWithClusterBundles(t *testing.T) {
	need(t, "e2fsck", "debugfs", "dpkg-deb")
	m := bundletest.NewMirror(t)
	m.Release(t, "consul", "1.20.1", []bundle.Arch{bundle.ArchARM64}, nil)
	m.Release(t, "vault-agent", "1.18.2", []bundle.Arch{bundle.ArchARM64}, nil)
	m.Release(t, "node_exporter", "1.8.2", []bundle.Arch{bundle.ArchARM64}, nil)

	src := `
base { url = "%BASE%" }
output {
  name    = "node"
  formats = ["img"]
}
bundle "consul" {
  version      = "1.20.1"
  datacenter   = "home"
  retry_join   = ["provider=mdns service=consul-server"]
  mirror       = "` + m.Template() + `"
  pgp_key_file = "release.asc"
}
bundle "vault-agent" {
  version      = "1.18.2"
  vault_addr   = "https://vault.home:8200"
  role_id      = "6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69"
  mirror       = "` + m.Template() + `"
  pgp_key_file = "release.asc"
}
bundle "node_exporter" {
  version = "1.8.2"
  mirror  = "` + m.Template() + `"
}
`
	// A package made with dpkg-deb, baked in beside the bundles.
	debDir := t.TempDir()
	tree := filepath.Join(debDir, "tree")
	os.MkdirAll(filepath.Join(tree, "DEBIAN"), 0o755)
	os.MkdirAll(filepath.Join(tree, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(tree, "DEBIAN/control"), []byte("Package: tool\nVersion: 1.0\nArchitecture: arm64\nMaintainer: t <t@example.com>\nDescription: t\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "usr/bin/tool"), []byte("#!/bin/sh\n"), 0o755)
	deb := filepath.Join(debDir, "tool_1.0_arm64.deb")
	testimage.Run(t, "dpkg-deb", "--root-owner-group", "--build", tree, deb)
	src += "deb \"" + deb + "\" {}\n"

	cache := filepath.Join(t.TempDir(), "cache")
	var outs []string
	for range 2 {
		s := loadSpec(t, demoBase(t, disk.TableMBR), src, map[string]string{"release.asc": string(m.Key.Armored)})
		res, out := mustBuild(t, s, func(o *Options) { o.CacheDir = cache })
		if !slices.Contains(res.Steps, "bundle") || !slices.Contains(res.Steps, "deb") {
			t.Fatalf("steps: %v", res.Steps)
		}
		outs = append(outs, out)
	}
	for _, f := range []string{"consul_1.20.1_linux_arm64.zip", "vault_1.18.2_linux_arm64.zip"} {
		rel := "consul"
		if strings.HasPrefix(f, "vault") {
			rel = "vault"
		}
		if n := m.Count(rel, "1.20.1", f) + m.Count(rel, "1.18.2", f); n != 1 {
			t.Errorf("%s fetched %d times over two builds; want 1 (the build's cache)", f, n)
		}
	}

	img := filepath.Join(outs[1], "node.img")
	p := extract(t, img, 2)
	testimage.E2fsck(t, p.root)
	if st := p.stat(t, "/usr/bin/consul"); !strings.Contains(st, "Mode:  0755") {
		t.Errorf("consul binary:\n%s", st)
	}
	for _, u := range []string{"consul.service", "vault-agent.service", "node_exporter.service"} {
		if l := p.readlink(t, "/etc/systemd/system/multi-user.target.wants/"+u); l == "" {
			t.Errorf("%s not enabled", u)
		}
	}
	if st := p.stat(t, "/usr/bin/tool"); !strings.Contains(st, "Mode:  0755") {
		t.Errorf("the .deb's file:\n%s", st)
	}
	if status := p.cat(t, "/var/lib/dpkg/status"); !strings.Contains(status, "Package: tool\nStatus: install ok unpacked") {
		t.Errorf("dpkg status:\n%s", status)
	}
	rep, err := audit.ScanFile(context.Background(), img, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed(false) {
		t.Errorf("audit of a bundle image failed: %+v", rep.Findings)
	}
}
