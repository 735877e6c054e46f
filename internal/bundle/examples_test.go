package bundle_test

import (
	"context"
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
			if _, err := plan.Layouts(bundle.ImageLayoutOptions); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
		}
	}
}
