// Package bundle installs cluster software (Consul, Nomad, Vault Agent,
// consul-template, Prometheus, node_exporter) from the vendors' official
// release archives into an image root or into packages:
//
//   - sources: the release archive, its SHA256SUMS (always verified) and,
//     for HashiCorp, the SHA256SUMS signature checked against HashiCorp's
//     embedded release key; archives are cached content-addressed;
//   - the architecture comes from the image (ELF header of /bin/sh) and
//     every binary is checked against it;
//   - the layout: binary in /usr/bin, system user and group, data
//     directories, a hardened systemd unit, configuration in /etc/NAME.d
//     rendered with hclwrite, for a zero-touch join in which no secret is
//     on the image (see docs/cluster.md).
package bundle

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/bakeryhq/bakery/internal/spec"
)

// Vendor names.
const (
	VendorHashiCorp  = "hashicorp"
	VendorPrometheus = "prometheus"
)

// Product describes one installable bundle.
type Product struct {
	// Name is the bundle's name in specs and packages ("vault-agent").
	Name string
	// Release is the upstream release name ("vault" for vault-agent).
	Release string
	// Binary is the executable in the archive and in /usr/bin.
	Binary string
	// Vendor is VendorHashiCorp or VendorPrometheus.
	Vendor string
	// User and Group own the data directory and run the service. Only
	// vault-agent runs as root (its templates restart consul and nomad);
	// a Nomad client also does, to run tasks.
	User, Group string
	// DataDir is the service's state directory ("" for none).
	DataDir string
	// ConfigDir holds the configuration.
	ConfigDir string
	// Unit is the systemd unit name.
	Unit string
	// Description is one line for the unit and packages.
	Description string
	// Homepage for packages.
	Homepage string
	// License is the upstream license (for package metadata).
	License string
	// Roles are the allowed values of Settings.Role ("" = no roles).
	Roles []string
}

var products = []Product{
	{Name: "consul", Release: "consul", Binary: "consul", Vendor: VendorHashiCorp, User: "consul", Group: "consul",
		DataDir: "/var/lib/consul", ConfigDir: "/etc/consul.d", Unit: "consul.service",
		Description: "Consul agent: service discovery and service mesh", Homepage: "https://www.consul.io/",
		License: "BUSL-1.1", Roles: []string{"client", "server"}},
	{Name: "nomad", Release: "nomad", Binary: "nomad", Vendor: VendorHashiCorp, User: "nomad", Group: "nomad",
		DataDir: "/var/lib/nomad", ConfigDir: "/etc/nomad.d", Unit: "nomad.service",
		Description: "Nomad agent: workload orchestrator", Homepage: "https://www.nomadproject.io/",
		License: "BUSL-1.1", Roles: []string{"client", "server"}},
	{Name: "vault-agent", Release: "vault", Binary: "vault", Vendor: VendorHashiCorp, User: "root", Group: "root",
		DataDir: "/var/lib/vault-agent", ConfigDir: "/etc/vault-agent.d", Unit: "vault-agent.service",
		Description: "Vault Agent: authenticates the node and renders its secrets into /run", Homepage: "https://www.vaultproject.io/",
		License: "BUSL-1.1"},
	{Name: "consul-template", Release: "consul-template", Binary: "consul-template", Vendor: VendorHashiCorp,
		User: "consul-template", Group: "consul-template", DataDir: "/var/lib/consul-template", ConfigDir: "/etc/consul-template.d",
		Unit: "consul-template.service", Description: "consul-template: renders files from Consul and Vault",
		Homepage: "https://github.com/hashicorp/consul-template", License: "MPL-2.0"},
	{Name: "prometheus", Release: "prometheus", Binary: "prometheus", Vendor: VendorPrometheus, User: "prometheus", Group: "prometheus",
		DataDir: "/var/lib/prometheus", ConfigDir: "/etc/prometheus", Unit: "prometheus.service",
		Description: "Prometheus monitoring server", Homepage: "https://prometheus.io/", License: "Apache-2.0"},
	{Name: "node_exporter", Release: "node_exporter", Binary: "node_exporter", Vendor: VendorPrometheus,
		User: "node_exporter", Group: "node_exporter", DataDir: "/var/lib/node_exporter", ConfigDir: "/etc/node_exporter",
		Unit: "node_exporter.service", Description: "Prometheus exporter for machine metrics",
		Homepage: "https://github.com/prometheus/node_exporter", License: "Apache-2.0"},
}

