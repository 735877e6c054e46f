// Package secretscan recognises cluster secrets that must never be baked
// into a golden image: Consul/Nomad gossip keys, Vault/OpenBao tokens,
// Consul/Nomad ACL tokens (UUIDs in token fields) and private keys. The spec
// check (`bakery validate`, and `bakery pkg --config`) uses Value on every
// string of a spec and Text on the files and packages it bakes in. `bakery
// audit` has its own rules (internal/audit), tuned for whole images.
//
// Detection favours precision over recall where a shape alone is
// ambiguous: a bare UUID is only a token when it sits in a field whose
// name says token, and a 32-byte base64 string is only a gossip key when
// it is a whole value or the value of an encrypt/gossip field.
package secretscan

import (
	"bytes"
	"encoding/base64"
	"regexp"
	"sort"
	"strings"
)

// Kinds of finding.
const (
	GossipKey  = "gossip-key"
	VaultToken = "vault-token"
	ACLToken   = "acl-token"
	PrivateKey = "private-key"
)

// Finding is one secret found in a text.
type Finding struct {
	Kind string
	// Offset is the byte offset of the secret in the scanned text.
	Offset int
	// Line is the 1-based line of Offset.
	Line int
	// Excerpt identifies the secret without revealing it: a prefix and
	// its length ("hvs.CAES… (95 bytes)").
	Excerpt string
}

// Describe says what was found in words.
func (f Finding) Describe() string {
	switch f.Kind {
	case GossipKey:
		return "a gossip encryption key"
	case VaultToken:
		return "a Vault/OpenBao token"
	case ACLToken:
		return "an ACL token"
	case PrivateKey:
		return "a private key"
	}
	return f.Kind
}

var (
	// Vault/OpenBao tokens: current service (hvs.), batch (hvb.) and
	// recovery (hvr.) tokens, and the legacy s./b. forms (24 base62
	// characters for service tokens, longer for batch ones).
	vaultTokenRE = regexp.MustCompile(`\bhv[sbr]\.[A-Za-z0-9_-]{20,}|\b[sb]\.[A-Za-z0-9]{24,}\b`)
	// PEM and OpenSSH private keys. Public keys and certificates are fine.
	privateKeyRE = regexp.MustCompile(`-----BEGIN ((RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY( BLOCK)?-----`)
	// uuidishRE is the cheap test before tokenFieldRE: the middle of a UUID.
	uuidishRE = regexp.MustCompile(`-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-`)
	uuidRE    = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	// A quoted UUID assigned to a key naming a token (HCL, JSON or YAML):
	// token = "…", "agent": "…", CONSUL_HTTP_TOKEN=…
	tokenFieldRE = regexp.MustCompile(`(?i)\b([a-z_]*(token|secret_id|initial_management|master|agent|default|replication|dns)[a-z_]*)"?\s*[:=]\s*"?([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})\b`)
	// encrypt = "…" (Consul, Nomad server), "encrypt": "…", gossip_key: …
	gossipFieldRE = regexp.MustCompile(`(?i)\b(encrypt|gossip_key|gossip_encryption_key|encrypt_key)"?\s*[:=]\s*"?([A-Za-z0-9+/]{22,}={0,2})`)
	// Wildcard sentinel UUIDs Consul and Nomad document as special.
	wellKnownUUIDs = map[string]bool{
		"00000000-0000-0000-0000-000000000000": true, // nil UUID
		"00000000-0000-0000-0000-000000000002": true, // Consul's anonymous token accessor
	}
)

// IsGossipKey reports whether s, as a whole value, is a gossip key: the
// base64 encoding of 32 random bytes (Consul also accepts 16 and 24).
func IsGossipKey(s string) bool {
	s = strings.TrimSpace(s)
	if len(s) != 24 && len(s) != 32 && len(s) != 44 {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return false
	}
	switch len(b) {
	case 16, 24, 32:
	default:
		return false
	}
	// A key is random: refuse runs such as "AAAA…" that are padding or
	// placeholders, and things that are plain words.
	distinct := map[byte]bool{}
	for _, c := range b {
		distinct[c] = true
	}
	return len(distinct) >= len(b)/2
}

