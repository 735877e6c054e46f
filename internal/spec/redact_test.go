package spec

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const secret = "Zq9-sekrit-psk"

// TestSensitiveNeverPrinted feeds a sensitive PSK through every path that
// produces text (diagnostics of several kinds, String, JSON) and checks it
// never appears, nor its base64 form.
func TestSensitiveNeverPrinted(t *testing.T) {
	src := `variable "wifi_psk" {
  type      = string
  sensitive = true
  validation {
    condition     = length(var.wifi_psk) > 100
    error_message = "The PSK is too short."
  }
}
variable "pin" {
  type      = number
  sensitive = true
}
` + baseLine + `wifi {
  ssid    = "farm"
  psk     = "${var.wifi_psk}\t"
  country = "IE"
}
user "ops" {
  password_hash = var.wifi_psk
  groups        = [var.wifi_psk]
}
file "/etc/psk" {
  content = "psk=${var.wifi_psk}\n"
}
file "/etc/psk.b64" {
  content_base64 = base64encode(var.wifi_psk)
}
file "/etc/bad" {
  content = base64decode(var.wifi_psk)
}
file "/etc/json" {
  content = jsonencode(jsondecode(var.wifi_psk))
}
`
	in := Inputs{
		Vars:      map[string]string{"wifi_psk": secret},
		LookupEnv: func(k string) (string, bool) { return secret + "-pin", k == "BAKERY_VAR_pin" },
	}
	s, lines := parseIn(t, src, nil, in)
	if len(lines) < 5 {
		t.Fatalf("expected several diagnostics, got %q", lines)
	}
	b64 := base64.StdEncoding.EncodeToString([]byte(secret))
	check := func(what, text string) {
		t.Helper()
		if strings.Contains(text, secret) || strings.Contains(text, b64) || strings.Contains(text, "sekrit") {
			t.Errorf("%s leaks the secret:\n%s", what, text)
		}
	}
	check("diagnostics", strings.Join(lines, "\n"))
	check("String()", s.String())
	j, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	check("JSON", string(j))
	if !strings.Contains(s.String(), Redacted) {
		t.Errorf("String() should show %s where secrets were:\n%s", Redacted, s)
	}
	// The pipeline still gets the real values.
	if s.Files[0].Content != "psk="+secret+"\n" || !s.Files[0].IsSensitive("content") {
		t.Errorf("file content %q sensitive=%v", s.Files[0].Content, s.Files[0].IsSensitive("content"))
	}
	if s.Files[1].Content != secret || !s.Files[1].IsSensitive("content") {
		t.Errorf("content_base64 = %q sensitive=%v", s.Files[1].Content, s.Files[1].IsSensitive("content"))
	}
	// And the redactor knows every form.
	r := s.Redactor()
	for _, text := range []string{secret, b64, "psk=" + secret + "\n", secret + "-pin"} {
		if got := r.Redact("x " + text + " y"); strings.Contains(got, "sekrit") || !strings.Contains(got, Redacted) {
			t.Errorf("Redact(%q) = %q", text, got)
		}
	}
	var jl []Diagnostic = DiagnosticsJSON(nil, r)
	if len(jl) != 0 {
		t.Error("no diagnostics expected")
	}
}

func TestRedactorLogs(t *testing.T) {
	r := NewRedactor([]string{"s3cr3t-value", ""})
	var buf bytes.Buffer
	log := slog.New(r.Handler(slog.NewTextHandler(&buf, nil)))
	b64 := base64.StdEncoding.EncodeToString([]byte("s3cr3t-value"))
	log = log.With("ctx", "with s3cr3t-value")
	log.Info("connecting with s3cr3t-value",
		"psk", "s3cr3t-value",
		"err", errors.New("bad key s3cr3t-value"),
		"b64", b64,
		slog.Group("g", "inner", "x s3cr3t-value x"),
		"any", []string{"s3cr3t-value"},
		"n", 42,
	)
	out := buf.String()
	if strings.Contains(out, "s3cr3t") || strings.Contains(out, b64) {
		t.Errorf("log leaks the secret:\n%s", out)
	}
	if !strings.Contains(out, "n=42") || strings.Count(out, Redacted) < 6 {
		t.Errorf("log lost its content:\n%s", out)
	}

	buf.Reset()
	log2 := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{ReplaceAttr: r.ReplaceAttr}))
	log2.Info("m", "psk", "s3cr3t-value", "quote", `a"s3cr3t-value"b`)
	if strings.Contains(buf.String(), "s3cr3t") {
		t.Errorf("ReplaceAttr leaks: %s", buf.String())
	}

	err := r.Error(fmt.Errorf("wrap: %w", os.ErrNotExist))
	if !errors.Is(err, os.ErrNotExist) {
		t.Error("Error() must keep the chain")
	}
	if got := r.Error(errors.New("x s3cr3t-value")).Error(); got != "x "+Redacted {
		t.Errorf("Error() = %q", got)
	}
	var nilR *Redactor
	if nilR.Redact("s3cr3t-value") != "s3cr3t-value" {
		t.Error("nil redactor must pass text through")
	}
}

func TestRedactorLongestFirst(t *testing.T) {
	r := NewRedactor([]string{"abc", "abcdef"})
	if got := r.Redact("[abcdef]"); got != "["+Redacted+"]" {
		t.Errorf("Redact = %q", got)
	}
}

func TestFormat(t *testing.T) {
	messy := "base   {\nurl=\"x.img\"\n    checksum =   \"sha256:00\"\n}\nuser \"a\" {\n  groups=[\"x\",\n\"y\"]\n}\n"
	want := "base {\n  url      = \"x.img\"\n  checksum = \"sha256:00\"\n}\nuser \"a\" {\n  groups = [\"x\",\n  \"y\"]\n}\n"
	got, diags := Format("m.hcl", []byte(messy))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if string(got) != want {
		t.Errorf("Format:\n%s\nwant:\n%s", got, want)
	}
	again, _ := Format("m.hcl", got)
	if !bytes.Equal(again, got) {
		t.Errorf("Format is not idempotent:\n%s", again)
	}
	if _, diags := Format("bad.hcl", []byte("base {\n")); !diags.HasErrors() {
		t.Error("Format must refuse a syntax error")
	}
	// The examples and test specs are kept formatted.
	paths, _ := filepath.Glob("../../examples/*.hcl")
	more, _ := filepath.Glob("testdata/*.hcl")
	for _, p := range append(paths, more...) {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out, diags := Format(p, src)
		if diags.HasErrors() {
			t.Errorf("%s: %v", p, diags)
		} else if !bytes.Equal(out, src) {
			t.Errorf("%s is not canonically formatted (run bakery fmt)", p)
		}
	}
}

func TestDigestStable(t *testing.T) {
	load := func(psk string) [32]byte {
		s, diags := Load(context.Background(), "testdata/full.hcl", Inputs{Vars: map[string]string{"wifi_psk": psk}})
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		return s.Digest()
	}
	if load("correct horse battery") != load("correct horse battery") {
		t.Error("same inputs must give the same digest")
	}
	if load("correct horse battery") == load("another passphrase") {
		t.Error("a different variable must change the digest")
	}
}