// Products lists every known bundle.
func Products() []Product { return slices.Clone(products) }

// Names lists the bundle names.
func Names() []string {
	var n []string
	for _, p := range products {
		n = append(n, p.Name)
	}
	return n
}

// Lookup finds a product by bundle name.
func Lookup(name string) (Product, error) {
	for _, p := range products {
		if p.Name == name {
			return p, nil
		}
	}
	return Product{}, fmt.Errorf("unknown bundle %q; known bundles are %s", name, strings.Join(Names(), ", "))
}

// Secret delivery modes for Consul.
const (
	// SecretsVaultAgent: Vault Agent templates render the gossip key, TLS
	// certificate and agent token into /run/consul.d.
	SecretsVaultAgent = "vault-agent"
	// SecretsAutoConfig: Consul auto_config fetches them from the servers
	// with a JWT intro token that Vault Agent renders.
	SecretsAutoConfig = "auto-config"
	// SecretsNone: nothing is delivered (a lab cluster without gossip
	// encryption or ACLs).
	SecretsNone = "none"
)

// Settings configure one bundle. Fields that do not apply to a product
// are ignored; Check reports the ones that are wrong.
type Settings struct {
	Name    string
	Version string

	// Role is "client" (default) or "server" for consul and nomad.
	Role string
	// Datacenter (consul, nomad) defaults to "dc1"; Region (nomad) to
	// "global".
	Datacenter string
	Region     string
	// RetryJoin is consul's retry_join (static addresses, DNS names, or
	// go-discover strings such as "provider=mdns service=consul-server")
	// and nomad's server_join.retry_join.
	RetryJoin []string
	// BootstrapExpect is the number of servers (servers only; default 3).
	BootstrapExpect int
	// CACert is the cluster CA certificate (PEM). It is public and goes on
	// the image; with it, TLS is on with verify_server_hostname.
	CACert []byte
	// Secrets is how consul gets its gossip key, TLS certificate and
	// agent token: SecretsVaultAgent (default when vault-agent is
	// bundled), SecretsAutoConfig or SecretsNone. On a server,
	// SecretsAutoConfig also makes it authorize clients' auto_config
	// requests (JWTs from Vault's identity/oidc), while its own secrets
	// come from Vault Agent.
	Secrets string
	// Domain is Consul's DNS domain (default "consul").
	Domain string

	// Vault Agent.
	VaultAddr string
	// RoleID is the AppRole role_id: an identifier, public.
	RoleID string
	// AppRole is the role name (default "node").
	AppRole string
	// SecretIDFile is where the wrapped secret-id lands: the boot
	// partition for flashed cards, /run/bakery/secret-id for netboot.
	SecretIDFile string
	// GossipKeySecret is the KV v2 path holding the gossip key in its
	// "key" field (default "kv/data/cluster/consul-gossip").
	GossipKeySecret string
	// AgentTokenSecret is the KV v2 path holding consul's agent token in
	// its "token" field (default "kv/data/cluster/consul-agent-token").
	AgentTokenSecret string
	// NomadConsulTokenSecret, PrometheusConsulTokenSecret and
	// RegistrationTokenSecret are the KV v2 paths (field "token") of the
	// Consul ACL tokens of Nomad's Consul integration, of Prometheus'
	// consul_sd_configs and of the services Consul registers from its
	// configuration files (node_exporter); defaults
	// "kv/data/cluster/nomad-consul-token",
	// "kv/data/cluster/prometheus-consul-token" and
	// "kv/data/cluster/consul-registration-token". They are rendered only
	// when Consul's ACLs are on (secrets "vault-agent" or "auto-config").
	NomadConsulTokenSecret      string
	PrometheusConsulTokenSecret string
	RegistrationTokenSecret     string
	// ConsulPKIPath and NomadPKIPath are PKI issue endpoints for the
	// agents' certificates ("pki_int/issue/consul"); empty = no TLS
	// certificate from Vault.
	ConsulPKIPath string
	NomadPKIPath  string
	// NomadGossipSecret is the KV v2 path of Nomad's server gossip key
	// (field "key"; servers only).
	NomadGossipSecret string
	// AutoConfigRole is the identity token role whose JWT Consul
	// auto_config presents (identity/oidc/token/ROLE; default "consul-auto-config").
	AutoConfigRole string
	// Templates names the built-in Vault Agent templates to render
	// ("consul-gossip", "consul-tls", "consul-token", "consul-intro",
	// "consul-registration", "nomad-gossip", "nomad-tls",
	// "nomad-consul-token", "prometheus-consul-token"); empty means
	// derived from the other bundles and settings.
	Templates []string
	// CustomTemplates are extra Vault Agent templates.
	CustomTemplates []Template

	// Mirror is a URL template for air-gapped sites and tests, with
	// {name}, {version}, {os}, {arch} and {file}.
	Mirror string
	// PGPKey is an armored public key replacing HashiCorp's embedded
	// release key (pgp_key_file).
	PGPKey []byte
	// ExtraConfig is appended verbatim as NAME.d/extra.hcl (validated as
	// HCL syntax).
	ExtraConfig string
}

