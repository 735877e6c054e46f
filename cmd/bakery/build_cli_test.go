package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/demo"
)

// TestBuildAndAuditCLI runs `bakery build --json` on the demo base with a
// sensitive variable, then `bakery audit` on the result (passes) and on
// the base (fails): the secret appears nowhere in what bakery prints.
func TestBuildAndAuditCLI(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.img")
	if err := demo.Build(context.Background(), base, demo.Options{Size: 640 << 20}); err != nil {
		t.Fatal(err)
	}
	spec := filepath.Join(dir, "spec.hcl")
	os.WriteFile(spec, []byte(`variable "wifi_psk" {
  type      = string
  sensitive = true
}
base { url = "base.img" }
user "ops" { groups = ["sudo"] }
wifi {
  ssid    = "farm"
  psk     = var.wifi_psk
  country = "IE"
}
output { name = "cli" }
`), 0o644)
	secret := "cli-secret-passphrase"
	out := filepath.Join(dir, "out")
	stdout, stderr, err := runCLI(t, "", "build", spec, "--var", "wifi_psk="+secret, "--out", out,
		"--cache", filepath.Join(dir, "cache"), "--json", "--source-date-epoch", "1700000000", "--log-level", "debug")
	if err != nil {
		t.Fatalf("build: %v\n%s", err, stderr)
	}
	if strings.Contains(stdout+stderr, secret) {
		t.Fatal("the psk was printed")
	}
	var res struct {
		Outputs []struct{ Format, Path, SHA256 string }
		Steps   []string
		Base    struct{ OS string }
		Source  int64 `json:"source_date_epoch"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("--json output: %v\n%s", err, stdout)
	}
	if len(res.Outputs) != 3 || res.Source != 1700000000 || !strings.Contains(strings.Join(res.Steps, ","), "users,hostname,ssh") {
		t.Errorf("result: %+v", res)
	}
	if strings.Contains(stderr, "started") {
		t.Errorf("--json still printed progress:\n%s", stderr)
	}

	stdout, _, err = runCLI(t, "", "audit", filepath.Join(out, "cli.img"))
	if exitCode(err) != 0 || !strings.Contains(stdout, "0 errors, 1 warning") {
		t.Errorf("audit of the build: %v\n%s", err, stdout)
	}
	stdout, _, err = runCLI(t, "", "audit", "--strict", filepath.Join(out, "cli.img"))
	if exitCode(err) != 1 {
		t.Errorf("audit --strict passed with a psk: %v\n%s", err, stdout)
	}
	stdout, _, err = runCLI(t, "", "audit", "--json", base)
	if exitCode(err) != 1 || !strings.Contains(stdout, `"rule": "ssh-host-key"`) || !strings.Contains(stdout, `"passed": false`) {
		t.Errorf("audit of the base: %v\n%s", err, stdout)
	}

	// A build error is one line pointing into the spec, with no secret.
	os.WriteFile(spec, []byte(`variable "wifi_psk" {
  type      = string
  sensitive = true
}
base { url = "base.img" }
user "ops" { groups = ["wheel"] }
`), 0o644)
	_, stderr, err = runCLI(t, "", "build", spec, "--var", "wifi_psk="+secret, "--out", filepath.Join(dir, "out2"), "--cache", filepath.Join(dir, "cache"))
	if err == nil || !strings.Contains(err.Error(), `spec.hcl:6:24: user "ops": group "wheel" does not exist in the base image`) {
		t.Errorf("error: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "out2")); len(entries) != 0 {
		t.Errorf("failed build left %d files", len(entries))
	}
	// One message: the command's error, not also a log line saying it.
	if strings.Contains(stderr, "does not exist in the base image") {
		t.Errorf("the error was also logged:\n%s", stderr)
	}

	// With --json a failure is JSON on stdout too: the build's error, or
	// every spec diagnostic.
	var failure struct {
		Error       string   `json:"error"`
		Diagnostics []string `json:"diagnostics"`
	}
	stdout, _, err = runCLI(t, "", "build", spec, "--var", "wifi_psk="+secret, "--out", filepath.Join(dir, "out2"), "--cache", filepath.Join(dir, "cache"), "--json")
	if err == nil || json.Unmarshal([]byte(stdout), &failure) != nil || !strings.Contains(failure.Error, `group "wheel" does not exist`) || strings.Contains(stdout, secret) {
		t.Errorf("--json build failure: %v\n%s", err, stdout)
	}
	os.WriteFile(spec, []byte("base { url = \"base.img\" }\nhostname = \"node_1\"\nwifi { ssid = \"x\" }\n"), 0o644)
	stdout, _, err = runCLI(t, "", "build", spec, "--out", filepath.Join(dir, "out2"), "--json")
	failure.Diagnostics = nil
	if err == nil || json.Unmarshal([]byte(stdout), &failure) != nil || len(failure.Diagnostics) < 2 || !strings.Contains(failure.Diagnostics[0], "spec.hcl:") {
		t.Errorf("--json spec errors: %v\n%s", err, stdout)
	}
}
