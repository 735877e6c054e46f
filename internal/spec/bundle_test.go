package spec

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"
)

const (
	gossipKey = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
	sshKey    = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
)

func TestBundleBlocks(t *testing.T) {
	src := baseLine + `bundle "consul" {
  version    = "1.20.1"
  role       = "server"
  datacenter = "home"
  retry_join = ["provider=mdns service=consul-server"]
  bootstrap_expect = 3
  ca_file    = "ca.pem"
}
bundle "vault-agent" {
  version    = "1.18.2"
  vault_addr = "https://vault.home:8200"
  role_id    = "6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69"
  consul_pki_path = "pki_int/issue/consul"
  template "/run/app/env" {
    contents = "{{ with secret \"kv/data/app\" }}X={{ .Data.data.x }}{{ end }}"
    command  = ["systemctl", "restart", "app"]
  }
}
deb "pkgs/tool_1.0_arm64.deb" {}
`
	s, diags := parseIn(t, src, map[string]string{"ca.pem": "-----BEGIN CERTIFICATE-----\n", "pkgs/tool_1.0_arm64.deb": "!<arch>\n"}, Inputs{})
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	if len(s.Bundles) != 2 || s.Bundles[0].BootstrapExpect != 3 || !strings.HasSuffix(s.Bundles[0].CAFile, "/ca.pem") {
		t.Fatalf("bundles: %+v", s.Bundles)
	}
	if len(s.Bundles[1].Template) != 1 || s.Bundles[1].Template[0].Destination != "/run/app/env" {
		t.Fatalf("templates: %+v", s.Bundles[1].Template)
	}
	if len(s.Debs) != 1 || !strings.HasSuffix(s.Debs[0].Path, "/pkgs/tool_1.0_arm64.deb") {
		t.Fatalf("debs: %+v", s.Debs)
	}
}

// TestEveryBundleTemplateAccepted: a spec may list every template the
// bundle code renders (docs/cluster.md documents them all), and no other.
func TestEveryBundleTemplateAccepted(t *testing.T) {
	src := baseLine + `bundle "vault-agent" {
  version    = "1.18.2"
  vault_addr = "https://vault.home:8200"
  role_id    = "6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69"
  templates  = ["` + strings.Join(BundleTemplates, `", "`) + `"]
}
`
	if _, diags := parseIn(t, src, nil, Inputs{}); len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	for _, name := range []string{"nomad-consul-token", "prometheus-consul-token", "consul-registration"} {
		if !slices.Contains(BundleTemplates, name) {
			t.Errorf("%s missing from BundleTemplates", name)
		}
	}
	_, diags := parseIn(t, strings.Replace(src, `"consul-gossip"`, `"consul-gosip"`, 1), nil, Inputs{})
	if !slices.ContainsFunc(diags, func(d string) bool { return strings.Contains(d, `template "consul-gosip": want one of consul-gossip,`) }) {
		t.Errorf("a misspelt template is not refused: %q", diags)
	}
}

func TestBundleRules(t *testing.T) {
	for _, c := range []struct {
		src  string
		want string
	}{
		{`bundle "consl" { version = "1.0.0" }`, `spec.hcl:2:1: bundle "consl": unknown bundle "consl"; bakery bundles consul, nomad, vault-agent, consul-template, prometheus, node_exporter (did you mean "consul"?)`},
		{`bundle "consul" { version = "v1.20.1" }`, `spec.hcl:2:19: bundle "consul": version "v1.20.1": give the release version without the leading v`},
		{`bundle "consul" {` + "\n" + `  version = "1.20.1"` + "\n" + `  vault_addr = "https://v"` + "\n}", `spec.hcl:4:3: bundle "consul": vault_addr does not apply to bundle "consul"`},
		{`bundle "nomad" {` + "\n" + `  version = "1.9.3"` + "\n" + `  bootstrap_expect = 3` + "\n}", `spec.hcl:4:3: bundle "nomad": bootstrap_expect is for servers; set role = "server"`},
		{`bundle "consul" {` + "\n" + `  version = "1.20.1"` + "\n" + `  role = "leader"` + "\n}", `spec.hcl:4:3: bundle "consul": role = "leader" is not allowed; want "client", "server"`},
		{`bundle "vault-agent" { version = "1.18.2" }`, `bundle "vault-agent" needs vault_addr`},
		{`bundle "consul" {` + "\n" + `  version = "1.20.1"` + "\n" + `  ca_file = "nope.pem"` + "\n}", `spec.hcl:4:3: bundle "consul": ca_file "nope.pem" is not a readable file`},
		{`deb "nope.deb" {}`, `spec.hcl:2:1: deb "nope.deb": deb file "nope.deb" does not exist`},
	} {
		_, diags := parseIn(t, baseLine+c.src, nil, Inputs{})
		if !slices.ContainsFunc(diags, func(d string) bool { return strings.Contains(d, c.want) }) {
			t.Errorf("%s\nwant %q in %q", c.src, c.want, diags)
		}
	}
}

