package bundle

import (
	"fmt"
	"strings"
)

// File locations shared by the configurations and the Vault Agent
// templates that fill them.
const (
	consulRunDir    = "/run/consul.d"
	consulGossipHCL = consulRunDir + "/gossip.hcl"
	consulACLHCL    = consulRunDir + "/acl.hcl"
	// consulAuthorizerHCL is a server's auto_config authorizer.
	consulAuthorizerHCL = consulRunDir + "/auto-config.hcl"
	// consulRegistrationHCL holds acl.tokens.config_file_service_registration:
	// the token Consul registers the services of its configuration files
	// (node_exporter's) with.
	consulRegistrationHCL = consulRunDir + "/registration.hcl"
	// Files that are not configuration go into a subdirectory: Consul
	// reads only *.hcl and *.json from a config dir, and warns on others.
	consulFilesDir = consulRunDir + "/files"
	consulIntroJWT = consulFilesDir + "/intro-token.jwt"
	consulCert     = consulFilesDir + "/agent.crt"
	consulKey      = consulFilesDir + "/agent.key"
	nomadRunDir    = "/run/nomad.d"
	nomadGossipHCL = nomadRunDir + "/gossip.hcl"
	// nomadConsulHCL is consul { token } for Nomad's Consul integration.
	nomadConsulHCL = nomadRunDir + "/consul.hcl"
	nomadCert      = nomadRunDir + "/tls/agent.crt"
	nomadKey       = nomadRunDir + "/tls/agent.key"
	vaultTokenSink = "/run/vault-agent/token"
	// prometheusConsulToken is read by Prometheus on every Consul request
	// (authorization.credentials_file), so a new token needs no reload.
	prometheusRunDir      = "/run/prometheus"
	prometheusConsulToken = prometheusRunDir + "/consul-token"
)

// kvToken renders the "token" field of a KV v2 secret.
func kvToken(path string) string {
	return fmt.Sprintf("{{ with secret %q }}{{ .Data.data.token }}{{ end }}", path)
}

// bindTemplate makes Consul and Nomad bind to the address of the default
// route's interface (go-sockaddr template), which works on a node with
// Docker bridges or several private addresses, where the default refuses
// to guess.
const bindTemplate = `{{ GetDefaultInterfaces | attr "address" }}`

