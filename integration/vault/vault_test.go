// Package vault_test checks bakery's Vault Agent configuration with
// Vault's own loader, and bakery's credential broker against a real
// in-process Vault core (AppRole, response wrapping, CIDR binding).
package vault_test

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	credAppRole "github.com/hashicorp/vault/builtin/credential/approle"
	agentconfig "github.com/hashicorp/vault/command/agent/config"
	vaulthttp "github.com/hashicorp/vault/http"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/vault"

	"github.com/bakeryhq/bakery/internal/broker"
	"github.com/bakeryhq/bakery/internal/bundle/bundletest"
)

// agentHCL renders a scenario's agent.hcl with node_exporter and
// Prometheus added (whose Consul tokens Vault Agent then renders too).
func agentHCL(t *testing.T, scenario string) string {
	t.Helper()
	return filepath.Join(bundletest.WriteScenario(t, scenario, bundletest.Monitoring()...), "etc/vault-agent.d/agent.hcl")
}

func TestAgentConfigLoads(t *testing.T) {
	for _, sc := range []string{"server", "client", "netboot-client"} {
		t.Run(sc, func(t *testing.T) {
			cfg, err := agentconfig.LoadConfig(agentHCL(t, sc))
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.ValidateConfig(); err != nil {
				t.Fatal(err)
			}
			m := cfg.AutoAuth.Method
			if m.Type != "approle" || m.MountPath != "auth/approle" {
				t.Fatalf("method %+v", m)
			}
			want := "/boot/firmware/bakery/secret-id"
			if sc == "netboot-client" {
				want = "/run/bakery/secret-id"
			}
			if m.Config["secret_id_file_path"] != want || m.Config["secret_id_response_wrapping_path"] != "auth/approle/role/node/secret-id" ||
				m.Config["remove_secret_id_file_after_reading"] != true || m.Config["role_id_file_path"] != "/etc/vault-agent.d/role-id" {
				t.Errorf("approle config %v", m.Config)
			}
			if len(cfg.AutoAuth.Sinks) != 1 || cfg.AutoAuth.Sinks[0].Config["path"] != "/run/vault-agent/token" {
				t.Errorf("sinks %+v", cfg.AutoAuth.Sinks)
			}
			if cfg.Vault.Address != "https://vault.home:8200" || cfg.Vault.CACert != "/etc/vault-agent.d/ca.pem" {
				t.Errorf("vault %+v", cfg.Vault)
			}
			if len(cfg.Templates) == 0 {
				t.Fatal("no templates")
			}
			dests := map[string]bool{}
			for _, tpl := range cfg.Templates {
				dests[*tpl.Destination] = true
				if !strings.HasPrefix(*tpl.Destination, "/run/") {
					t.Errorf("template renders outside /run: %s", *tpl.Destination)
				}
				// Prometheus rereads its token file at every request.
				if *tpl.Destination == "/run/prometheus/consul-token" {
					if tpl.Exec != nil {
						t.Errorf("template %s restarts Prometheus", *tpl.Destination)
					}
				} else if tpl.Exec == nil || len(tpl.Exec.Command) == 0 || tpl.Exec.Command[0] != "systemctl" {
					t.Errorf("template %s has no exec restarting its service", *tpl.Destination)
				}
				if tpl.Perms == nil || *tpl.Perms != 0o640 {
					t.Errorf("template %s perms %v", *tpl.Destination, tpl.Perms)
				}
			}
			// Consul denies by default: Nomad, Prometheus and the
			// registration of node_exporter each get a token.
			for _, d := range []string{"/run/nomad.d/consul.hcl", "/run/prometheus/consul-token", "/run/consul.d/registration.hcl"} {
				if !dests[d] {
					t.Errorf("no template renders %s", d)
				}
			}
		})
	}
}

