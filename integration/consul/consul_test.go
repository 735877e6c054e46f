// Package consul_test loads the Consul configuration bakery renders with
// Consul's own loader (agent/config), together with what Vault Agent
// renders into /run/consul.d at boot.
package consul_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/consul/agent/config"
	hcl1 "github.com/hashicorp/hcl"

	"github.com/bakeryhq/bakery/internal/bundle/bundletest"
)

const (
	gossipKey = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s="
	// What Vault Agent's token templates render, per KV path.
	agentToken        = "6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69"
	registrationToken = "0d5e3b7a-94c2-4f61-8e1d-2c3b4a5f6e70"
)

var kvTokenRE = regexp.MustCompile(`\{\{ with secret "([^"]+)" \}\}\{\{ \.Data\.data\.token \}\}\{\{ end \}\}`)

// runDir is /run/consul.d as the Vault Agent templates of agent.hcl
// render it: bakery's own templates, with tokens standing in for Vault's.
func runDir(t *testing.T, agentHCL string) string {
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "files"), 0o755)
	for p, c := range map[string]string{
		"gossip.hcl":            `encrypt = "` + gossipKey + `"`,
		"files/intro-token.jwt": "eyJhbGciOiJSUzI1NiJ9.e30.sig",
	} {
		os.WriteFile(filepath.Join(d, p), []byte(c), 0o640)
	}
	for _, name := range []string{"acl.hcl", "registration.hcl"} {
		c := templateContents(t, agentHCL, "/run/consul.d/"+name)
		if c == "" {
			continue
		}
		c = kvTokenRE.ReplaceAllStringFunc(c, func(m string) string {
			switch kvTokenRE.FindStringSubmatch(m)[1] {
			case "kv/data/cluster/consul-agent-token":
				return agentToken
			case "kv/data/cluster/consul-registration-token":
				return registrationToken
			}
			t.Fatalf("%s reads an unexpected secret: %s", name, m)
			return ""
		})
		os.WriteFile(filepath.Join(d, name), []byte(c), 0o640)
	}
	return d
}

// writeScenario renders a scenario of docs/cluster.md with node_exporter
// and Prometheus added, so that node_exporter's service registration in
// /etc/consul.d loads too.
func writeScenario(t *testing.T, scenario string) string {
	return bundletest.WriteScenario(t, scenario, bundletest.Monitoring()...)
}

func load(t *testing.T, scenario string, withRun bool) *config.RuntimeConfig {
	t.Helper()
	root := writeScenario(t, scenario)
	files := []string{filepath.Join(root, "etc/consul.d")}
	if withRun {
		run := runDir(t, filepath.Join(root, "etc/vault-agent.d/agent.hcl"))
		// A server's auto_config authorizer is a Vault Agent template:
		// take bakery's, pointed at a local JWKS instead of Vault.
		authz := templateContents(t, filepath.Join(root, "etc/vault-agent.d/agent.hcl"), "/run/consul.d/auto-config.hcl")
		if authz != "" {
			authz = strings.ReplaceAll(authz, "https://vault.home:8200", jwksServer(t))
			os.WriteFile(filepath.Join(run, "auto-config.hcl"), []byte(authz), 0o640)
		}
		files = append(files, run)
	}
	res, err := config.Load(config.LoadOpts{
		ConfigFiles: files,
		// The test machine has no default route for the go-sockaddr
		// template, and /var/lib/consul is not ours.
		HCL: []string{`bind_addr = "127.0.0.1"`, `data_dir = "` + t.TempDir() + `"`},
	})
	if err != nil {
		t.Fatalf("consul rejects bakery's %s configuration: %v", scenario, err)
	}
	for _, w := range res.Warnings {
		t.Logf("consul warning: %s", w)
	}
	return res.RuntimeConfig
}

func TestServer(t *testing.T) {
	rt := load(t, "server", true)
	if !rt.ServerMode || rt.BootstrapExpect != 3 || rt.Datacenter != "home" {
		t.Errorf("server %v, bootstrap_expect %d, dc %q", rt.ServerMode, rt.BootstrapExpect, rt.Datacenter)
	}
	if !slices.Equal(rt.RetryJoinLAN, []string{"provider=mdns service=consul-server"}) {
		t.Errorf("retry_join %v", rt.RetryJoinLAN)
	}
	if rt.EncryptKey != gossipKey {
		t.Error("the gossip key from /run/consul.d was not applied")
	}
	if !rt.DisableKeyringFile {
		t.Error("the gossip keyring would be persisted in data_dir")
	}
	if !rt.TLS.InternalRPC.VerifyServerHostname || !rt.TLS.InternalRPC.VerifyIncoming || !rt.TLS.InternalRPC.VerifyOutgoing {
		t.Errorf("TLS %+v", rt.TLS.InternalRPC)
	}
	if !rt.ACLsEnabled || rt.ACLResolverSettings.ACLDefaultPolicy != "deny" {
		t.Errorf("ACLs enabled %v, default %q", rt.ACLsEnabled, rt.ACLResolverSettings.ACLDefaultPolicy)
	}
	if !rt.AutoConfig.Authorizer.Enabled {
		t.Error("the server does not authorize auto_config")
	}
	checkTokens(t, rt, true)
}