// Template is a Vault Agent template.
type Template struct {
	Destination string
	Contents    string
	Perms       string
	// Command runs after each render (exec { command = [...] }).
	Command []string
}

// Built-in template names.
const (
	TplConsulGossip = "consul-gossip"
	TplConsulTLS    = "consul-tls"
	TplConsulToken  = "consul-token"
	TplConsulIntro  = "consul-intro"
	// TplConsulAuthorizer is a server's auto_config authorizer block.
	TplConsulAuthorizer = "consul-authorizer"
	TplNomadGossip      = "nomad-gossip"
	TplNomadTLS         = "nomad-tls"
	// TplConsulRegistration is the token Consul registers the services
	// of its configuration files with (node_exporter's).
	TplConsulRegistration = "consul-registration"
	// TplNomadConsulToken is Nomad's token for its Consul integration.
	TplNomadConsulToken = "nomad-consul-token"
	// TplPrometheusConsulToken is Prometheus' token for consul_sd_configs.
	TplPrometheusConsulToken = "prometheus-consul-token"
)

// builtinTemplates are the names a spec may list (spec checks them too).
var builtinTemplates = spec.BundleTemplates

// Plan is the set of bundles one image (or package) gets. Rendering a
// bundle's configuration depends on the others: consul gets its secrets
// from vault-agent when that is bundled, nomad talks to a local consul,
// units are ordered vault-agent -> consul -> nomad.
type Plan struct {
	Bundles []Settings
	// BootDir is where the boot partition is mounted in the image
	// ("/boot/firmware" on current Raspberry Pi OS, "/boot" before); it
	// decides the default SecretIDFile. Empty means "/boot/firmware".
	BootDir string
	// Netboot puts the secret-id into /run/bakery (fetched at boot by
	// bakery-credential.service) instead of the boot partition.
	Netboot bool
}

// Has reports whether the plan bundles name.
func (p *Plan) Has(name string) bool { return p.Get(name) != nil }

// Get returns the settings of bundle name, or nil.
func (p *Plan) Get(name string) *Settings {
	for i := range p.Bundles {
		if p.Bundles[i].Name == name {
			return &p.Bundles[i]
		}
	}
	return nil
}

// order is the start order; it is also the install order.
var order = map[string]int{"vault-agent": 0, "consul": 1, "consul-template": 2, "nomad": 3, "node_exporter": 4, "prometheus": 5}

