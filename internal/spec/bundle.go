package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"

	bfs "github.com/bakeryhq/bakery/internal/fs"
)

// Bundle installs cluster software from the vendor's verified release
// (see docs/cluster.md):
//
//	bundle "consul" {
//	  version    = "1.20.1"
//	  role       = "client"
//	  datacenter = "home"
//	  retry_join = ["provider=mdns service=consul-server"]
//	  ca_file    = "files/cluster-ca.pem"
//	}
//
// Settings that do not apply to a bundle are refused.
type Bundle struct {
	Block
	Name    string `hcl:"name,label" json:"name"`
	Version string `hcl:"version,required" json:"version"`

	Role            string   `hcl:"role" json:"role,omitempty"`
	Datacenter      string   `hcl:"datacenter" json:"datacenter,omitempty"`
	Region          string   `hcl:"region" json:"region,omitempty"`
	Domain          string   `hcl:"domain" json:"domain,omitempty"`
	RetryJoin       []string `hcl:"retry_join" json:"retry_join,omitempty"`
	Servers         []string `hcl:"servers" json:"servers,omitempty"`
	BootstrapExpect int      `hcl:"bootstrap_expect" json:"bootstrap_expect,omitempty"`
	// CAFile is the cluster CA certificate on the build machine (public);
	// Load makes it absolute.
	CAFile  string `hcl:"ca_file" json:"ca_file,omitempty"`
	Secrets string `hcl:"secrets" json:"secrets,omitempty"`

	VaultAddr         string     `hcl:"vault_addr" json:"vault_addr,omitempty"`
	RoleID            string     `hcl:"role_id" json:"role_id,omitempty"`
	AppRole           string     `hcl:"approle_role" json:"approle_role,omitempty"`
	SecretIDFile      string     `hcl:"secret_id_file" json:"secret_id_file,omitempty"`
	GossipKeySecret   string     `hcl:"gossip_key_secret" json:"gossip_key_secret,omitempty"`
	AgentTokenSecret  string     `hcl:"agent_token_secret" json:"agent_token_secret,omitempty"`
	ConsulPKIPath     string     `hcl:"consul_pki_path" json:"consul_pki_path,omitempty"`
	NomadPKIPath      string     `hcl:"nomad_pki_path" json:"nomad_pki_path,omitempty"`
	NomadGossipSecret string     `hcl:"nomad_gossip_secret" json:"nomad_gossip_secret,omitempty"`
	AutoConfigRole    string     `hcl:"auto_config_role" json:"auto_config_role,omitempty"`
	Templates         []string   `hcl:"templates" json:"templates,omitempty"`
	Template          []Template `hcl:"template,block,unique" json:"template,omitempty"`

	// Consul ACL tokens of Nomad, Prometheus and the services Consul
	// registers from its configuration files: KV v2 paths, not tokens.
	NomadConsulTokenSecret      string `hcl:"nomad_consul_token_secret" json:"nomad_consul_token_secret,omitempty"`
	PrometheusConsulTokenSecret string `hcl:"prometheus_consul_token_secret" json:"prometheus_consul_token_secret,omitempty"`
	RegistrationTokenSecret     string `hcl:"consul_registration_token_secret" json:"consul_registration_token_secret,omitempty"`

	// Mirror is a URL template ({name}, {version}, {os}, {arch}, {file}).
	Mirror string `hcl:"mirror" json:"mirror,omitempty"`
	// PGPKeyFile replaces HashiCorp's embedded release key (armored).
	PGPKeyFile  string `hcl:"pgp_key_file" json:"pgp_key_file,omitempty"`
	ExtraConfig string `hcl:"extra_config" json:"extra_config,omitempty"`
}

// Template is a Vault Agent template of a vault-agent bundle:
//
//	template "/run/app/db.env" {
//	  contents = "{{ with secret \"db/creds/app\" }}...{{ end }}"
//	  perms    = "0640"
//	  command  = ["systemctl", "restart", "app"]
//	}
type Template struct {
	Block
	Destination string   `hcl:"destination,label" json:"destination"`
	Contents    string   `hcl:"contents,required" json:"contents"`
	Perms       string   `hcl:"perms" json:"perms,omitempty"`
	Command     []string `hcl:"command" json:"command,omitempty"`
}