func TestLiteralSecretsRefused(t *testing.T) {
	for _, c := range []struct {
		src  string
		want string
	}{
		{`file "/etc/consul.d/gossip.hcl" {` + "\n" + `  content = "encrypt = \"` + gossipKey + `\""` + "\n}",
			`spec.hcl:3:3: file "/etc/consul.d/gossip.hcl": a gossip encryption key in content: pUqJ… (44 bytes) must not be baked into an image`},
		{`file "/etc/vault.env" {` + "\n" + `  content = "VAULT_TOKEN=hvs.CAESIJxYZ0123456789abcdefghijklmnopqrs"` + "\n}",
			`spec.hcl:3:3: file "/etc/vault.env": a Vault/OpenBao token in content: hvs.… (42 bytes) must not be baked`},
		{`file "/root/.ssh/id_ed25519" {` + "\n" + `  source = "id_ed25519"` + "\n}",
			`spec.hcl:3:3: file "/root/.ssh/id_ed25519": a private key in source file $DIR/id_ed25519`},
		// Past the first 8 KiB of a long text file.
		{`file "/etc/consul.d/big.hcl" {` + "\n" + `  source = "big.hcl"` + "\n}",
			`spec.hcl:3:3: file "/etc/consul.d/big.hcl": a gossip encryption key in source file $DIR/big.hcl`},
		{`bundle "consul" {` + "\n" + `  version = "1.20.1"` + "\n" + `  extra_config = "acl { tokens { agent = \"6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69\" } }"` + "\n}",
			`spec.hcl:4:3: bundle "consul": an ACL token in extra_config`},
		// content_base64 is decoded and scanned as text.
		{`file "/root/.ssh/id_ed25519" {` + "\n" + `  content_base64 = "` + base64.StdEncoding.EncodeToString([]byte(sshKey)) + `"` + "\n}",
			`spec.hcl:3:3: file "/root/.ssh/id_ed25519": a private key in content_base64 (decoded)`},
		{`file "/etc/consul.d/gossip.json" {` + "\n" + `  content_base64 = filebase64("gossip.json")` + "\n}",
			`spec.hcl:3:3: file "/etc/consul.d/gossip.json": a gossip encryption key in content_base64 (decoded)`},
	} {
		files := map[string]string{"id_ed25519": sshKey, "gossip.json": `{"encrypt": "` + gossipKey + `"}`,
			"big.hcl": strings.Repeat("# padding line of a long configuration file\n", 300) + "ENCRYPT = \"" + gossipKey + "\"\n"}
		_, diags := parseIn(t, baseLine+c.src, files, Inputs{})
		if !slices.ContainsFunc(diags, func(d string) bool { return strings.Contains(d, c.want) }) {
			t.Errorf("want %q in %q", c.want, diags)
		}
		// allow_secrets_in_image turns the error into a warning.
		s, diags := parseIn(t, baseLine+"allow_secrets_in_image = true\n"+c.src, files, Inputs{})
		for _, d := range diags {
			if !strings.Contains(d, "warning: ") {
				t.Errorf("with allow_secrets_in_image: %s", d)
			}
		}
		if len(diags) == 0 || !s.AllowSecretsInImage {
			t.Errorf("with allow_secrets_in_image: no warning for %s", c.src)
		}
	}
	// Binaries are not scanned (as bakery audit skips them): random bytes
	// that happen to spell a key are not a configuration file.
	bin := "\x00\x01ELF" + strings.Repeat("x", 9000) + "-----BEGIN OPENSSH PRIVATE KEY-----\n"
	if _, diags := parseIn(t, baseLine+"file \"/usr/bin/tool\" {\n  source = \"tool\"\n}", map[string]string{"tool": bin}, Inputs{}); len(diags) != 0 {
		t.Errorf("binary source scanned: %v", diags)
	}
	if _, diags := parseIn(t, baseLine+"file \"/usr/bin/tool\" {\n  content_base64 = \""+base64.StdEncoding.EncodeToString([]byte(bin))+"\"\n}", nil, Inputs{}); len(diags) != 0 {
		t.Errorf("binary content_base64 scanned: %v", diags)
	}
	// A role_id is an identifier, not a credential.
	_, diags := parseIn(t, baseLine+`bundle "vault-agent" {
  version = "1.18.2"
  vault_addr = "https://vault:8200"
  role_id = "6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69"
}`, nil, Inputs{})
	if len(diags) != 0 {
		t.Errorf("role_id refused: %v", diags)
	}
}
