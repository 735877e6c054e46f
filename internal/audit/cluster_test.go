package audit_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/audit"
	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/testimage"
)

// TestClusterSecretsFound plants each cluster secret issue 7 forbids in an
// image whose bundle configuration is otherwise clean (rendered by
// internal/bundle), and expects exactly those findings.
func TestClusterSecretsFound(t *testing.T) {
	boot, root := t.TempDir(), t.TempDir()
	write := func(dir, p, content string) {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	write(boot, "config.txt", "arm_64bit=1\n")
	write(root, "etc/os-release", "ID=debian\n")
	write(boot, "bakery/secret-id", "hvs.CAESIFakeWrappingTokenForTheTest0123456789\n")
	// Clean configuration, as bakery renders it.
	plan := &bundle.Plan{Bundles: []bundle.Settings{
		{Name: "consul", Version: "1.20.1", Role: "server", RetryJoin: []string{"provider=mdns service=consul-server"}},
		{Name: "vault-agent", Version: "1.18.2", VaultAddr: "https://vault:8200", RoleID: "6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69"},
		{Name: "nomad", Version: "1.9.3", Role: "server"},
	}}
	if err := plan.Normalize(); err != nil {
		t.Fatal(err)
	}
	ls, err := plan.Layouts(bundle.ImageLayoutOptions)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		for _, e := range l.Entries {
			if e.Kind == bundle.KindFile {
				write(root, e.Path, string(e.Content))
			}
		}
	}
	// Planted secrets.
	write(root, "etc/consul.d/gossip.hcl", "encrypt = \"pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=\"\n")
	write(root, "etc/nomad.d/acl.hcl", "acl {\n  enabled = true\n}\nconsul {\n  token = \"6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a70\"\n}\n")
	write(root, "var/lib/vault-agent/token", "hvs.CAESIAnotherTokenThatMustNotBeHere0123456789\n")
	write(root, "etc/vault-agent.d/tls/agent.key", "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n")

	img := testimage.PiImage(t, testimage.Layout{BootTree: boot, RootTree: root})
	rep, err := audit.ScanFile(context.Background(), img, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range rep.Findings {
		got[f.Rule+" "+f.Partition+":"+f.Path] = true
		if strings.Contains(f.Message, "pUqJrVyV") || strings.Contains(f.Message, "FakeWrapping") {
			t.Errorf("finding reveals the secret: %s", f)
		}
	}
	for _, want := range []string{
		"node-credential boot:/bakery/secret-id",
		"consul-gossip-key root:/etc/consul.d/gossip.hcl",
		"acl-token root:/etc/nomad.d/acl.hcl",
		"node-credential root:/var/lib/vault-agent/token",
		"private-key root:/etc/vault-agent.d/tls/agent.key",
	} {
		if !got[want] {
			t.Errorf("missing finding %q; got %v", want, rep.Findings)
		}
	}
	for _, f := range rep.Findings {
		for _, clean := range []string{"/etc/consul.d/consul.hcl", "/etc/vault-agent.d/agent.hcl", "/etc/vault-agent.d/role-id", "/etc/nomad.d/nomad.hcl"} {
			if f.Path == clean {
				t.Errorf("bakery's own configuration was flagged: %s", f)
			}
		}
	}
}