// consulConfig renders /etc/consul.d/consul.hcl and lists the files Vault
// Agent must have rendered before consul may start.
func (p *Plan) consulConfig(s *Settings) ([]byte, []string, error) {
	f, b := newHCLFile()
	b.comment(fmt.Sprintf("Consul %s (%s), written by bakery. Secrets are not here: %s", s.Version, s.Role, secretsNote(s.Secrets)))
	b.str("datacenter", s.Datacenter)
	b.str("domain", s.Domain)
	b.str("data_dir", "/var/lib/consul")
	b.str("bind_addr", bindTemplate)
	b.str("client_addr", "127.0.0.1")
	b.str("log_level", "INFO")
	b.boolean("server", s.Role == "server")
	if s.Role == "server" {
		b.num("bootstrap_expect", int64(s.BootstrapExpect))
		b.block("ui_config").boolean("enabled", true)
	}
	if len(s.RetryJoin) > 0 && s.Secrets != SecretsAutoConfig || s.Role == "server" {
		if hasMDNS(s.RetryJoin) {
			b.comment("mDNS discovery only finds servers that announce _consul-server._tcp\n(for example with an avahi service file on each server).")
		}
		b.strs("retry_join", s.RetryJoin)
	}
	b.boolean("rejoin_after_leave", true)
	b.boolean("leave_on_terminate", s.Role == "client")

	var wait []string
	hasCert := false
	switch s.Secrets {
	case SecretsVaultAgent:
		if p.hasTemplate(TplConsulGossip) {
			wait = append(wait, consulGossipHCL)
			// The key comes from Vault at every boot; do not also keep a
			// copy in data_dir (serf/local.keyring).
			b.boolean("disable_keyring_file", true)
		}
		if p.hasTemplate(TplConsulToken) {
			wait = append(wait, consulACLHCL)
		}
		if p.hasTemplate(TplConsulTLS) {
			wait = append(wait, consulCert)
			hasCert = true
		}
	case SecretsAutoConfig:
		if s.Role == "client" {
			ac := b.block("auto_config")
			ac.boolean("enabled", true)
			ac.str("intro_token_file", consulIntroJWT)
			ac.strs("server_addresses", s.RetryJoin)
			wait = append(wait, consulIntroJWT)
			hasCert = true // auto_config delivers it
		} else {
			for _, t := range []struct{ tpl, file string }{{TplConsulGossip, consulGossipHCL}, {TplConsulToken, consulACLHCL}, {TplConsulTLS, consulCert}} {
				if p.hasTemplate(t.tpl) {
					wait = append(wait, t.file)
					hasCert = hasCert || t.tpl == TplConsulTLS
				}
				if t.tpl == TplConsulGossip && p.hasTemplate(t.tpl) {
					b.boolean("disable_keyring_file", true)
				}
			}
			// The authorizer comes from Vault Agent too (a template
			// without secrets): Consul fetches the JWKS URL when it loads
			// its configuration and refuses to start while Vault is
			// unreachable, so the block appears once Vault answers.
			wait = append(wait, consulAuthorizerHCL)
		}
	}
	if s.Secrets != SecretsNone && p.hasTemplate(TplConsulRegistration) {
		wait = append(wait, consulRegistrationHCL)
	}
	if hasMDNS(s.RetryJoin) && s.Role == "server" {
		// Servers announce themselves on the link; see docs/cluster.md.
		b.comment("This server must be announced by mDNS (service consul-server) for clients using provider=mdns.")
	}
	if p.hasTemplate(TplConsulToken) || s.Secrets == SecretsAutoConfig {
		acl := b.block("acl")
		acl.boolean("enabled", true)
		acl.str("default_policy", "deny")
		acl.str("down_policy", "extend-cache")
		acl.boolean("enable_token_persistence", false)
	}
	if len(s.CACert) > 0 {
		tls := b.block("tls")
		d := tls.block("defaults")
		d.str("ca_file", "/etc/consul.d/tls/ca.pem")
		if hasCert && s.Secrets != SecretsAutoConfig || s.Secrets == SecretsAutoConfig && s.Role == "server" && hasCert {
			d.str("cert_file", consulCert)
			d.str("key_file", consulKey)
		}
		// Servers always check client certificates; a client can only
		// when it has a certificate itself.
		d.boolean("verify_incoming", s.Role == "server" || hasCert && s.Secrets != SecretsAutoConfig)
		d.boolean("verify_outgoing", true)
		tls.block("internal_rpc").boolean("verify_server_hostname", true)
		if s.Role == "server" && !hasCert {
			return nil, nil, fmt.Errorf("bundle %q: a server with ca_file needs its own certificate: set consul_pki_path on the vault-agent bundle", s.Name)
		}
		if hasCert {
			ports := b.block("ports")
			ports.num("https", 8501)
			ports.num("grpc_tls", 8503)
		}
	}
	return hclBytes(f), wait, nil
}

func hasMDNS(join []string) bool {
	for _, j := range join {
		if strings.Contains(j, "provider=mdns") {
			return true
		}
	}
	return false
}

func secretsNote(mode string) string {
	switch mode {
	case SecretsVaultAgent:
		return "Vault Agent renders the gossip key, TLS certificate and ACL tokens into /run/consul.d."
	case SecretsAutoConfig:
		return "auto_config exchanges a JWT that Vault Agent renders for them."
	}
	return "none are configured (no gossip encryption, no ACLs)."
}