// Normalize fills defaults, sorts the bundles into start order and checks
// every setting. Errors name the bundle and the setting.
func (p *Plan) Normalize() error {
	seen := map[string]bool{}
	for i := range p.Bundles {
		s := &p.Bundles[i]
		if seen[s.Name] {
			return fmt.Errorf("bundle %q is given twice", s.Name)
		}
		seen[s.Name] = true
	}
	sort.SliceStable(p.Bundles, func(i, j int) bool { return order[p.Bundles[i].Name] < order[p.Bundles[j].Name] })
	for i := range p.Bundles {
		if err := p.normalize(&p.Bundles[i]); err != nil {
			return err
		}
	}
	return nil
}

func (p *Plan) bootDir() string {
	if p.BootDir == "" {
		return "/boot/firmware"
	}
	return p.BootDir
}

// DefaultSecretIDFile is where the wrapped secret-id is expected.
func (p *Plan) DefaultSecretIDFile() string {
	if p.Netboot {
		return NetbootSecretIDFile
	}
	return strings.TrimSuffix(p.bootDir(), "/") + "/" + BootSecretIDPath[1:]
}

// BootSecretIDPath is the wrapped secret-id's path inside the boot
// partition's filesystem, where bakery flash writes it per card.
const BootSecretIDPath = "/bakery/secret-id"

// NetbootSecretIDFile is where bakery-credential.service puts the wrapped
// secret-id of a netbooted node (tmpfs).
const NetbootSecretIDFile = "/run/bakery/secret-id"

