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

// runFlashCLI runs the command tree in-process and returns its stdout.
func runFlashCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, _, err := runCLI(t, "", args...)
	return out, err
}

// TestFlashCLIResultsAndExitCode flashes three image-file targets, one of
// which cannot be created: the JSON has a result for each and the exit
// code says not all succeeded.
func TestFlashCLIResultsAndExitCode(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "x.img")
	data := bytes.Repeat([]byte("bakery"), 400000)
	f, _ := os.Create(img)
	f.Truncate(8 << 20)
	f.WriteAt(data, 0)
	f.WriteAt(data, 5<<20)
	f.Close()
	good1, good2 := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	bad := filepath.Join(dir, "missing-dir", "c.img")

	out, err := runFlashCLI(t, "flash", "--json", img, good1, bad, good2)
	var exit *exitError
	if !errors.As(err, &exit) || exit.code != 1 {
		t.Fatalf("err = %v, want exit code 1", err)
	}
	var results []struct {
		Target   string `json:"target"`
		OK       bool   `json:"ok"`
		Verified bool   `json:"verified"`
		Error    string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if len(results) != 3 || !results[0].OK || !results[0].Verified || results[1].OK || !strings.Contains(results[1].Error, "missing-dir") || !results[2].OK {
		t.Fatalf("results = %+v", results)
	}
	for _, p := range []string{good1, good2} {
		got, _ := os.ReadFile(p)
		want, _ := os.ReadFile(img)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s differs from the image", p)
		}
	}

	// All good: exit 0 and text result lines.
	out, err = runFlashCLI(t, "flash", img, good1)
	if err != nil || !strings.HasPrefix(out, "ok ") {
		t.Fatalf("err = %v, out = %q", err, out)
	}

	// Refusals come before anything is written.
	if _, err := runFlashCLI(t, "flash", img, img); err == nil || !strings.Contains(err.Error(), "is the image itself") {
		t.Fatalf("flashing the image onto itself: %v", err)
	}
	// A mistyped target that is some other file is refused and untouched.
	notes := filepath.Join(dir, "notes.txt")
	os.WriteFile(notes, []byte("keep me\n"), 0o644)
	if _, err := runFlashCLI(t, "flash", "--yes", img, notes); err == nil || !strings.Contains(err.Error(), "does not look like a disk image") {
		t.Fatalf("flashing over a text file: %v", err)
	}
	if got, _ := os.ReadFile(notes); string(got) != "keep me\n" {
		t.Fatalf("refused target changed: %q", got)
	}
}

func TestDevicesCLI(t *testing.T) {
	out, err := runFlashCLI(t, "devices", "--json", "--all")
	if err != nil {
		t.Fatal(err)
	}
	var devs []map[string]any
	if err := json.Unmarshal([]byte(out), &devs); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, out)
	}
	if _, err := runFlashCLI(t, "devices"); err != nil {
		t.Fatal(err)
	}
}

// TestCredentialFlagsNeedVault: broker flags without --vault-addr, or
// --vault-addr without the token file, stop before anything is written or
// served, and say which flag is missing.
func TestCredentialFlagsNeedVault(t *testing.T) {
	dir := t.TempDir()
	img, target := filepath.Join(dir, "a.img"), filepath.Join(dir, "card.img")
	os.WriteFile(img, make([]byte, 1<<20), 0o644)
	os.WriteFile(target, []byte("old"), 0o644)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"flash", img, target, "--node-ip", "10.0.0.11"}, "--node-ip needs --vault-addr"},
		{[]string{"flash", img, target, "--node-ip", "10.0.0.11", "--vault-token-file", "t"}, "--vault-token-file and --node-ip need --vault-addr"},
		{[]string{"flash", img, target, "--vault-addr", "https://vault:8200", "--node-ip", "10.0.0.11"}, "--vault-addr needs --vault-token-file"},
		{[]string{"serve", "--data", dir, "--vault-token-file", "t"}, "--vault-token-file needs --vault-addr"},
		{[]string{"serve", "--data", dir, "--vault-addr", "https://vault:8200"}, "--vault-addr needs --vault-token-file"},
	} {
		_, _, err := runCLI(t, "", c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "old" {
		t.Error("the target was written")
	}
}