// nomadConfig renders /etc/nomad.d/nomad.hcl.
func (p *Plan) nomadConfig(s *Settings) ([]byte, []string, error) {
	f, b := newHCLFile()
	b.comment(fmt.Sprintf("Nomad %s (%s), written by bakery.", s.Version, s.Role))
	b.str("datacenter", s.Datacenter)
	b.str("region", s.Region)
	b.str("data_dir", "/var/lib/nomad")
	b.str("bind_addr", "0.0.0.0")
	adv := b.block("advertise")
	for _, k := range []string{"http", "rpc", "serf"} {
		adv.str(k, bindTemplate)
	}
	var wait []string
	if s.Role == "server" {
		srv := b.block("server")
		srv.boolean("enabled", true)
		srv.num("bootstrap_expect", int64(s.BootstrapExpect))
		if len(s.RetryJoin) > 0 {
			srv.block("server_join").strs("retry_join", s.RetryJoin)
		}
		if p.hasTemplate(TplNomadGossip) {
			wait = append(wait, nomadGossipHCL)
		}
	} else {
		cl := b.block("client")
		cl.boolean("enabled", true)
		if len(s.RetryJoin) > 0 {
			cl.block("server_join").strs("retry_join", s.RetryJoin)
		}
	}
	if p.Has("consul") {
		c := b.block("consul")
		c.str("address", "127.0.0.1:8500")
		c.boolean("server_auto_join", true)
		c.boolean("client_auto_join", true)
		c.boolean("auto_advertise", true)
		if p.hasTemplate(TplNomadConsulToken) {
			c.comment("token: Consul's ACLs deny by default; Vault Agent renders Nomad's token into " + nomadConsulHCL + ".")
			wait = append(wait, nomadConsulHCL)
		}
	}
	if len(s.CACert) > 0 {
		tls := b.block("tls")
		tls.boolean("http", true)
		tls.boolean("rpc", true)
		tls.str("ca_file", "/etc/nomad.d/tls/ca.pem")
		if p.hasTemplate(TplNomadTLS) {
			tls.str("cert_file", nomadCert)
			tls.str("key_file", nomadKey)
			wait = append(wait, nomadCert)
		} else {
			return nil, nil, fmt.Errorf("bundle %q: TLS with ca_file needs a certificate: set nomad_pki_path on the vault-agent bundle", s.Name)
		}
		tls.boolean("verify_server_hostname", true)
		tls.boolean("verify_https_client", false)
	}
	return hclBytes(f), wait, nil
}