func (p *Plan) normalize(s *Settings) error {
	prod, err := Lookup(s.Name)
	if err != nil {
		return err
	}
	bad := func(field, format string, args ...any) error {
		return &SettingError{Bundle: s.Name, Field: field, Msg: fmt.Sprintf(format, args...)}
	}
	if err := checkVersion(s.Version); err != nil {
		return bad("version", "%v", err)
	}
	if len(prod.Roles) > 0 {
		if s.Role == "" {
			s.Role = "client"
		}
		if !slices.Contains(prod.Roles, s.Role) {
			return bad("role", "%q is not one of %s", s.Role, strings.Join(prod.Roles, ", "))
		}
	} else if s.Role != "" {
		return bad("role", "%s has no roles", s.Name)
	}
	if s.Datacenter == "" {
		s.Datacenter = "dc1"
	}
	if !spec.ValidBundleIdent(s.Datacenter) {
		return bad("datacenter", "%q: use letters, digits, '-' and '_'", s.Datacenter)
	}
	if s.Region == "" {
		s.Region = "global"
	}
	if s.Domain == "" {
		s.Domain = "consul"
	}
	if s.Role == "server" && s.BootstrapExpect == 0 {
		s.BootstrapExpect = 3
	}
	if s.BootstrapExpect < 0 || s.BootstrapExpect > 9 {
		return bad("bootstrap_expect", "%d: want 1 to 9 servers", s.BootstrapExpect)
	}
	if s.BootstrapExpect > 0 && s.Role != "server" {
		return bad("bootstrap_expect", "only servers take bootstrap_expect")
	}
	for i, j := range s.RetryJoin {
		if strings.TrimSpace(j) == "" || strings.ContainsAny(j, "\"\n") {
			return bad(fmt.Sprintf("retry_join[%d]", i), "%q is not an address, DNS name or go-discover string", j)
		}
	}
	if len(s.CACert) > 0 && !strings.Contains(string(s.CACert), "-----BEGIN CERTIFICATE-----") {
		return bad("ca_file", "not a PEM certificate")
	}
	switch s.Name {
	case "consul":
		if s.Secrets == "" {
			s.Secrets = SecretsNone
			if p.Has("vault-agent") {
				s.Secrets = SecretsVaultAgent
			}
		}
		switch s.Secrets {
		case SecretsVaultAgent, SecretsAutoConfig:
			if !p.Has("vault-agent") {
				return bad("secrets", "%q needs a vault-agent bundle to deliver them", s.Secrets)
			}
		case SecretsNone:
		default:
			return bad("secrets", "%q: want %q, %q or %q", s.Secrets, SecretsVaultAgent, SecretsAutoConfig, SecretsNone)
		}
		// On a server, auto-config means "authorize clients' auto_config";
		// the server's own secrets still come from Vault Agent.
		if s.Secrets == SecretsAutoConfig && len(s.CACert) == 0 {
			return bad("ca_file", "auto-config needs the cluster CA certificate to verify the servers")
		}
		if s.Secrets == SecretsAutoConfig && len(s.RetryJoin) == 0 {
			return bad("retry_join", "auto-config needs the server addresses")
		}
	case "vault-agent":
		if s.VaultAddr == "" {
			return bad("vault_addr", "required (https://vault.example:8200)")
		}
		if !strings.HasPrefix(s.VaultAddr, "https://") && !strings.HasPrefix(s.VaultAddr, "http://") {
			return bad("vault_addr", "%q: want an http(s) URL", s.VaultAddr)
		}
		if s.RoleID == "" {
			return bad("role_id", "required: the AppRole role_id of the nodes (public; read it with `vault read auth/approle/role/node/role-id`)")
		}
		if strings.ContainsAny(s.RoleID, " \n\"") {
			return bad("role_id", "must be a single word")
		}
		if s.AppRole == "" {
			s.AppRole = "node"
		}
		if !spec.ValidBundleIdent(s.AppRole) {
			return bad("approle_role", "%q is not a role name", s.AppRole)
		}
		if s.SecretIDFile == "" {
			s.SecretIDFile = p.DefaultSecretIDFile()
		}
		if !strings.HasPrefix(s.SecretIDFile, "/") {
			return bad("secret_id_file", "%q must be absolute", s.SecretIDFile)
		}
		if s.GossipKeySecret == "" {
			s.GossipKeySecret = "kv/data/cluster/consul-gossip"
		}
		if s.AgentTokenSecret == "" {
			s.AgentTokenSecret = "kv/data/cluster/consul-agent-token"
		}
		if s.AutoConfigRole == "" {
			s.AutoConfigRole = "consul-auto-config"
		}
		if s.NomadGossipSecret == "" {
			s.NomadGossipSecret = "kv/data/cluster/nomad-gossip"
		}
		if s.NomadConsulTokenSecret == "" {
			s.NomadConsulTokenSecret = "kv/data/cluster/nomad-consul-token"
		}
		if s.PrometheusConsulTokenSecret == "" {
			s.PrometheusConsulTokenSecret = "kv/data/cluster/prometheus-consul-token"
		}
		if s.RegistrationTokenSecret == "" {
			s.RegistrationTokenSecret = "kv/data/cluster/consul-registration-token"
		}
		for i, t := range s.Templates {
			if !slices.Contains(builtinTemplates, t) {
				return bad(fmt.Sprintf("templates[%d]", i), "%q: want one of %s", t, strings.Join(builtinTemplates, ", "))
			}
		}
		for i, t := range s.CustomTemplates {
			if !strings.HasPrefix(t.Destination, "/") {
				return bad(fmt.Sprintf("template[%d]", i), "destination %q must be absolute", t.Destination)
			}
			if t.Contents == "" {
				return bad(fmt.Sprintf("template[%d]", i), "contents is empty")
			}
		}
	}
	return nil
}

// SettingError is a bad setting of one bundle. Field is the spec
// attribute ("retry_join[1]"), so callers can point at it.
type SettingError struct {
	Bundle, Field, Msg string
}

func (e *SettingError) Error() string {
	return fmt.Sprintf("bundle %q: %s: %s", e.Bundle, e.Field, e.Msg)
}

func checkVersion(v string) error {
	if v == "" {
		return fmt.Errorf("required (e.g. \"1.20.1\")")
	}
	if strings.HasPrefix(v, "v") {
		return fmt.Errorf("%q: give the version without the leading v", v)
	}
	if !spec.ValidBundleVersion(v) {
		return fmt.Errorf("%q is not a release version such as 1.20.1", v)
	}
	return nil
}
