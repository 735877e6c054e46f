package bundle_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	hcl1 "github.com/hashicorp/hcl"
	"go.yaml.in/yaml/v3"

	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/bundle/bundletest"
	"github.com/bakeryhq/bakery/internal/secretscan"
	"github.com/bakeryhq/bakery/internal/spec"
)

// layouts renders a plan and returns the files by path.
func layouts(t *testing.T, plan *bundle.Plan) (map[string][]byte, map[string]*bundle.Layout) {
	t.Helper()
	if err := plan.Normalize(); err != nil {
		t.Fatal(err)
	}
	ls, err := plan.Layouts(bundle.ImageLayoutOptions)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	byName := map[string]*bundle.Layout{}
	for _, l := range ls {
		byName[l.Product.Name] = l
		for _, e := range l.Entries {
			if e.Kind == bundle.KindFile {
				files[e.Path] = e.Content
			}
		}
	}
	return files, byName
}

// decode parses a rendered config as the agents do (HCL 1) and also as
// HCL 2 syntax.
func decode(t *testing.T, name string, src []byte) map[string]any {
	t.Helper()
	if err := bundle.CheckHCLSyntax(name, src); err != nil {
		t.Fatalf("%s is not HCL 2: %v\n%s", name, err, src)
	}
	var out map[string]any
	if err := hcl1.Unmarshal(src, &out); err != nil {
		t.Fatalf("%s is not HCL 1: %v\n%s", name, err, src)
	}
	return out
}

// first digs into HCL 1's decoded form, where blocks are lists of maps.
func first(v any, path ...string) any {
	for _, p := range path {
		switch x := v.(type) {
		case []map[string]any:
			if len(x) == 0 {
				return nil
			}
			v = x[0][p]
		case map[string]any:
			v = x[p]
		default:
			return nil
		}
	}
	if l, ok := v.([]map[string]any); ok && len(l) == 1 {
		return l[0]
	}
	return v
}

func TestConsulClientVaultAgentConfig(t *testing.T) {
	m := bundletest.NewMirror(t)
	files, ls := layouts(t, clusterPlan(m))
	c := decode(t, "consul.hcl", files["/etc/consul.d/consul.hcl"])
	if c["datacenter"] != "home" || c["server"] != false || c["data_dir"] != "/var/lib/consul" {
		t.Errorf("consul.hcl: %v", c)
	}
	if c["bind_addr"] != `{{ GetDefaultInterfaces | attr "address" }}` {
		t.Errorf("bind_addr = %q", c["bind_addr"])
	}
	if j := c["retry_join"].([]any); len(j) != 1 || j[0] != "provider=mdns service=consul-server" {
		t.Errorf("retry_join %v", j)
	}
	if first(c, "tls", "internal_rpc", "verify_server_hostname") != true || first(c, "tls", "defaults", "verify_outgoing") != true {
		t.Errorf("TLS does not verify servers: %v", c["tls"])
	}
	if first(c, "tls", "defaults", "cert_file") != "/run/consul.d/files/agent.crt" {
		t.Errorf("cert_file %v", first(c, "tls", "defaults", "cert_file"))
	}
	if _, ok := c["encrypt"]; ok {
		t.Error("the gossip key is in the image's consul.hcl")
	}
	unit := string(ls["consul"].Unit)
	for _, want := range []string{"After=network-online.target vault-agent.service", "Wants=vault-agent.service", "-config-dir=/run/consul.d",
		"NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=-/var/lib/consul", "Restart=on-failure", "LimitNOFILE=65536", "PrivateTmp=yes", "ProtectHome=yes"} {
		if !strings.Contains(unit, want) {
			t.Errorf("consul.service lacks %q", want)
		}
	}
}