// vaultAgentConfig renders /etc/vault-agent.d/agent.hcl.
func (p *Plan) vaultAgentConfig(s *Settings) ([]byte, error) {
	f, b := newHCLFile()
	b.comment(fmt.Sprintf("Vault Agent %s, written by bakery. It logs in with AppRole: the role_id is on the\nimage (an identifier), the secret-id arrives response-wrapped, once, per card or per boot.", s.Version))
	b.str("pid_file", "/run/vault-agent/agent.pid")
	v := b.block("vault")
	v.str("address", s.VaultAddr)
	if len(s.CACert) > 0 {
		v.str("ca_cert", "/etc/vault-agent.d/ca.pem")
	}
	aa := b.block("auto_auth")
	m := aa.block("method", "approle")
	m.str("mount_path", "auth/approle")
	m.object("config", map[string]any{
		"role_id_file_path":                   "/etc/vault-agent.d/role-id",
		"secret_id_file_path":                 s.SecretIDFile,
		"secret_id_response_wrapping_path":    "auth/approle/role/" + s.AppRole + "/secret-id",
		"remove_secret_id_file_after_reading": true,
	})
	sink := aa.block("sink", "file")
	sink.object("config", map[string]any{"path": vaultTokenSink, "mode": 0o600})
	tc := b.block("template_config")
	tc.str("static_secret_render_interval", "10m")
	tc.boolean("exit_on_retry_failure", true)

	restart := func(unit string) []string { return []string{"systemctl", "--no-block", "restart", unit} }
	tpl := func(dest, contents, perms string, cmd []string) {
		b.newline()
		t := b.block("template")
		t.str("destination", dest)
		t.heredoc("contents", contents)
		t.str("perms", perms)
		if len(cmd) > 0 {
			t.block("exec").strs("command", cmd)
		}
	}
	c := p.Get("consul")
	n := p.Get("nomad")
	for _, name := range p.templatesFor() {
		switch name {
		case TplConsulGossip:
			tpl(consulGossipHCL, fmt.Sprintf("{{ with secret %q }}encrypt = %q{{ end }}", s.GossipKeySecret, "{{ .Data.data.key }}"), "0640", restart("consul.service"))
		case TplConsulToken:
			tpl(consulACLHCL, fmt.Sprintf("acl {\n  tokens {\n    agent = \"%s\"\n  }\n}", kvToken(s.AgentTokenSecret)), "0640", restart("consul.service"))
		case TplConsulTLS:
			if s.ConsulPKIPath == "" {
				return nil, fmt.Errorf("bundle %q: template %q needs consul_pki_path", s.Name, name)
			}
			role, dc, domain := "client", "dc1", "consul"
			if c != nil {
				role, dc, domain = c.Role, c.Datacenter, c.Domain
			}
			tpl(consulCert, pkiTemplate(s.ConsulPKIPath, fmt.Sprintf("%s.%s.%s", role, dc, domain), consulKey), "0640", restart("consul.service"))
		case TplConsulAuthorizer:
			if c == nil {
				return nil, fmt.Errorf("bundle %q: template %q needs a consul bundle", s.Name, name)
			}
			tpl(consulAuthorizerHCL, consulAuthorizer(c, s.VaultAddr), "0640", restart("consul.service"))
		case TplConsulRegistration:
			if c == nil || c.Secrets == SecretsNone {
				return nil, fmt.Errorf("bundle %q: template %q needs a consul bundle with secrets %q or %q", s.Name, name, SecretsVaultAgent, SecretsAutoConfig)
			}
			tpl(consulRegistrationHCL, fmt.Sprintf("acl {\n  tokens {\n    config_file_service_registration = \"%s\"\n  }\n}", kvToken(s.RegistrationTokenSecret)), "0640", restart("consul.service"))
		case TplNomadConsulToken:
			if n == nil || c == nil {
				return nil, fmt.Errorf("bundle %q: template %q needs the nomad and consul bundles", s.Name, name)
			}
			tpl(nomadConsulHCL, fmt.Sprintf("consul {\n  token = \"%s\"\n}", kvToken(s.NomadConsulTokenSecret)), "0640", restart("nomad.service"))
		case TplPrometheusConsulToken:
			if !p.Has("prometheus") || c == nil {
				return nil, fmt.Errorf("bundle %q: template %q needs the prometheus and consul bundles", s.Name, name)
			}
			// No exec: Prometheus reads the file at every request.
			tpl(prometheusConsulToken, kvToken(s.PrometheusConsulTokenSecret), "0640", nil)
		case TplConsulIntro:
			tpl(consulIntroJWT, fmt.Sprintf("{{ with secret %q }}{{ .Data.token }}{{ end }}", "identity/oidc/token/"+s.AutoConfigRole), "0640", restart("consul.service"))
		case TplNomadGossip:
			tpl(nomadGossipHCL, fmt.Sprintf("server {\n  encrypt = \"{{ with secret %q }}{{ .Data.data.key }}{{ end }}\"\n}", s.NomadGossipSecret), "0640", restart("nomad.service"))
		case TplNomadTLS:
			if s.NomadPKIPath == "" {
				return nil, fmt.Errorf("bundle %q: template %q needs nomad_pki_path", s.Name, name)
			}
			role, region := "client", "global"
			if n != nil {
				role, region = n.Role, n.Region
			}
			tpl(nomadCert, pkiTemplate(s.NomadPKIPath, fmt.Sprintf("%s.%s.nomad", role, region), nomadKey), "0640", restart("nomad.service"))
		}
	}
	for _, t := range s.CustomTemplates {
		perms := t.Perms
		if perms == "" {
			perms = "0640"
		}
		tpl(t.Destination, t.Contents, perms, t.Command)
	}
	return hclBytes(f), nil
}

