package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runCLI runs the bakery command tree in-process.
func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newRootCommand()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetIn(strings.NewReader(stdin))
	cmd.SetArgs(args)
	err = cmd.Execute()
	return out.String(), errb.String(), err
}

func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	if err != nil {
		return -1
	}
	return 0
}

func writeSpec(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "base.img"), nil, 0o644)
	p := filepath.Join(dir, "spec.hcl")
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const cliSpec = `variable "wifi_psk" {
  type      = string
  sensitive = true
}
base {
  url = "base.img"
}
wifi {
  ssid    = "farm"
  psk     = var.wifi_psk
  country = "IE"
}
`

func TestValidateCommand(t *testing.T) {
	p := writeSpec(t, cliSpec)
	out, stderr, err := runCLI(t, "", "validate", p, "--var", "wifi_psk=correct-horse-battery")
	if err != nil || out != p+": valid\n" || stderr != "" {
		t.Fatalf("valid spec: err=%v out=%q stderr=%q", err, out, stderr)
	}

	// A bad value for a sensitive variable is reported without the value.
	out, stderr, err = runCLI(t, "", "validate", p, "--var", "wifi_psk=Zq9sek")
	if exitCode(err) != 1 || out != "" {
		t.Fatalf("invalid spec: err=%v out=%q", err, out)
	}
	if want := p + ":10:3: wifi: psk must be a passphrase of 8 to 63 printable ASCII characters or 64 hex digits\n"; stderr != want {
		t.Errorf("stderr = %q, want %q", stderr, want)
	}
	if strings.Contains(stderr+err.Error(), "Zq9sek") {
		t.Error("secret printed")
	}

	// Every problem at once, including a missing variable value.
	_, stderr, err = runCLI(t, "", "validate", p, "--var", "wifi_pks=x")
	if exitCode(err) != 1 {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{
		`--var wifi_pks: no variable "wifi_pks" is declared in ` + p + `; did you mean "wifi_psk"?`,
		p + `:1:1: variable "wifi_psk" has no value; set it with --var wifi_psk=VALUE, in a --var-file, or with BAKERY_VAR_wifi_psk`,
	} {
		if !strings.Contains(stderr, want+"\n") {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.Contains(err.Error(), "2 errors") {
		t.Errorf("summary = %q", err)
	}

	// BAKERY_VAR_ and --var-file.
	t.Setenv("BAKERY_VAR_wifi_psk", "from-the-environment")
	if out, _, err := runCLI(t, "", "validate", p); err != nil || !strings.HasSuffix(out, "valid\n") {
		t.Errorf("env var: %v %q", err, out)
	}
	vf := filepath.Join(t.TempDir(), "site.hcl")
	os.WriteFile(vf, []byte(`wifi_psk = "short"`+"\n"), 0o644)
	if _, stderr, err := runCLI(t, "", "validate", p, "--var-file", vf); exitCode(err) != 1 || !strings.Contains(stderr, "psk must be") {
		t.Errorf("var-file: %v %q", err, stderr)
	}
	if _, _, err := runCLI(t, "", "validate", p, "--var", "novalue"); err == nil || !strings.Contains(err.Error(), "want NAME=VALUE") {
		t.Errorf("--var without '=': %v", err)
	}
}

func TestValidateJSON(t *testing.T) {
	p := writeSpec(t, cliSpec+"hostname = \"bad_name\"\n")
	out, _, err := runCLI(t, "", "validate", "--json", p, "--var", "wifi_psk=Zq9-sekrit-value")
	if exitCode(err) != 1 {
		t.Fatalf("err = %v", err)
	}
	var res struct {
		Valid       bool
		Errors      int
		Diagnostics []struct {
			Severity, File, Message, Text string
			Line, Column                  int
		}
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Valid || res.Errors != 1 || len(res.Diagnostics) != 1 {
		t.Fatalf("result: %+v", res)
	}
	d := res.Diagnostics[0]
	if d.File != p || d.Line != 13 || d.Column != 1 || d.Severity != "error" || !strings.HasPrefix(d.Message, `hostname "bad_name"`) {
		t.Errorf("diagnostic: %+v", d)
	}

	p = writeSpec(t, cliSpec)
	out, _, err = runCLI(t, "", "validate", "--json", p, "--var", "wifi_psk=Zq9-sekrit-value")
	if err != nil || !strings.Contains(out, `"valid": true`) || !strings.Contains(out, `"psk": "(sensitive)"`) || strings.Contains(out, "sekrit") {
		t.Errorf("valid JSON: %v\n%s", err, out)
	}
}

func TestValidateExamples(t *testing.T) {
	paths, _ := filepath.Glob("../../examples/*.hcl")
	if len(paths) < 3 {
		t.Fatalf("examples: %v", paths)
	}
	for _, p := range paths {
		if out, stderr, err := runCLI(t, "", "validate", p); err != nil {
			t.Errorf("%s: %v\n%s%s", p, err, out, stderr)
		}
	}
}

func TestFmtCommand(t *testing.T) {
	dir := t.TempDir()
	messy := "base   {\nurl=\"base.img\"\n}\n"
	tidy := "base {\n  url = \"base.img\"\n}\n"
	a := filepath.Join(dir, "a.hcl")
	b := filepath.Join(dir, "b.hcl")
	os.WriteFile(a, []byte(messy), 0o640)
	os.WriteFile(b, []byte(tidy), 0o644)

	out, _, err := runCLI(t, "", "fmt", "--check", dir)
	if exitCode(err) != 1 || out != a+"\n" {
		t.Fatalf("--check: err=%v out=%q", err, out)
	}
	if got, _ := os.ReadFile(a); string(got) != messy {
		t.Fatal("--check must not write")
	}

	out, _, err = runCLI(t, "", "fmt", a, b)
	if err != nil || out != a+"\n" {
		t.Fatalf("fmt: err=%v out=%q", err, out)
	}
	got, _ := os.ReadFile(a)
	fi, _ := os.Stat(a)
	if string(got) != tidy || fi.Mode().Perm() != 0o640 {
		t.Errorf("fmt wrote %q mode %v", got, fi.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("temporary files left behind: %v", entries)
	}

	// Idempotent: a second run changes nothing and --check passes.
	if out, _, err := runCLI(t, "", "fmt", "--check", a, b); err != nil || out != "" {
		t.Errorf("second --check: err=%v out=%q", err, out)
	}

	out, _, err = runCLI(t, messy, "fmt", "-")
	if err != nil || out != tidy {
		t.Errorf("stdin: err=%v out=%q", err, out)
	}

	bad := filepath.Join(dir, "bad.hcl")
	os.WriteFile(bad, []byte("base {\n"), 0o644)
	_, stderr, err := runCLI(t, "", "fmt", bad)
	if exitCode(err) != 1 || !strings.Contains(stderr, bad+":1:") {
		t.Errorf("syntax error: err=%v stderr=%q", err, stderr)
	}
	if got, _ := os.ReadFile(bad); string(got) != "base {\n" {
		t.Error("a file with a syntax error must be left alone")
	}
}