// checkTokens: Consul runs with the tokens Vault Agent rendered, and
// registers node_exporter (from /etc/consul.d) with the registration token.
func checkTokens(t *testing.T, rt *config.RuntimeConfig, agent bool) {
	t.Helper()
	if !rt.ACLsEnabled || rt.ACLResolverSettings.ACLDefaultPolicy != "deny" {
		t.Errorf("ACLs enabled %v, default %q", rt.ACLsEnabled, rt.ACLResolverSettings.ACLDefaultPolicy)
	}
	if agent && rt.ACLTokens.ACLAgentToken != agentToken {
		t.Errorf("agent token %q", rt.ACLTokens.ACLAgentToken)
	}
	if rt.ACLTokens.ACLConfigFileRegistrationToken != registrationToken {
		t.Errorf("config_file_service_registration token %q", rt.ACLTokens.ACLConfigFileRegistrationToken)
	}
	if rt.ACLTokens.ACLDefaultToken != "" {
		t.Error("a default token would give every anonymous request its rights")
	}
	var names []string
	for _, s := range rt.Services {
		names = append(names, s.Name)
		if s.Token != "" {
			t.Errorf("service %s carries its own token", s.Name)
		}
	}
	if !slices.Contains(names, "node-exporter") {
		t.Errorf("services %v: node-exporter is not registered", names)
	}
}

func TestClient(t *testing.T) {
	rt := load(t, "client", true)
	if rt.ServerMode || rt.EncryptKey != gossipKey || !rt.TLS.InternalRPC.VerifyServerHostname {
		t.Errorf("client: server %v encrypt %v verify %v", rt.ServerMode, rt.EncryptKey != "", rt.TLS.InternalRPC.VerifyServerHostname)
	}
	if rt.TLS.InternalRPC.CertFile != "/run/consul.d/files/agent.crt" {
		t.Errorf("cert_file %q", rt.TLS.InternalRPC.CertFile)
	}
	checkTokens(t, rt, true)
}

func TestAutoConfigClient(t *testing.T) {
	rt := load(t, "netboot-client", true)
	if !rt.AutoConfig.Enabled || rt.AutoConfig.IntroTokenFile != "/run/consul.d/files/intro-token.jwt" {
		t.Errorf("auto_config %+v", rt.AutoConfig)
	}
	if !slices.Equal(rt.AutoConfig.ServerAddresses, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}) {
		t.Errorf("server_addresses %v", rt.AutoConfig.ServerAddresses)
	}
	// The agent token comes from the servers (auto_config), the
	// registration token from Vault Agent.
	checkTokens(t, rt, false)
}

// Without the files Vault Agent renders, the image's own configuration
// still loads (consul.service waits for them with ExecStartPre).
func TestImageOnly(t *testing.T) {
	rt := load(t, "client", false)
	if rt.EncryptKey != "" {
		t.Error("a gossip key came from the image")
	}
	tk := rt.ACLTokens
	if tk.ACLDefaultToken+tk.ACLAgentToken+tk.ACLAgentRecoveryToken+tk.ACLReplicationToken+tk.ACLConfigFileRegistrationToken+tk.ACLDNSToken != "" {
		t.Errorf("an ACL token came from the image: %+v", tk)
	}
}

// templateContents returns the contents of the Vault Agent template with
// the given destination, as Vault Agent (HCL 1) reads agent.hcl.
func templateContents(t *testing.T, agentHCL, dest string) string {
	t.Helper()
	b, err := os.ReadFile(agentHCL)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := hcl1.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	tpls, _ := cfg["template"].([]map[string]any)
	for _, tpl := range tpls {
		if tpl["destination"] == dest {
			c, _ := tpl["contents"].(string)
			return c
		}
	}
	return ""
}

// jwksServer serves a JWKS where Vault's identity/oidc keys would be, and
// returns the base URL standing in for Vault's address.
func jwksServer(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "bakery-test", "use": "sig", "alg": "RS256",
		"n": base64.RawURLEncoding.EncodeToString(key.N.Bytes()), "e": "AQAB",
	}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/identity/oidc/.well-known/keys" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