// consulAuthorizer renders a server's auto_config authorization block:
// client intro JWTs are Vault identity tokens (identity/oidc/token/ROLE),
// checked against Vault's keys.
func consulAuthorizer(c *Settings, vaultAddr string) string {
	f, b := newHCLFile()
	b.comment("Rendered by Vault Agent (no secret): authorizes Consul auto_config intro tokens.")
	ac := b.block("auto_config")
	auth := ac.block("authorization")
	auth.boolean("enabled", true)
	st := auth.block("static")
	issuer := strings.TrimSuffix(vaultAddr, "/") + "/v1/identity/oidc"
	st.str("jwks_url", issuer+"/.well-known/keys")
	if len(c.CACert) > 0 {
		st.str("jwks_ca_cert", string(c.CACert))
	}
	st.str("bound_issuer", issuer)
	st.strs("bound_audiences", []string{"consul-cluster-" + c.Datacenter})
	st.object("claim_mappings", map[string]any{"/consul/hostname": "node_name"})
	st.strs("claim_assertions", []string{`value.node_name == "${node}"`})
	return string(hclBytes(f))
}

// pkiTemplate issues a certificate with pkiCert (which reuses a still
// valid certificate instead of issuing a new one on every restart) and
// writes the key beside it.
func pkiTemplate(path, cn, keyFile string) string {
	return fmt.Sprintf(`{{ with pkiCert %q %q "alt_names=localhost" "ip_sans=127.0.0.1" "ttl=72h" }}{{ .Cert }}{{ .CA }}{{ .Key | writeToFile %q "" "" "0640" }}{{ end }}`,
		path, "common_name="+cn, keyFile)
}

// consulTemplateConfig renders /etc/consul-template.d/consul-template.hcl.
func (p *Plan) consulTemplateConfig(s *Settings) []byte {
	f, b := newHCLFile()
	b.comment(fmt.Sprintf("consul-template %s, written by bakery. Add template blocks in more files here.", s.Version))
	b.str("log_level", "info")
	c := b.block("consul")
	c.str("address", "127.0.0.1:8500")
	b.newline()
	t := b.block("template")
	t.heredoc("contents", "{{ range services }}{{ .Name }}\n{{ end }}")
	t.str("destination", "/run/consul-template/services.txt")
	t.str("perms", "0644")
	return hclBytes(f)
}

// prometheusConfig renders /etc/prometheus/prometheus.yml. It is YAML,
// Prometheus' only format; every value is a fixed string or comes from a
// validated setting, and strings are quoted with %q (valid YAML double-
// quoted scalars for the ASCII we allow).
func (p *Plan) prometheusConfig(s *Settings) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# Prometheus %s, written by bakery.\n", s.Version)
	b.WriteString("global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n")
	b.WriteString("scrape_configs:\n")
	b.WriteString("  - job_name: \"prometheus\"\n    static_configs:\n      - targets: [\"localhost:9090\"]\n")
	if p.Has("consul") {
		b.WriteString("  - job_name: \"node\"\n    consul_sd_configs:\n      - server: \"127.0.0.1:8500\"\n        services: [\"node-exporter\"]\n")
		if p.hasTemplate(TplPrometheusConsulToken) {
			// Consul's ACLs deny by default. The token file (tmpfs, from
			// Vault Agent) goes in an Authorization: Bearer header; with
			// the datacenter given, discovery needs only node and service
			// read (no agent read for /v1/agent/self).
			fmt.Fprintf(&b, "        datacenter: %q\n", p.Get("consul").Datacenter)
			fmt.Fprintf(&b, "        authorization:\n          credentials_file: %q\n", prometheusConsulToken)
		}
		b.WriteString("    relabel_configs:\n      - source_labels: [\"__meta_consul_node\"]\n        target_label: \"instance\"\n")
	} else {
		b.WriteString("  - job_name: \"node\"\n    static_configs:\n      - targets: [\"localhost:9100\"]\n")
	}
	return []byte(b.String())
}
