package bundle_test

import (
	"strings"
	"testing"

	hcl1 "github.com/hashicorp/hcl"

	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/bundle/bundletest"
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
	if len(tpls) != 3 {
		t.Fatalf("%d templates, want gossip, token and TLS", len(tpls))
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
