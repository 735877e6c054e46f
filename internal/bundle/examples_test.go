package bundle_test

import (
	"context"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/spec"
)

// TestExampleClusterSpecs renders the cluster examples of docs/cluster.md
// the way bakery build does, so they stay buildable (short of the
// downloads).
func TestExampleClusterSpecs(t *testing.T) {
	for _, p := range []string{"../../examples/cluster-server.hcl", "../../examples/cluster-client.hcl"} {
		for _, netboot := range []bool{false, true} {
			in := spec.Inputs{}
			if netboot {
				in.Vars = map[string]string{"secret_id_file": "/run/bakery/secret-id"}
				if p == "../../examples/cluster-server.hcl" {
					continue
				}
			}
			s, diags := spec.Load(context.Background(), p, in)
			if diags.HasErrors() {
				t.Fatalf("%s: %v", p, diags)
			}
			plan, err := bundle.PlanFromSpec(s)
			if err != nil {
				t.Fatal(err)
			}
			plan.Netboot = netboot
			if err := plan.Normalize(); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			ls, err := plan.Layouts(bundle.ImageLayoutOptions)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			// Consul denies by default: Nomad and node_exporter's
			// registration (and Prometheus, where bundled) get tokens.
			var agent string
			for _, l := range ls {
				for _, e := range l.Entries {
					if e.Path == "/etc/vault-agent.d/agent.hcl" {
						agent = string(e.Content)
					}
				}
			}
			want := []string{"/run/nomad.d/consul.hcl", "/run/consul.d/registration.hcl"}
			if plan.Has("prometheus") {
				want = append(want, "/run/prometheus/consul-token")
			}
			for _, w := range want {
				if !strings.Contains(agent, `destination = "`+w+`"`) {
					t.Errorf("%s: Vault Agent does not render %s", p, w)
				}
			}
		}
	}
}
