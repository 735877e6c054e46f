package secretscan

import (
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
)

func gossipKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestValueFindsEachKind(t *testing.T) {
	key := gossipKey(t)
	cases := []struct {
		field, value, kind string
	}{
		{"content", key, GossipKey},
		{"content", "encrypt = \"" + key + "\"\n", GossipKey},
		{"content", `{"encrypt": "` + key + `"}`, GossipKey},
		{"content", "hvs.CAESIJxYZ0123456789abcdefghijklmnopqrs", VaultToken},
		{"content", "token: hvb.AAAAAQJ0123456789abcdefghijklmnop", VaultToken},
		{"content", "VAULT_TOKEN=s.Ab3dEfGhIjKlMnOpQrStUvWx", VaultToken},
		{"agent_token", "6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69", ACLToken},
		{"content", "acl {\n  tokens {\n    agent = \"6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69\"\n  }\n}\n", ACLToken},
		{"content", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n", PrivateKey},
		{"content", "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n", PrivateKey},
		{"content", "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n", PrivateKey},
	}
	for _, c := range cases {
		got := Value(c.field, c.value)
		if len(got) != 1 || got[0].Kind != c.kind {
			t.Errorf("Value(%q, %q) = %+v, want one %s", c.field, c.value, got, c.kind)
			continue
		}
		if strings.Contains(got[0].Excerpt, c.value) && len(c.value) > 10 {
			t.Errorf("excerpt %q reveals the secret", got[0].Excerpt)
		}
	}
}

func TestValueIgnoresPublicMaterial(t *testing.T) {
	for _, v := range []struct{ field, value string }{
		{"role_id", "6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69"}, // an identifier, not a credential
		{"checksum", "sha256:2b7e151628aed2a6abf7158809cf4f3c2b7e151628aed2a6abf7158809cf4f3c"},
		{"ssh_authorized_keys", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@example"},
		{"content", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
		{"content", "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"},
		{"password_hash", "$6$rounds=4096$saltsalt$abcdefghijklmnopqrstuv"},
		{"content", "encrypt = true\nverify_incoming = true\n"},
		{"content", "this is s.something else and b.other"},
		{"hostname", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},
		{"content", "agent = \"00000000-0000-0000-0000-000000000000\""},
	} {
		if got := Value(v.field, v.value); len(got) != 0 {
			t.Errorf("Value(%q, %q) = %+v, want nothing", v.field, v.value, got)
		}
	}
}

func TestTextLines(t *testing.T) {
	txt := "a\nb\nencrypt = \"" + gossipKey(t) + "\"\n"
	got := Text(txt)
	if len(got) != 1 || got[0].Line != 3 {
		t.Fatalf("Text = %+v, want one finding on line 3", got)
	}
}

func FuzzText(f *testing.F) {
	f.Add("encrypt = \"pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=\"")
	f.Add("hvs.CAESIJxYZ0123456789abcdefghijklmnopqrs")
	f.Add("-----BEGIN RSA PRIVATE KEY-----")
	f.Fuzz(func(t *testing.T, s string) {
		for _, fd := range Text(s) {
			if fd.Offset < 0 || fd.Offset > len(s) || fd.Line < 1 {
				t.Fatalf("bad finding %+v", fd)
			}
		}
		Value("agent_token", s)
	})
}

// TestPrefiltersLoseNothing: Text's cheap substring tests must never hide
// a match the patterns alone would find, whatever the case or position.
func TestPrefiltersLoseNothing(t *testing.T) {
	for _, text := range []string{
		"Encrypt = \"pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=\"",
		"GOSSIP_KEY: pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=",
		"x-----BEGIN RSA PRIVATE KEY-----",
		"agent_token = \"6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69\"",
		"s.ABCDEFGHIJKLMNOPQRSTUVWXYZ",
	} {
		if len(Text(text)) != 1 {
			t.Errorf("Text(%q) = %v", text, Text(text))
		}
	}
	for _, c := range []struct {
		s, needle string
		want      bool
	}{{"xxENCRYPT", "encrypt", true}, {"enCrypT", "encrypt", true}, {"encryp", "encrypt", false}, {"", "encrypt", false}, {"eeeencrypt", "encrypt", true}} {
		if got := containsFold(c.s, c.needle); got != c.want {
			t.Errorf("containsFold(%q, %q) = %v", c.s, c.needle, got)
		}
	}
}

func BenchmarkText(b *testing.B) {
	text := strings.Repeat("ExecStart=/usr/bin/consul agent -config-dir=/etc/consul.d\n", 70000) // ~4 MiB
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		Text(text)
	}
}
