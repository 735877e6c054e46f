package audit

import (
	"context"
	"encoding/base64"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/demo"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/image"
)

// plant writes files into an image's root (or boot, for paths starting
// with "boot:") and commits.
func plant(t *testing.T, img string, files map[string]string) {
	t.Helper()
	im, err := image.Open(img, image.Options{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	for p, content := range files {
		role := image.RoleRoot
		if strings.HasPrefix(p, "boot:") {
			role, p = image.RoleBoot, strings.TrimPrefix(p, "boot:")
		}
		f, err := im.Role(role)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.MkdirAll(fs.Dir(p), fs.Attr{Mode: 0o755}); err != nil {
			t.Fatal(err)
		}
		if err := f.WriteFile(p, strings.NewReader(content), fs.Attr{Mode: 0o600}); err != nil {
			t.Fatal(err)
		}
	}
	if err := im.Commit(); err != nil {
		t.Fatal(err)
	}
}

func scan(t *testing.T, img string) *Report {
	t.Helper()
	im, err := image.Open(img, image.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	r, err := Scan(context.Background(), im, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

const (
	tokenUUID = "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e"
	hvsToken  = "hvs.CAESIJ3fRk2yqCfP0bQnX9cJmzv6YxQz8Hq1WkLrTsUvWxYZGh4KHGh2cy5Qa3NzNnZ5"
)

// TestFindsEveryPlantedSecret plants one of each secret in a demo image
// (which already carries host keys, a machine-id, cloud-init state and
// shell history) and expects each to be found where it was put, and
// nothing where a lookalike is harmless.
func TestFindsEveryPlantedSecret(t *testing.T) {
	img := filepath.Join(t.TempDir(), "base.img")
	if err := demo.Build(context.Background(), img, demo.Options{Size: 640 << 20}); err != nil {
		t.Fatal(err)
	}
	key32 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	key16 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	plant(t, img, map[string]string{
		"/etc/ssl/private/ssl-cert-snakeoil.key":                "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
		"/home/pi/.ssh/id_rsa":                                  "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n",
		"/etc/consul.d/consul.hcl":                              "datacenter = \"dc1\"\nencrypt = \"" + key32 + "\"\nacl {\n  tokens {\n    agent = \"" + tokenUUID + "\"\n  }\n}\n",
		"/etc/consul.d/server.json":                             "{\n  \"encrypt\": \"" + key16 + "\"\n}\n",
		"/etc/nomad.d/nomad.hcl":                                "consul {\n  token = \"" + tokenUUID + "\"\n}\n",
		"/etc/vault-agent/token":                                hvsToken + "\n",
		"/etc/default/myapp":                                    "VAULT_TOKEN=s.abcdefghijklmnopqrstuvwx\n",
		"/etc/environment":                                      "PATH=/usr/bin\nCONSUL_HTTP_TOKEN=" + tokenUUID + "\n",
		"/etc/NetworkManager/system-connections/w.nmconnection": "[wifi-security]\nkey-mgmt=wpa-psk\npsk=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n",
		"boot:/secret.pem":                                      "-----BEGIN EC PRIVATE KEY-----\nMHc\n-----END EC PRIVATE KEY-----\n",
		// Harmless lookalikes.
		"/usr/share/doc/pkg/test-key.pem": "-----BEGIN PRIVATE KEY-----\ntest data shipped by a package\n",
		"/etc/consul.d/weak.hcl":          "encrypt = \"not-a-key\"\nacl { tokens { default = \"00000000-0000-0000-0000-000000000002\" } }\n",
		"/etc/app.bin":                    "\x00\x01binary -----BEGIN PRIVATE KEY----- inside\n",
		"/etc/uuid.conf":                  "default = " + tokenUUID + "\n",
	})
	r := scan(t, img)
	var got []string
	for _, f := range r.Findings {
		loc := f.Partition + ":" + f.Path
		if f.Line > 0 {
			loc += ":" + itoa(f.Line)
		}
		got = append(got, f.Rule+" "+f.Severity+" "+loc)
		for _, secret := range []string{key32, key16, tokenUUID, hvsToken, "abcdefghijklmnopqrstuvwx"} {
			if strings.Contains(f.Message, secret) {
				t.Errorf("finding quotes the secret: %s", f.Message)
			}
		}
	}
	sort.Strings(got)
	want := []string{
		"acl-token error root:/etc/consul.d/consul.hcl:5",
		"acl-token error root:/etc/environment:2",
		"acl-token error root:/etc/nomad.d/nomad.hcl:2",
		"cloud-init-state error root:/var/lib/cloud/data",
		"cloud-init-state error root:/var/lib/cloud/instance",
		"cloud-init-state error root:/var/lib/cloud/instances",
		"consul-gossip-key error root:/etc/consul.d/consul.hcl:2",
		"consul-gossip-key error root:/etc/consul.d/server.json:2",
		"machine-id error root:/etc/machine-id",
		"machine-id error root:/var/lib/dbus/machine-id",
		"private-key error boot:/secret.pem:1",
		"private-key error root:/etc/ssl/private/ssl-cert-snakeoil.key:1",
		"private-key error root:/home/pi/.ssh/id_rsa:1",
		"random-seed warning root:/var/lib/systemd/random-seed",
		"shell-history error root:/home/pi/.bash_history",
		"shell-history error root:/root/.bash_history",
		"ssh-host-key error root:/etc/ssh/ssh_host_ecdsa_key",
		"ssh-host-key error root:/etc/ssh/ssh_host_ed25519_key",
		"ssh-host-key error root:/etc/ssh/ssh_host_rsa_key",
		"vault-token error root:/etc/default/myapp:1",
		"vault-token error root:/etc/vault-agent/token:1",
		"wifi-psk warning root:/etc/NetworkManager/system-connections/w.nmconnection:3",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !r.Failed(false) || r.Warnings != 2 {
		t.Errorf("errors %d warnings %d", r.Errors, r.Warnings)
	}
}

// TestWarningsOnly: only a psk fails nothing unless strict.
func TestWarningsOnly(t *testing.T) {
	r := &Report{Warnings: 1}
	if r.Failed(false) || !r.Failed(true) {
		t.Error("strict handling")
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}

// FuzzRules runs every content rule on arbitrary file contents: no
// panics, lines within the file, and no finding quoting a long secret.
func FuzzRules(f *testing.F) {
	f.Add("/etc/consul.d/x.hcl", []byte("encrypt = \"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\"\n"))
	f.Add("/etc/x", []byte("token = \""+tokenUUID+"\"\n"+hvsToken))
	f.Add("/etc/NetworkManager/a.nmconnection", []byte("psk=12345678\n"))
	f.Add("/root/.ssh/id", []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, path string, data []byte) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		file := &File{Partition: "root", Path: path, Info: fs.FileInfo{Name: filepath.Base(path), Size: int64(len(data))}, Data: data}
		lines := strings.Count(string(data), "\n") + 1
		for _, r := range DefaultRules() {
			for _, fd := range r.Match(file) {
				if fd.Line < 0 || fd.Line > lines {
					t.Fatalf("%s: line %d of %d", r.Name, fd.Line, lines)
				}
				if len(fd.Message) > 300 {
					t.Fatalf("%s: message of %d bytes", r.Name, len(fd.Message))
				}
			}
		}
	})
}
