package spec

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/testimage"
)

// buildDeb makes a package with dpkg-deb from files (path in the package
// → content) plus control files (name → content, scripts made
// executable) and returns its bytes.
func buildDeb(t *testing.T, files, control map[string]string) string {
	t.Helper()
	testimage.Need(t, "dpkg-deb")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	control["control"] = "Package: extra\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.com>\nDescription: test\n"
	for name, c := range control {
		files["DEBIAN/"+name] = c
	}
	for p, c := range files {
		full := filepath.Join(tree, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(p, "DEBIAN/post") || strings.HasPrefix(p, "DEBIAN/pre") {
			mode = 0o755
		}
		if err := os.WriteFile(full, []byte(c), mode); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "extra.deb")
	testimage.Run(t, "dpkg-deb", "--root-owner-group", "-Zxz", "--build", tree, out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSecretsInDebRefused: what a deb block unpacks into the image is
// scanned like a file block's source.
func TestSecretsInDebRefused(t *testing.T) {
	bin := "\x7fELF\x00\x01" + strings.Repeat("x", 9000) + "-----BEGIN OPENSSH PRIVATE KEY-----\n"
	secret := buildDeb(t, map[string]string{
		"etc/consul.d/extra.hcl":     "# extra settings\nencrypt = \"" + gossipKey + "\"\n",
		"usr/bin/tool":               bin,
		"usr/share/doc/extra/README": "nothing to see\n",
	}, map[string]string{
		"postinst": "#!/bin/sh\nexport VAULT_TOKEN=hvs.CAESIJxYZ0123456789abcdefghijklmnopqrs\n",
	})
	src := baseLine + `deb "extra.deb" {}` + "\n"
	files := map[string]string{"extra.deb": secret}
	_, diags := parseIn(t, src, files, Inputs{})
	want := []string{
		`spec.hcl:2:1: deb "extra.deb": a gossip encryption key in package file /etc/consul.d/extra.hcl (line 2): pUqJ… (44 bytes) must not be baked into an image`,
		`spec.hcl:2:1: deb "extra.deb": a Vault/OpenBao token in the package's postinst script: hvs.… (42 bytes) must not be baked into an image`,
	}
	for _, w := range want {
		if !slices.ContainsFunc(diags, func(d string) bool { return strings.Contains(d, w) }) {
			t.Errorf("want %q in %q", w, diags)
		}
	}
	// The binary is not scanned; nothing else is reported.
	if len(diags) != len(want) {
		t.Errorf("diagnostics: %q", diags)
	}
	// allow_secrets_in_image turns the errors into warnings.
	_, diags = parseIn(t, baseLine+"allow_secrets_in_image = true\n"+`deb "extra.deb" {}`+"\n", files, Inputs{})
	if len(diags) != len(want) {
		t.Errorf("with allow_secrets_in_image: %q", diags)
	}
	for _, d := range diags {
		if !strings.Contains(d, "warning: ") || !strings.Contains(d, "will be in the image (allow_secrets_in_image = true)") {
			t.Errorf("with allow_secrets_in_image: %s", d)
		}
	}
	// A clean package passes.
	clean := buildDeb(t, map[string]string{"etc/consul.d/extra.hcl": "log_level = \"info\"\n"}, map[string]string{})
	if _, diags := parseIn(t, src, map[string]string{"extra.deb": clean}, Inputs{}); len(diags) != 0 {
		t.Errorf("clean package: %q", diags)
	}
}