func TestVaultAgentConfig(t *testing.T) {
	m := bundletest.NewMirror(t)
	files, ls := layouts(t, clusterPlan(m))
	src := files["/etc/vault-agent.d/agent.hcl"]
	a := decode(t, "agent.hcl", src)
	cfg := first(a, "auto_auth", "method", "approle", "config")
	conf, ok := cfg.(map[string]any)
	if !ok {
		t.Fatalf("auto_auth.method.approle.config: %#v", cfg)
	}
	for k, want := range map[string]any{
		"role_id_file_path":                   "/etc/vault-agent.d/role-id",
		"secret_id_file_path":                 "/boot/firmware/bakery/secret-id",
		"secret_id_response_wrapping_path":    "auth/approle/role/node/secret-id",
		"remove_secret_id_file_after_reading": true,
	} {
		if conf[k] != want {
			t.Errorf("%s = %#v, want %#v", k, conf[k], want)
		}
	}
	tpls := a["template"].([]map[string]any)
	if len(tpls) != 6 {
		t.Fatalf("%d templates, want gossip, agent token, TLS, registration token, Nomad's and Prometheus' Consul tokens", len(tpls))
	}
	if tpls[0]["destination"] != "/run/consul.d/gossip.hcl" || !strings.Contains(tpls[0]["contents"].(string), `{{ with secret "kv/data/cluster/consul-gossip" }}`) {
		t.Errorf("gossip template: %v", tpls[0])
	}
	if !strings.Contains(tpls[2]["contents"].(string), `pkiCert "pki_int/issue/consul" "common_name=client.home.consul"`) {
		t.Errorf("TLS template: %v", tpls[2]["contents"])
	}
	if first(tpls[0], "exec", "command") == nil {
		t.Errorf("no exec restarting consul: %v", tpls[0])
	}
	if string(files["/etc/vault-agent.d/role-id"]) != "6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69\n" {
		t.Error("role-id file")
	}
	unit := string(ls["vault-agent"].Unit)
	if !strings.Contains(unit, "Before=consul.service nomad.service") || !strings.Contains(unit, "-/boot/firmware/bakery") {
		t.Errorf("vault-agent.service:\n%s", unit)
	}
}

func TestNetbootSecretIDAndAutoConfig(t *testing.T) {
	m := bundletest.NewMirror(t)
	plan := &bundle.Plan{Netboot: true, Bundles: []bundle.Settings{
		{Name: "consul", Version: "1.20.1", Secrets: bundle.SecretsAutoConfig, RetryJoin: []string{"10.0.0.1", "10.0.0.2"}, CACert: []byte(testCA), Mirror: m.Template()},
		{Name: "vault-agent", Version: "1.18.2", VaultAddr: "https://vault:8200", RoleID: "r"},
	}}
	files, ls := layouts(t, plan)
	a := decode(t, "agent.hcl", files["/etc/vault-agent.d/agent.hcl"])
	conf := first(a, "auto_auth", "method", "approle", "config").(map[string]any)
	if conf["secret_id_file_path"] != "/run/bakery/secret-id" {
		t.Errorf("secret_id_file_path %v", conf["secret_id_file_path"])
	}
	tpls := a["template"].([]map[string]any)
	if len(tpls) != 1 || tpls[0]["destination"] != "/run/consul.d/files/intro-token.jwt" ||
		!strings.Contains(tpls[0]["contents"].(string), `identity/oidc/token/consul-auto-config`) {
		t.Fatalf("templates %v", tpls)
	}
	c := decode(t, "consul.hcl", files["/etc/consul.d/consul.hcl"])
	if first(c, "auto_config", "intro_token_file") != "/run/consul.d/files/intro-token.jwt" || first(c, "auto_config", "enabled") != true {
		t.Errorf("auto_config: %v", c["auto_config"])
	}
	if _, ok := c["retry_join"]; ok {
		t.Error("auto_config clients get the servers from auto_config, not retry_join")
	}
	if !strings.Contains(string(ls["vault-agent"].Unit), "After=network-online.target bakery-credential.service") {
		t.Errorf("vault-agent does not wait for the credential:\n%s", ls["vault-agent"].Unit)
	}
}