// TestBrokerAgainstVault mints with bakery's broker on a real Vault core set
// up as bootstrap-security.md says, then does what the node does.
func TestBrokerAgainstVault(t *testing.T) {
	core, _, rootToken := vault.TestCoreUnsealedWithConfig(t, &vault.CoreConfig{
		CredentialBackends: map[string]logical.Factory{"approle": credAppRole.Factory},
	})
	ln, addr := vaulthttp.TestServer(t, core)
	defer ln.Close()

	admin, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	admin.SetToken(rootToken)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(admin.Sys().EnableAuthWithOptions("approle", &api.EnableAuthOptions{Type: "approle"}))
	_, err = admin.Logical().Write("auth/approle/role/node", map[string]any{
		"secret_id_num_uses": 1, "secret_id_ttl": "72h", "token_period": "1h", "token_policies": "node",
		"secret_id_bound_cidrs": "127.0.0.0/8", "token_bound_cidrs": "127.0.0.0/8",
	})
	must(err)
	must(admin.Sys().PutPolicy("broker", `
path "auth/approle/role/node/secret-id" {
  capabilities        = ["update"]
  min_wrapping_ttl    = "30s"
  required_parameters = ["cidr_list", "metadata"]
}
path "auth/approle/role/node/secret-id-accessor/destroy" {
  capabilities = ["update"]
}
`))
	tok, err := admin.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"broker"}, NoParent: true})
	must(err)
	roleID, err := admin.Logical().Read("auth/approle/role/node/role-id")
	must(err)

	b, err := broker.New(broker.Config{Addr: addr, Token: tok.Auth.ClientToken})
	must(err)
	ctx := context.Background()
	cred, err := b.Mint(ctx, broker.Request{
		CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, TTL: 2 * time.Minute, WrapTTL: time.Minute,
		Metadata: map[string]string{"machine": "pi-1"},
	})
	must(err)
	if cred.CreationPath != "auth/approle/role/node/secret-id" || cred.SecretIDAccessor == "" {
		t.Fatalf("credential %+v", cred)
	}

	// The broker's token may do nothing else.
	brokerClient, _ := api.NewClient(&api.Config{Address: addr})
	brokerClient.SetToken(tok.Auth.ClientToken)
	if _, err := brokerClient.Logical().Read("auth/approle/role/node/role-id"); err == nil {
		t.Error("the broker's token can read the role")
	}
	if _, err := brokerClient.Logical().Write("auth/approle/role/node/secret-id", map[string]any{"cidr_list": "127.0.0.1/32", "metadata": "{}"}); err == nil {
		t.Error("the broker's token minted an unwrapped secret-id (min_wrapping_ttl not enforced)")
	}

	// The node: unwrap (once), log in from the bound address.
	node, _ := api.NewClient(&api.Config{Address: addr})
	unwrapped, err := node.Logical().Unwrap(cred.WrapToken)
	must(err)
	secretID, _ := unwrapped.Data["secret_id"].(string)
	if secretID == "" {
		t.Fatalf("unwrapped %v", unwrapped.Data)
	}
	if _, err := node.Logical().Unwrap(cred.WrapToken); err == nil {
		t.Fatal("a wrapping token unwrapped twice")
	}
	login, err := node.Logical().Write("auth/approle/login", map[string]any{"role_id": roleID.Data["role_id"], "secret_id": secretID})
	must(err)
	if login.Auth == nil || login.Auth.Metadata["machine"] != "pi-1" {
		t.Fatalf("login %+v", login.Auth)
	}
	// Single use.
	if _, err := node.Logical().Write("auth/approle/login", map[string]any{"role_id": roleID.Data["role_id"], "secret_id": secretID}); err == nil {
		t.Fatal("a single-use secret-id logged in twice")
	}

	// A credential bound to another node's address is refused from here:
	// Vault already refuses to unwrap it (and minting outside the role's
	// own CIDRs is refused too).
	far, err := b.Mint(ctx, broker.Request{CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}, TTL: time.Minute})
	must(err)
	if u2, err := node.Logical().Unwrap(far.WrapToken); err == nil {
		if _, err := node.Logical().Write("auth/approle/login", map[string]any{"role_id": roleID.Data["role_id"], "secret_id": u2.Data["secret_id"]}); err == nil {
			t.Fatal("a secret-id bound to 127.0.0.2/32 logged in from 127.0.0.1")
		}
	}
	if _, err := b.Mint(ctx, broker.Request{CIDRs: []netip.Prefix{netip.MustParsePrefix("192.0.2.7/32")}, TTL: time.Minute}); err == nil {
		t.Fatal("Vault minted a secret-id outside the role's CIDRs")
	}

	// An unused one is destroyed by accessor.
	unused, err := b.Mint(ctx, broker.Request{CIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, TTL: time.Minute})
	must(err)
	must(b.Destroy(ctx, unused.SecretIDAccessor))
	// Its wrapping token is dead too, or at least the secret-id inside.
	if u3, err := node.Logical().Unwrap(unused.WrapToken); err == nil {
		if _, err := node.Logical().Write("auth/approle/login", map[string]any{"role_id": roleID.Data["role_id"], "secret_id": u3.Data["secret_id"]}); err == nil {
			t.Fatal("a destroyed secret-id logged in")
		}
	}
}
