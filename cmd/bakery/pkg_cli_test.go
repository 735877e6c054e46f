package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/bundle/bundletest"
	"github.com/bakeryhq/bakery/internal/testimage"
)

func TestPkgCommand(t *testing.T) {
	testimage.Need(t, "dpkg-deb")
	m := bundletest.NewMirror(t)
	m.Release(t, "consul", "1.20.1", []bundle.Arch{bundle.ArchARM64, bundle.ArchARMv6}, nil)
	dir := t.TempDir()
	key := filepath.Join(dir, "key.asc")
	os.WriteFile(key, m.Key.Armored, 0o644)
	cfg := filepath.Join(dir, "consul.hcl")
	os.WriteFile(cfg, []byte(`bundle "consul" {
  version    = "1.20.1"
  role       = "server"
  datacenter = "lab"
  bootstrap_expect = 3
  retry_join = ["10.0.0.1"]
}
`), 0o644)
	out := filepath.Join(dir, "out")
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	stdout, stderr, err := runCLI(t, "", "pkg", "consul", "--arch", "arm64,armhf", "--config", cfg, "--out", out,
		"--mirror", m.Template(), "--pgp-key", key, "--cache", filepath.Join(dir, "cache"))
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	debs, _ := filepath.Glob(filepath.Join(out, "*.deb"))
	if len(debs) != 2 {
		t.Fatalf("packages: %v\n%s", debs, stdout)
	}
	hcl := testimage.Run(t, "sh", "-c", "dpkg-deb --fsys-tarfile "+debs[0]+" | tar -xOf - ./etc/consul.d/consul.hcl")
	if !strings.Contains(hcl, `datacenter       = "lab"`) || !strings.Contains(hcl, "bootstrap_expect = 3") {
		t.Errorf("packaged consul.hcl:\n%s", hcl)
	}

	// Without the test key the embedded HashiCorp key refuses the release.
	_, _, err = runCLI(t, "", "pkg", "consul", "--version", "1.20.1", "--arch", "arm64", "--out", out, "--mirror", m.Template(), "--cache", filepath.Join(dir, "cache"))
	if err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("want a signature error, got %v", err)
	}
}

// TestPkgRefusesLiteralSecrets: a --config holding a gossip key is
// refused before anything is fetched or written, unless --allow-secrets.
func TestPkgRefusesLiteralSecrets(t *testing.T) {
	testimage.Need(t, "dpkg-deb")
	m := bundletest.NewMirror(t)
	m.Release(t, "consul", "1.20.1", []bundle.Arch{bundle.ArchARM64}, nil)
	dir := t.TempDir()
	key := filepath.Join(dir, "key.asc")
	os.WriteFile(key, m.Key.Armored, 0o644)
	cfg := filepath.Join(dir, "consul.hcl")
	os.WriteFile(cfg, []byte(`bundle "consul" {
  version      = "1.20.1"
  extra_config = "encrypt = \"pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=\""
}
`), 0o644)
	out := filepath.Join(dir, "out")
	run := func(extra ...string) (string, error) {
		_, stderr, err := runCLI(t, "", append([]string{"pkg", "consul", "--arch", "arm64", "--format", "deb", "--config", cfg, "--out", out,
			"--mirror", m.Template(), "--pgp-key", key, "--cache", filepath.Join(dir, "cache")}, extra...)...)
		return stderr, err
	}
	stderr, err := run()
	if err == nil {
		t.Fatal("a config with a gossip key was packaged")
	}
	if want := `consul.hcl:3:3: bundle "consul": a gossip encryption key in extra_config: pUqJ… (44 bytes) must not be baked into a package`; !strings.Contains(stderr, want) || !strings.Contains(stderr, "pass --allow-secrets") {
		t.Errorf("want %q in:\n%s", want, stderr)
	}
	if strings.Contains(stderr, "pUqJrVyVRj5j") {
		t.Errorf("the key is printed:\n%s", stderr)
	}
	if debs, _ := filepath.Glob(filepath.Join(out, "*")); len(debs) != 0 {
		t.Errorf("refused, yet wrote %v", debs)
	}
	stderr, err = run("--allow-secrets")
	if err != nil {
		t.Fatalf("--allow-secrets: %v\n%s", err, stderr)
	}
	if !strings.Contains(strings.ToLower(stderr), "warning") || !strings.Contains(stderr, "will be in the package (--allow-secrets)") {
		t.Errorf("--allow-secrets: no warning in:\n%s", stderr)
	}
	if debs, _ := filepath.Glob(filepath.Join(out, "*.deb")); len(debs) != 1 {
		t.Errorf("--allow-secrets: packages %v", debs)
	}
}
