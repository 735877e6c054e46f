package bundle_test

import (
	"os"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/bakeryhq/bakery/internal/bundle/bundletest"
)

// Nomad's own loader (github.com/hashicorp/nomad/command/agent) cannot be
// built here: the github.com/hashicorp/nomad/api version its tree needs is
// not served by the module proxy (see integration/README.md). So the Nomad
// configuration is decoded strictly against the documented agent schema
// (https://developer.hashicorp.com/nomad/docs/configuration): any attribute
// or block not listed here is an error.
type nomadAgent struct {
	Datacenter string `hcl:"datacenter,optional"`
	Region     string `hcl:"region,optional"`
	DataDir    string `hcl:"data_dir,optional"`
	BindAddr   string `hcl:"bind_addr,optional"`
	Advertise  *struct {
		HTTP string `hcl:"http,optional"`
		RPC  string `hcl:"rpc,optional"`
		Serf string `hcl:"serf,optional"`
	} `hcl:"advertise,block"`
	Server *struct {
		Enabled         bool        `hcl:"enabled,optional"`
		BootstrapExpect int         `hcl:"bootstrap_expect,optional"`
		Encrypt         string      `hcl:"encrypt,optional"`
		ServerJoin      *serverJoin `hcl:"server_join,block"`
	} `hcl:"server,block"`
	Client *struct {
		Enabled    bool        `hcl:"enabled"`
		Servers    []string    `hcl:"servers,optional"`
		ServerJoin *serverJoin `hcl:"server_join,block"`
	} `hcl:"client,block"`
	Consul *struct {
		Address        string `hcl:"address,optional"`
		Token          string `hcl:"token,optional"`
		ServerAutoJoin bool   `hcl:"server_auto_join,optional"`
		ClientAutoJoin bool   `hcl:"client_auto_join,optional"`
		AutoAdvertise  bool   `hcl:"auto_advertise,optional"`
	} `hcl:"consul,block"`
	TLS *struct {
		HTTP                 bool   `hcl:"http,optional"`
		RPC                  bool   `hcl:"rpc,optional"`
		CAFile               string `hcl:"ca_file,optional"`
		CertFile             string `hcl:"cert_file,optional"`
		KeyFile              string `hcl:"key_file,optional"`
		VerifyServerHostname bool   `hcl:"verify_server_hostname,optional"`
		VerifyHTTPSClient    bool   `hcl:"verify_https_client,optional"`
	} `hcl:"tls,block"`
}

type serverJoin struct {
	RetryJoin        []string `hcl:"retry_join,optional"`
	RetryMaxAttempts int      `hcl:"retry_max,optional"`
	RetryInterval    string   `hcl:"retry_interval,optional"`
}

func decodeStrict(t *testing.T, path string, into any) {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(path)
	if diags.HasErrors() {
		t.Fatalf("%s: %v", path, diags)
	}
	if diags := gohcl.DecodeBody(f.Body, &hcl.EvalContext{}, into); diags.HasErrors() {
		t.Fatalf("%s does not match the documented schema: %v", path, diags)
	}
}

func TestNomadConfigMatchesDocumentedSchema(t *testing.T) {
	for _, sc := range []string{"server", "client", "netboot-client"} {
		root := bundletest.WriteScenario(t, sc)
		var cfg nomadAgent
		decodeStrict(t, root+"/etc/nomad.d/nomad.hcl", &cfg)
		if cfg.DataDir != "/var/lib/nomad" || cfg.Datacenter != "home" {
			t.Errorf("%s: %+v", sc, cfg)
		}
		switch sc {
		case "server":
			if cfg.Server == nil || !cfg.Server.Enabled || cfg.Server.BootstrapExpect != 3 || len(cfg.Server.ServerJoin.RetryJoin) != 3 {
				t.Errorf("server block %+v", cfg.Server)
			}
			if cfg.TLS == nil || !cfg.TLS.RPC || !cfg.TLS.VerifyServerHostname {
				t.Errorf("tls %+v", cfg.TLS)
			}
		default:
			if cfg.Client == nil || !cfg.Client.Enabled || cfg.Server != nil {
				t.Errorf("client block %+v", cfg.Client)
			}
		}
		if cfg.Consul == nil || cfg.Consul.Address != "127.0.0.1:8500" {
			t.Errorf("%s: consul integration %+v", sc, cfg.Consul)
		}
	}
	// Nomad's Consul token, as Vault Agent renders it into /run/nomad.d
	// (merged with nomad.hcl's consul block: same default name).
	for _, sc := range []string{"server", "client", "netboot-client"} {
		root := bundletest.WriteScenario(t, sc)
		b, err := os.ReadFile(root + "/etc/vault-agent.d/agent.hcl")
		if err != nil {
			t.Fatal(err)
		}
		tpls := templatesByDest(t, map[string][]byte{"/etc/vault-agent.d/agent.hcl": b})
		tpl := tpls["/run/nomad.d/consul.hcl"]
		if tpl == nil {
			t.Fatalf("%s: no template for Nomad's Consul token", sc)
		}
		out := t.TempDir() + "/consul.hcl"
		os.WriteFile(out, []byte(renderFake(tpl["contents"].(string))), 0o600)
		var run nomadAgent
		decodeStrict(t, out, &run)
		if run.Consul == nil || run.Consul.Token != "9b2c8f3e-3a41-4c55-8a0e-7d6f5e4c3b2a" {
			t.Errorf("%s: rendered consul block %+v", sc, run.Consul)
		}
	}
	// What Vault Agent renders into /run/nomad.d on a server.
	var gossip nomadAgent
	f, _ := hclparse.NewParser().ParseHCL([]byte("server {\n  encrypt = \"pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=\"\n}\n"), "gossip.hcl")
	if diags := gohcl.DecodeBody(f.Body, nil, &gossip); diags.HasErrors() {
		t.Fatal(diags)
	}
}