// BundleNames are the bundles bakery knows (internal/bundle has the
// details).
var BundleNames = []string{"consul", "nomad", "vault-agent", "consul-template", "prometheus", "node_exporter"}

// BundleTemplates are the vault-agent templates bakery renders
// (internal/bundle has their content).
var BundleTemplates = []string{"consul-gossip", "consul-tls", "consul-token", "consul-intro", "consul-authorizer", "nomad-gossip", "nomad-tls",
	"consul-registration", "nomad-consul-token", "prometheus-consul-token"}

// ValidBundleVersion reports whether v is a release version (1.20.1,
// 1.9.0-beta1).
func ValidBundleVersion(v string) bool { return bundleVersionRE.MatchString(v) }

// ValidBundleIdent reports whether v may name a datacenter, region or
// AppRole role.
func ValidBundleIdent(v string) bool { return bundleIdentRE.MatchString(v) }

var (
	bundleVersionRE = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$`)
	bundleIdentRE   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	// Settings each bundle accepts beyond version, mirror, pgp_key_file
	// and extra_config.
	bundleAttrs = map[string][]string{
		"consul":          {"role", "datacenter", "domain", "retry_join", "bootstrap_expect", "ca_file", "secrets"},
		"nomad":           {"role", "datacenter", "region", "retry_join", "servers", "bootstrap_expect", "ca_file"},
		"vault-agent":     {"vault_addr", "role_id", "approle_role", "secret_id_file", "ca_file", "gossip_key_secret", "agent_token_secret", "consul_pki_path", "nomad_pki_path", "nomad_gossip_secret", "auto_config_role", "templates", "template", "nomad_consul_token_secret", "prometheus_consul_token_secret", "consul_registration_token_secret"},
		"consul-template": {},
		"prometheus":      {},
		"node_exporter":   {},
	}
	bundleCommon = []string{"version", "mirror", "pgp_key_file", "extra_config"}
)

func (b *Bundle) check(c *checks) {
	blk := &b.Block
	allowed, ok := bundleAttrs[b.Name]
	if !ok {
		msg := fmt.Sprintf("unknown bundle %q; bakery bundles %s", b.Name, strings.Join(BundleNames, ", "))
		if s := suggest(b.Name, BundleNames); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		c.errorf(blk, "", "%s", msg)
		return
	}
	for attr := range blk.Ranges {
		if strings.Contains(attr, "[") || slices.Contains(bundleCommon, attr) || slices.Contains(allowed, attr) {
			continue
		}
		c.errorf(blk, attr, "%s does not apply to bundle %q", attr, b.Name)
	}
	if len(b.Template) > 0 && b.Name != "vault-agent" {
		c.errorf(&b.Template[0].Block, "", "template blocks belong in the vault-agent bundle")
	}
	if blk.Known("version") {
		switch {
		case strings.HasPrefix(b.Version, "v"):
			c.errorf(blk, "version", "version %q: give the release version without the leading v", b.Version)
		case !bundleVersionRE.MatchString(b.Version):
			c.errorf(blk, "version", "version %q is not a release version such as 1.20.1", b.Version)
		}
	}
	if blk.Known("role") {
		checkEnum(c, blk, "role", b.Role, "client", "server")
	}
	if blk.Known("secrets") {
		checkEnum(c, blk, "secrets", b.Secrets, "vault-agent", "auto-config", "none")
	}
	for _, attr := range []string{"datacenter", "region", "approle_role", "auto_config_role"} {
		if v := b.str(attr); blk.Known(attr) && !bundleIdentRE.MatchString(v) {
			c.errorf(blk, attr, "%s %q: use letters, digits, '-' and '_'", attr, v)
		}
	}
	if blk.Known("bootstrap_expect") {
		switch {
		case b.BootstrapExpect < 1 || b.BootstrapExpect > 9:
			c.errorf(blk, "bootstrap_expect", "bootstrap_expect = %d: want 1 to 9 (an odd number: 3 or 5)", b.BootstrapExpect)
		case b.Role != "server":
			c.errorf(blk, "bootstrap_expect", `bootstrap_expect is for servers; set role = "server"`)
		}
	}
	for _, attr := range []string{"retry_join", "servers"} {
		for i, j := range b.list(attr) {
			if strings.TrimSpace(j) == "" || strings.ContainsAny(j, "\"\n") {
				c.errorf(blk, elemKey(attr, i), "%q is not an address, DNS name or go-discover string", j)
			}
		}
	}
	if blk.Known("vault_addr") && !strings.HasPrefix(b.VaultAddr, "https://") && !strings.HasPrefix(b.VaultAddr, "http://") {
		c.errorf(blk, "vault_addr", "vault_addr %q: want an https:// URL", b.VaultAddr)
	}
	if b.Name == "vault-agent" {
		if !blk.IsSet("vault_addr") {
			c.errorf(blk, "", "bundle \"vault-agent\" needs vault_addr")
		}
		if !blk.IsSet("role_id") {
			c.errorf(blk, "", "bundle \"vault-agent\" needs role_id (the AppRole role_id: an identifier, safe on the image)")
		}
	}
	if blk.Known("secret_id_file") {
		checkAbsPath(c, blk, "secret_id_file", b.SecretIDFile)
	}
	for i, t := range b.Templates {
		if !slices.Contains(BundleTemplates, t) {
			c.errorf(blk, elemKey("templates", i), "template %q: want one of %s", t, strings.Join(BundleTemplates, ", "))
		}
	}
	for _, attr := range []string{"ca_file", "pgp_key_file"} {
		if blk.Known(attr) {
			p := b.path(attr)
			full := resolvePath(c.dir(), *p)
			if fi, err := os.Stat(full); err != nil || !fi.Mode().IsRegular() {
				c.errorf(blk, attr, "%s %q is not a readable file (looked for %s)", attr, *p, full)
			}
			*p = full
		}
	}
	if blk.Known("mirror") && !strings.Contains(b.Mirror, "{file}") {
		c.errorf(blk, "mirror", "mirror %q must contain {file} (and usually {name} and {version})", b.Mirror)
	}
}

func (t *Template) check(c *checks) {
	clean, ok := cleanImagePath(c, &t.Block, t.Destination)
	if ok {
		t.Destination = clean
	}
	if t.Block.Known("perms") {
		if _, err := bfs.ParseMode(t.Perms); err != nil {
			c.errorf(&t.Block, "perms", "perms %q: want octal such as \"0640\"", t.Perms)
		}
	}
}

func (b *Bundle) str(attr string) string {
	switch attr {
	case "datacenter":
		return b.Datacenter
	case "region":
		return b.Region
	case "approle_role":
		return b.AppRole
	case "auto_config_role":
		return b.AutoConfigRole
	}
	return ""
}

func (b *Bundle) list(attr string) []string {
	if attr == "servers" {
		return b.Servers
	}
	return b.RetryJoin
}

func (b *Bundle) path(attr string) *string {
	if attr == "pgp_key_file" {
		return &b.PGPKeyFile
	}
	return &b.CAFile
}

// BundleConfig is a file of bundle blocks alone, as `bakery pkg --config`
// reads it: the same syntax and checks as in a build spec.
type BundleConfig struct {
	Block
	Bundles []Bundle `hcl:"bundle,block,unique" json:"bundles"`
}

// ParseBundleConfig reads a bundle configuration file. Relative paths
// (ca_file, pgp_key_file) resolve against the file's directory.
func ParseBundleConfig(filename string, src []byte) (*BundleConfig, hcl.Diagnostics) {
	cfg := &BundleConfig{}
	dir, _ := filepath.Abs(filepath.Dir(filename))
	d := &decoder{
		dir: dir, secrets: map[string]struct{}{}, vars: map[string]bool{}, locals: map[string]bool{},
		ctx: &hcl.EvalContext{
			Variables: map[string]cty.Value{"var": cty.EmptyObjectVal, "local": cty.EmptyObjectVal},
			Functions: functions(dir),
		},
	}
	file, diags := hclparse.NewParser().ParseHCL(src, filename)
	d.diags = append(d.diags, diags...)
	d.parseFailed = diags.HasErrors()
	if file != nil {
		cfg.DeclRange = hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos}
		d.decodeBody(file.Body, reflect.ValueOf(cfg).Elem())
	}
	return cfg, sortDiagnostics(d.diags)
}