// Value checks one whole value from a spec (an attribute or list
// element). fieldName is the attribute's name, used to decide whether a
// UUID is a token.
func Value(fieldName, s string) []Finding {
	var out []Finding
	trimmed := strings.TrimSpace(s)
	if IsGossipKey(trimmed) {
		out = append(out, finding(GossipKey, s, strings.Index(s, trimmed), len(trimmed)))
	}
	if uuidRE.MatchString(trimmed) && !wellKnownUUIDs[strings.ToLower(trimmed)] && tokenish(fieldName) {
		out = append(out, finding(ACLToken, s, strings.Index(s, trimmed), len(trimmed)))
	}
	return merge(out, Text(s))
}

func tokenish(field string) bool {
	f := strings.ToLower(field)
	return strings.Contains(f, "token") || strings.Contains(f, "secret_id") || strings.Contains(f, "secret")
}

// IsBinary reports whether data is binary rather than text: a NUL in the
// first 8 KiB, as grep and git decide. Secrets in configuration are text,
// so binaries are not scanned.
func IsBinary(data []byte) bool {
	return bytes.IndexByte(data[:min(len(data), 8192)], 0) >= 0
}

// Text scans free text (a configuration file, a file's content in a spec)
// for secrets in any position. Each pattern runs only when a cheap
// substring test says it could match: most text holds none of them.
func Text(s string) []Finding {
	var out []Finding
	if strings.Contains(s, "hv") || strings.Contains(s, "s.") || strings.Contains(s, "b.") {
		for _, m := range vaultTokenRE.FindAllStringIndex(s, -1) {
			out = append(out, finding(VaultToken, s, m[0], m[1]-m[0]))
		}
	}
	if strings.Contains(s, "PRIVATE KEY") {
		for _, m := range privateKeyRE.FindAllStringIndex(s, -1) {
			out = append(out, finding(PrivateKey, s, m[0], m[1]-m[0]))
		}
	}
	if uuidishRE.MatchString(s) {
		for _, m := range tokenFieldRE.FindAllStringSubmatchIndex(s, -1) {
			if v := s[m[6]:m[7]]; !wellKnownUUIDs[strings.ToLower(v)] {
				out = append(out, finding(ACLToken, s, m[6], m[7]-m[6]))
			}
		}
	}
	if containsFold(s, "encrypt") || containsFold(s, "gossip") {
		for _, m := range gossipFieldRE.FindAllStringSubmatchIndex(s, -1) {
			if IsGossipKey(s[m[4]:m[5]]) {
				out = append(out, finding(GossipKey, s, m[4], m[5]-m[4]))
			}
		}
	}
	return merge(out, nil)
}

// containsFold is an ASCII case-insensitive strings.Contains for a
// lower-case needle, without copying s.
func containsFold(s, lowerNeedle string) bool {
	upper := strings.ToUpper(lowerNeedle[:1])
	for i := 0; i+len(lowerNeedle) <= len(s); {
		j := strings.IndexAny(s[i:], lowerNeedle[:1]+upper)
		if j < 0 || i+j+len(lowerNeedle) > len(s) {
			return false
		}
		if strings.EqualFold(s[i+j:i+j+len(lowerNeedle)], lowerNeedle) {
			return true
		}
		i += j + 1
	}
	return false
}

func finding(kind, s string, off, n int) Finding {
	if off < 0 {
		off = 0
	}
	secret := s[off : off+n]
	prefix := secret
	if kind == PrivateKey {
		prefix = strings.Trim(secret, "-")
	} else if len(prefix) > 4 {
		// Enough to recognise the kind and find it in the file, never
		// enough to use it.
		cut := 4
		if i := strings.IndexByte(secret, '.'); i > 0 && i < 4 {
			cut = i + 1
		}
		prefix = secret[:cut] + "…"
	}
	return Finding{Kind: kind, Offset: off, Line: 1 + strings.Count(s[:off], "\n"),
		Excerpt: prefix + " (" + itoa(n) + " bytes)"}
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// merge sorts findings by offset and drops a finding at an offset already
// reported.
func merge(a, b []Finding) []Finding {
	all := append(a, b...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].Offset < all[j].Offset })
	var out []Finding
	seen := map[int]bool{}
	for _, f := range all {
		if seen[f.Offset] {
			continue
		}
		seen[f.Offset] = true
		out = append(out, f)
	}
	return out
}
