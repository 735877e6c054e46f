// Scenarios and WriteScenario: the configurations bakery renders for the
// cluster roles of docs/cluster.md, written to a directory so that the
// integration modules load them with each product's own loader.

package bundletest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/bakeryhq/bakery/internal/bundle"
)

// CA is a self-signed test cluster CA certificate (public, as on an
// image; Consul parses it for auto_config's OIDC discovery).
const CA = `-----BEGIN CERTIFICATE-----
MIIBmTCCAT+gAwIBAgIUIH4dR1n+QN/uGrsuBllvcGPebaowCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWYmFrZXJ5IHRlc3QgY2x1c3RlciBDQTAgFw0yNjExMjEwNzAz
NDJaGA8yMTI2MTAyODA3MDM0MlowITEfMB0GA1UEAwwWYmFrZXJ5IHRlc3QgY2x1
c3RlciBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABMPQO1d2grR1K5Y7XCkc
2Nyy75tg7GWIgffn5V/mrHq6jGg7iItbbA2lFE2LZLxcz5eXQKOh1TlfueONr/iF
/XmjUzBRMB0GA1UdDgQWBBTELxx0IFjRlTneEd4ct8MSFDZv1zAfBgNVHSMEGDAW
gBTELxx0IFjRlTneEd4ct8MSFDZv1zAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49
BAMCA0gAMEUCIQDDWKySSDvdjWQhHpEwddqSMjPPlgMALpeJEWmfy5fSawIgR3FV
V9Sgs8seccXiETx3dKZLYWUhyS+xDE0X8RfsRT0=
-----END CERTIFICATE-----
`

// Scenarios are the node roles of docs/cluster.md.
func Scenarios() map[string]*bundle.Plan {
	va := func(extra func(*bundle.Settings)) bundle.Settings {
		s := bundle.Settings{Name: "vault-agent", Version: "1.18.2", VaultAddr: "https://vault.home:8200",
			RoleID: "6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69", CACert: []byte(CA),
			ConsulPKIPath: "pki_int/issue/consul", NomadPKIPath: "pki_int/issue/nomad"}
		if extra != nil {
			extra(&s)
		}
		return s
	}
	return map[string]*bundle.Plan{
		"server": {Bundles: []bundle.Settings{
			va(nil),
			{Name: "consul", Version: "1.20.1", Role: "server", Datacenter: "home", BootstrapExpect: 3,
				RetryJoin: []string{"provider=mdns service=consul-server"}, CACert: []byte(CA), Secrets: bundle.SecretsAutoConfig},
			{Name: "nomad", Version: "1.9.3", Role: "server", Datacenter: "home", BootstrapExpect: 3,
				RetryJoin: []string{"nomad-1.home", "nomad-2.home", "nomad-3.home"}, CACert: []byte(CA)},
		}},
		"client": {Bundles: []bundle.Settings{
			va(nil),
			{Name: "consul", Version: "1.20.1", Role: "client", Datacenter: "home",
				RetryJoin: []string{"provider=mdns service=consul-server"}, CACert: []byte(CA)},
			{Name: "nomad", Version: "1.9.3", Role: "client", Datacenter: "home",
				RetryJoin: []string{"nomad-1.home", "nomad-2.home", "nomad-3.home"}, CACert: []byte(CA)},
		}},
		"netboot-client": {Netboot: true, Bundles: []bundle.Settings{
			va(func(s *bundle.Settings) { s.NomadPKIPath = "" }),
			{Name: "consul", Version: "1.20.1", Role: "client", Datacenter: "home", Secrets: bundle.SecretsAutoConfig,
				RetryJoin: []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}, CACert: []byte(CA)},
			{Name: "nomad", Version: "1.9.3", Role: "client", Datacenter: "home"},
		}},
	}
}

// Monitoring is node_exporter and Prometheus, which the integration tests
// add to a scenario so that their Consul registration and tokens load too.
func Monitoring() []bundle.Settings {
	return []bundle.Settings{{Name: "node_exporter", Version: "1.8.2"}, {Name: "prometheus", Version: "3.0.1"}}
}

// WriteScenario renders scenario, with any extra bundles added, into dir
// as an image root (dir/etc/...), and returns dir.
func WriteScenario(t testing.TB, scenario string, extra ...bundle.Settings) string {
	t.Helper()
	plan := Scenarios()[scenario]
	if plan == nil {
		t.Fatalf("no scenario %q", scenario)
	}
	plan.Bundles = append(plan.Bundles, extra...)
	if err := plan.Normalize(); err != nil {
		t.Fatal(err)
	}
	ls, err := plan.Layouts(bundle.ImageLayoutOptions)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, l := range ls {
		for _, e := range l.Entries {
			p := filepath.Join(dir, e.Path)
			switch e.Kind {
			case bundle.KindDir:
				os.MkdirAll(p, 0o755)
			case bundle.KindFile:
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, e.Content, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return dir
}