func TestServerAutoConfigAuthorizer(t *testing.T) {
	plan := &bundle.Plan{Bundles: []bundle.Settings{
		{Name: "consul", Version: "1.20.1", Role: "server", Secrets: bundle.SecretsAutoConfig, Datacenter: "home", RetryJoin: []string{"provider=mdns service=consul-server"}, CACert: []byte(testCA)},
		{Name: "vault-agent", Version: "1.18.2", VaultAddr: "https://vault:8200", RoleID: "r", ConsulPKIPath: "pki/issue/consul"},
	}}
	files, ls := layouts(t, plan)
	c := decode(t, "consul.hcl", files["/etc/consul.d/consul.hcl"])
	if c["bootstrap_expect"] != 3 {
		t.Errorf("bootstrap_expect %v", c["bootstrap_expect"])
	}
	if _, ok := c["auto_config"]; ok {
		t.Error("the authorizer is in the image's consul.hcl: Consul would fetch Vault's keys before Vault is reachable")
	}
	a := decode(t, "agent.hcl", files["/etc/vault-agent.d/agent.hcl"])
	var authz string
	for _, tpl := range a["template"].([]map[string]any) {
		if tpl["destination"] == "/run/consul.d/auto-config.hcl" {
			authz = tpl["contents"].(string)
		}
	}
	ac := decode(t, "auto-config.hcl", []byte(authz))
	st, _ := first(ac, "auto_config", "authorization", "static").(map[string]any)
	if st == nil || st["jwks_url"] != "https://vault:8200/v1/identity/oidc/.well-known/keys" || st["bound_issuer"] != "https://vault:8200/v1/identity/oidc" {
		t.Fatalf("authorizer: %v", ac)
	}
	// HCL 1 keeps "${node}" literal: Consul interpolates it.
	if a := st["claim_assertions"].([]any); a[0] != `value.node_name == "${node}"` {
		t.Errorf("claim_assertions %q", a[0])
	}
	if !strings.Contains(string(ls["consul"].Unit), "ExecStartPre=/usr/bin/test -s /run/consul.d/auto-config.hcl") {
		t.Errorf("consul.service does not wait for the authorizer:\n%s", ls["consul"].Unit)
	}
}

func TestNomadClientUnit(t *testing.T) {
	m := bundletest.NewMirror(t)
	files, ls := layouts(t, clusterPlan(m))
	n := decode(t, "nomad.hcl", files["/etc/nomad.d/nomad.hcl"])
	if first(n, "client", "enabled") != true || first(n, "consul", "address") != "127.0.0.1:8500" {
		t.Errorf("nomad.hcl: %v", n)
	}
	if j := first(n, "client", "server_join", "retry_join").([]any); len(j) != 2 {
		t.Errorf("server_join %v", j)
	}
	unit := string(ls["nomad"].Unit)
	if !strings.Contains(unit, "User=root") || strings.Contains(unit, "NoNewPrivileges") || !strings.Contains(unit, "After=network-online.target vault-agent.service consul.service") {
		t.Errorf("nomad.service:\n%s", unit)
	}
}

func TestPrometheusScrapesNodeExporterViaConsul(t *testing.T) {
	m := bundletest.NewMirror(t)
	files, _ := layouts(t, clusterPlan(m))
	p := string(files["/etc/prometheus/prometheus.yml"])
	if !strings.Contains(p, "consul_sd_configs:") || !strings.Contains(p, `services: ["node-exporter"]`) {
		t.Errorf("prometheus.yml:\n%s", p)
	}
	svc := decode(t, "node-exporter.hcl", files["/etc/consul.d/node-exporter.hcl"])
	if first(svc, "service", "name") != "node-exporter" {
		t.Errorf("service registration %v", svc)
	}
}

func TestNormalizeErrors(t *testing.T) {
	for _, c := range []struct {
		plan bundle.Plan
		want string
	}{
		{bundle.Plan{Bundles: []bundle.Settings{{Name: "consl", Version: "1.0.0"}}}, `unknown bundle "consl"`},
		{bundle.Plan{Bundles: []bundle.Settings{{Name: "consul", Version: "1.0.0", Role: "leader"}}}, `role: "leader" is not one of client, server`},
		{bundle.Plan{Bundles: []bundle.Settings{{Name: "consul", Version: "1.0.0", Secrets: "vault-agent"}}}, "needs a vault-agent bundle"},
		{bundle.Plan{Bundles: []bundle.Settings{{Name: "vault-agent", Version: "1.0.0", VaultAddr: "https://v"}}}, "role_id: required"},
		{bundle.Plan{Bundles: []bundle.Settings{{Name: "consul", Version: "1.0.0", BootstrapExpect: 3}}}, "only servers take bootstrap_expect"},
		{bundle.Plan{Bundles: []bundle.Settings{{Name: "consul", Version: "1.0"}}}, "not a release version"},
		{bundle.Plan{Bundles: []bundle.Settings{{Name: "node_exporter", Version: "1.0.0"}, {Name: "node_exporter", Version: "1.0.0"}}}, "given twice"},
	} {
		err := c.plan.Normalize()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want %q, got %v", c.want, err)
		}
	}
}

// templatesByDest returns agent.hcl's templates by destination.
func templatesByDest(t *testing.T, files map[string][]byte) map[string]map[string]any {
	t.Helper()
	a := decode(t, "agent.hcl", files["/etc/vault-agent.d/agent.hcl"])
	out := map[string]map[string]any{}
	tpls, _ := a["template"].([]map[string]any)
	for _, tpl := range tpls {
		out[tpl["destination"].(string)] = tpl
	}
	return out
}

// fakeSecretRE matches what a KV v2 token template renders.
var fakeSecretRE = regexp.MustCompile(`\{\{ with secret "[^"]+" \}\}\{\{ \.Data\.data\.token \}\}\{\{ end \}\}`)

// renderFake stands in for Vault Agent: every token becomes a UUID.
func renderFake(contents string) string {
	return fakeSecretRE.ReplaceAllString(contents, "9b2c8f3e-3a41-4c55-8a0e-7d6f5e4c3b2a")
}

// With Consul's ACLs on (default deny), Nomad, Prometheus and node_exporter's
// registration each get a token from Vault Agent into /run, and the
// image holds none.
func TestConsulACLTokensForNomadPrometheusAndRegistration(t *testing.T) {
	m := bundletest.NewMirror(t)
	files, ls := layouts(t, clusterPlan(m))
	tpls := templatesByDest(t, files)
	for dest, want := range map[string]struct {
		secret, restart string
	}{
		"/run/consul.d/registration.hcl": {"kv/data/cluster/consul-registration-token", "consul.service"},
		"/run/nomad.d/consul.hcl":        {"kv/data/cluster/nomad-consul-token", "nomad.service"},
		"/run/prometheus/consul-token":   {"kv/data/cluster/prometheus-consul-token", ""},
	} {
		tpl := tpls[dest]
		if tpl == nil {
			t.Errorf("no Vault Agent template renders %s", dest)
			continue
		}
		if c := tpl["contents"].(string); !strings.Contains(c, `{{ with secret "`+want.secret+`" }}{{ .Data.data.token }}{{ end }}`) {
			t.Errorf("%s: contents %q do not read %s", dest, c, want.secret)
		}
		if tpl["perms"] != "0640" {
			t.Errorf("%s: perms %v", dest, tpl["perms"])
		}
		cmd, _ := first(tpl, "exec", "command").([]any)
		switch {
		case want.restart == "" && cmd != nil:
			t.Errorf("%s: exec %v; Prometheus rereads the file by itself", dest, cmd)
		case want.restart != "" && (len(cmd) == 0 || cmd[len(cmd)-1] != want.restart):
			t.Errorf("%s: exec %v, want a restart of %s", dest, cmd, want.restart)
		}
	}
	// What Vault Agent renders loads as the agents read it.
	reg := decode(t, "registration.hcl", []byte(renderFake(tpls["/run/consul.d/registration.hcl"]["contents"].(string))))
	if first(reg, "acl", "tokens", "config_file_service_registration") != "9b2c8f3e-3a41-4c55-8a0e-7d6f5e4c3b2a" {
		t.Errorf("registration.hcl: %v", reg)
	}
	nc := decode(t, "consul.hcl", []byte(renderFake(tpls["/run/nomad.d/consul.hcl"]["contents"].(string))))
	if first(nc, "consul", "token") != "9b2c8f3e-3a41-4c55-8a0e-7d6f5e4c3b2a" {
		t.Errorf("nomad consul.hcl: %v", nc)
	}
	if got := renderFake(tpls["/run/prometheus/consul-token"]["contents"].(string)); strings.TrimSpace(got) != "9b2c8f3e-3a41-4c55-8a0e-7d6f5e4c3b2a" {
		t.Errorf("Prometheus' token file would hold %q", got)
	}

	// Units wait for their tokens and load them; tmpfiles make the dirs.
	for unit, want := range map[string][]string{
		"consul":      {"ExecStartPre=/usr/bin/test -s /run/consul.d/registration.hcl", "-config-dir=/run/consul.d"},
		"nomad":       {"ExecStartPre=/usr/bin/test -s /run/nomad.d/consul.hcl", "-config=/etc/nomad.d -config=/run/nomad.d", "After=network-online.target vault-agent.service consul.service"},
		"prometheus":  {"After=network-online.target vault-agent.service consul.service"},
		"vault-agent": {"-/run/prometheus"},
	} {
		for _, w := range want {
			if !strings.Contains(string(ls[unit].Unit), w) {
				t.Errorf("%s.service lacks %q:\n%s", unit, w, ls[unit].Unit)
			}
		}
	}
	if strings.Contains(string(ls["prometheus"].Unit), "ExecStartPre") {
		t.Error("prometheus.service waits for its Consul token; it should scrape itself meanwhile")
	}
	if !strings.Contains(string(ls["nomad"].Tmpfiles), "d /run/nomad.d 2750 root nomad -") {
		t.Errorf("nomad tmpfiles:\n%s", ls["nomad"].Tmpfiles)
	}
	if !strings.Contains(string(ls["prometheus"].Tmpfiles), "d /run/prometheus 2750 root prometheus -") {
		t.Errorf("prometheus tmpfiles:\n%s", ls["prometheus"].Tmpfiles)
	}

	// prometheus.yml: consul_sd_configs with the token file, as YAML.
	// Strict for consul_sd_configs (the fields of Prometheus'
	// consul_sd_config and its HTTP authorization); the rest is opaque.
	var prom struct {
		Global        any
		ScrapeConfigs []struct {
			JobName        string `yaml:"job_name"`
			StaticConfigs  any    `yaml:"static_configs"`
			RelabelConfigs any    `yaml:"relabel_configs"`
			Consul         []struct {
				Server, Datacenter string
				Services           []string
				Token              string
				Authorization      *struct {
					Type            string
					Credentials     string
					CredentialsFile string `yaml:"credentials_file"`
				}
			} `yaml:"consul_sd_configs"`
		} `yaml:"scrape_configs"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(files["/etc/prometheus/prometheus.yml"])))
	dec.KnownFields(true)
	if err := dec.Decode(&prom); err != nil {
		t.Fatalf("prometheus.yml: %v\n%s", err, files["/etc/prometheus/prometheus.yml"])
	}
	sd := prom.ScrapeConfigs[1].Consul
	if len(sd) != 1 || sd[0].Authorization == nil || sd[0].Authorization.CredentialsFile != "/run/prometheus/consul-token" ||
		sd[0].Authorization.Credentials != "" || sd[0].Token != "" || sd[0].Datacenter != "home" {
		t.Errorf("consul_sd_configs %+v", sd)
	}
	// node_exporter's registration stays on the image, without a token.
	if svc := decode(t, "node-exporter.hcl", files["/etc/consul.d/node-exporter.hcl"]); first(svc, "service", "token") != nil {
		t.Errorf("node-exporter.hcl holds a token: %v", svc)
	}

	// Nothing the image gets holds a token, key or secret.
	for _, l := range ls {
		texts := map[string][]byte{l.UnitPath: l.Unit, l.TmpfilesPath: l.Tmpfiles}
		for _, e := range l.Entries {
			if e.Kind == bundle.KindFile {
				texts[e.Path] = e.Content
			}
		}
		for p, b := range texts {
			if f := secretscan.Text(string(b)); len(f) > 0 {
				t.Errorf("%s holds %s", p, f[0].Describe())
			}
		}
	}
}

// An auto_config client gets its agent token from the servers, but Nomad,
// Prometheus and the registration still need theirs from Vault Agent.
func TestAutoConfigClientTokens(t *testing.T) {
	plan := &bundle.Plan{Bundles: []bundle.Settings{
		{Name: "consul", Version: "1.20.1", Secrets: bundle.SecretsAutoConfig, RetryJoin: []string{"10.0.0.1"}, CACert: []byte(testCA)},
		{Name: "vault-agent", Version: "1.18.2", VaultAddr: "https://vault:8200", RoleID: "r",
			NomadConsulTokenSecret: "kv/data/lab/nomad", RegistrationTokenSecret: "kv/data/lab/registration"},
		{Name: "nomad", Version: "1.9.3"},
		{Name: "node_exporter", Version: "1.8.2"},
	}}
	files, ls := layouts(t, plan)
	tpls := templatesByDest(t, files)
	var dests []string
	for d := range tpls {
		dests = append(dests, d)
	}
	slices.Sort(dests)
	if want := []string{"/run/consul.d/files/intro-token.jwt", "/run/consul.d/registration.hcl", "/run/nomad.d/consul.hcl"}; !slices.Equal(dests, want) {
		t.Errorf("templates %v, want %v", dests, want)
	}
	if c := tpls["/run/nomad.d/consul.hcl"]["contents"].(string); !strings.Contains(c, `"kv/data/lab/nomad"`) {
		t.Errorf("nomad_consul_token_secret not used: %s", c)
	}
	if c := tpls["/run/consul.d/registration.hcl"]["contents"].(string); !strings.Contains(c, `"kv/data/lab/registration"`) {
		t.Errorf("consul_registration_token_secret not used: %s", c)
	}
	unit := string(ls["consul"].Unit)
	for _, w := range []string{"test -s /run/consul.d/files/intro-token.jwt", "test -s /run/consul.d/registration.hcl"} {
		if !strings.Contains(unit, w) {
			t.Errorf("consul.service lacks %q", w)
		}
	}
	// Without TLS, Nomad's /run directory has no tls subdirectory.
	if tf := string(ls["nomad"].Tmpfiles); !strings.Contains(tf, "/run/nomad.d ") || strings.Contains(tf, "/run/nomad.d/tls") {
		t.Errorf("nomad tmpfiles:\n%s", tf)
	}
}

// Without Vault Agent Consul has no ACLs: nothing waits for a token.
func TestNoSecretsNoTokens(t *testing.T) {
	plan := &bundle.Plan{Bundles: []bundle.Settings{
		{Name: "consul", Version: "1.20.1"}, {Name: "nomad", Version: "1.9.3"},
		{Name: "prometheus", Version: "3.0.1"}, {Name: "node_exporter", Version: "1.8.2"},
	}}
	files, ls := layouts(t, plan)
	if c := decode(t, "consul.hcl", files["/etc/consul.d/consul.hcl"]); c["acl"] != nil {
		t.Errorf("ACLs without tokens: %v", c["acl"])
	}
	if p := string(files["/etc/prometheus/prometheus.yml"]); strings.Contains(p, "authorization") || !strings.Contains(p, "consul_sd_configs") {
		t.Errorf("prometheus.yml:\n%s", p)
	}
	for _, n := range []string{"consul", "nomad", "prometheus"} {
		if strings.Contains(string(ls[n].Unit), "ExecStartPre") || len(ls[n].Tmpfiles) > 0 {
			t.Errorf("%s waits for secrets nobody renders:\n%s%s", n, ls[n].Unit, ls[n].Tmpfiles)
		}
	}
}

func TestTokenTemplatesNeedTheirBundles(t *testing.T) {
	for tpl, want := range map[string]string{
		bundle.TplNomadConsulToken:      "needs the nomad and consul bundles",
		bundle.TplPrometheusConsulToken: "needs the prometheus and consul bundles",
		bundle.TplConsulRegistration:    "needs a consul bundle",
	} {
		plan := &bundle.Plan{Bundles: []bundle.Settings{
			{Name: "vault-agent", Version: "1.18.2", VaultAddr: "https://vault:8200", RoleID: "r", Templates: []string{tpl}},
		}}
		if err := plan.Normalize(); err != nil {
			t.Fatal(err)
		}
		if _, err := plan.Layouts(bundle.ImageLayoutOptions); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s alone: want %q, got %v", tpl, want, err)
		}
	}
}

func TestTokenSecretsFromSpec(t *testing.T) {
	s, err := bundle.FromSpec(&spec.Bundle{Name: "vault-agent", Version: "1.18.2",
		NomadConsulTokenSecret: "kv/data/a", PrometheusConsulTokenSecret: "kv/data/b", RegistrationTokenSecret: "kv/data/c"})
	if err != nil {
		t.Fatal(err)
	}
	if s.NomadConsulTokenSecret != "kv/data/a" || s.PrometheusConsulTokenSecret != "kv/data/b" || s.RegistrationTokenSecret != "kv/data/c" {
		t.Errorf("settings %+v", s)
	}
}
