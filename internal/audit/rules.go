package audit

import (
	"encoding/base64"
	"path"
	"regexp"
	"strings"
)

// DefaultRules is the rule table bakery audit uses.
func DefaultRules() []Rule {
	return []Rule{
		{Name: "ssh-host-key", Severity: Error, Description: "an SSH host private key", Match: matchSSHHostKey},
		{Name: "private-key", Severity: Error, Description: "a PEM or OpenSSH private key", Match: matchPrivateKey},
		{Name: "machine-id", Severity: Error, Description: "a machine-id other machines would share", Match: matchMachineID},
		{Name: "cloud-init-state", Severity: Error, Description: "cloud-init instance state (cloud-init would not run again)", Match: matchCloudInit},
		{Name: "shell-history", Severity: Error, Description: "a shell or tool history file", Match: matchHistory},
		{Name: "consul-gossip-key", Severity: Error, Description: "a Consul gossip encryption key", Match: matchGossipKey},
		{Name: "vault-token", Severity: Error, Description: "a Vault token", Match: matchVaultToken},
		{Name: "acl-token", Severity: Error, Description: "a Consul or Nomad ACL token", Match: matchACLToken},
		{Name: "node-credential", Severity: Error, Description: "a node's AppRole secret-id or Vault Agent token", Match: matchNodeCredential},
		{Name: "wifi-psk", Severity: Warning, Description: "a wifi pre-shared key (legitimate when the spec asks for wifi)", Match: matchWifiPSK},
		{Name: "random-seed", Severity: Warning, Description: "a saved random seed machines would share", Match: matchRandomSeed},
	}
}

func onRoot(f *File) bool { return f.Partition == "root" }

func matchSSHHostKey(f *File) []Finding {
	base := path.Base(f.Path)
	if !onRoot(f) || path.Dir(f.Path) != "/etc/ssh" || !f.Info.IsRegular() || f.Info.Size == 0 ||
		!strings.HasPrefix(base, "ssh_host_") || !strings.HasSuffix(base, "_key") {
		return nil
	}
	return []Finding{{Message: "SSH host private key: every machine flashed from this image would share it (golden { ssh_host_keys = true } removes it)"}}
}

var privateKeyRE = regexp.MustCompile(`-----BEGIN ((RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY( BLOCK)?-----`)

func matchPrivateKey(f *File) []Finding {
	if f.Data == nil || len(matchSSHHostKey(f)) > 0 {
		return nil
	}
	var out []Finding
	for _, loc := range privateKeyRE.FindAllIndex(f.Data, 8) {
		out = append(out, Finding{Line: lineOf(f.Data, loc[0]), Message: "private key block: " + strings.Trim(string(f.Data[loc[0]:loc[1]]), "-")})
	}
	return out
}

func matchMachineID(f *File) []Finding {
	if !onRoot(f) || !f.Info.IsRegular() {
		return nil
	}
	switch f.Path {
	case "/etc/machine-id":
		if f.Info.Size > 0 && strings.TrimSpace(string(f.Data)) != "uninitialized" {
			return []Finding{{Message: "non-empty machine-id: every machine would share it, and systemd would not treat the first boot as such (golden { machine_id = true } empties it)"}}
		}
	case "/var/lib/dbus/machine-id":
		if f.Info.Size > 0 {
			return []Finding{{Message: "D-Bus machine-id file: every machine would share it (golden { machine_id = true } removes it)"}}
		}
	case "/var/lib/systemd/credential.secret":
		return []Finding{{Message: "systemd credential secret: every machine would decrypt the others' credentials"}}
	}
	return nil
}

func matchCloudInit(f *File) []Finding {
	if !onRoot(f) || path.Dir(f.Path) != "/var/lib/cloud" {
		return nil
	}
	switch path.Base(f.Path) {
	case "instance", "instances", "data", "sem":
		return []Finding{{Message: "cloud-init instance state: cloud-init would consider the first boot already done (golden { cloud_init_state = true } removes it)"}}
	}
	return nil
}

var historyNames = map[string]bool{".bash_history": true, ".zsh_history": true, ".sh_history": true, ".ash_history": true,
	".history": true, ".python_history": true, ".mysql_history": true, ".psql_history": true, ".sqlite_history": true,
	".lesshst": true, ".viminfo": true, ".node_repl_history": true, "fish_history": true}

func matchHistory(f *File) []Finding {
	if !onRoot(f) || !f.Info.IsRegular() || f.Info.Size == 0 || !historyNames[path.Base(f.Path)] {
		return nil
	}
	if !(strings.HasPrefix(f.Path, "/root/") || strings.HasPrefix(f.Path, "/home/") || strings.HasPrefix(f.Path, "/var/")) {
		return nil
	}
	return []Finding{{Message: "shell history (golden { shell_history = true } removes it)"}}
}

var gossipRE = regexp.MustCompile(`(?m)["']?\bencrypt["']?\s*[:=]\s*["']([A-Za-z0-9+/]{20,}={0,2})["']`)

func matchGossipKey(f *File) []Finding {
	if f.Data == nil {
		return nil
	}
	var out []Finding
	for _, m := range gossipRE.FindAllSubmatchIndex(f.Data, 8) {
		key := string(f.Data[m[2]:m[3]])
		b, err := base64.StdEncoding.DecodeString(key)
		if err != nil || (len(b) != 16 && len(b) != 24 && len(b) != 32) {
			continue
		}
		out = append(out, Finding{Line: lineOf(f.Data, m[0]), Message: "Consul gossip encryption key: whoever has the image can join and read the gossip pool; deliver it at first boot instead"})
	}
	return out
}

var (
	vaultTokenRE  = regexp.MustCompile(`\bhv[sbr]\.[A-Za-z0-9_-]{24,}`)
	legacyTokenRE = regexp.MustCompile(`(?i)(token|vault_token)["']?\s*[:=]\s*["']?([sbr]\.[A-Za-z0-9]{24})\b`)
)

func matchVaultToken(f *File) []Finding {
	if f.Data == nil {
		return nil
	}
	var out []Finding
	for _, loc := range vaultTokenRE.FindAllIndex(f.Data, 8) {
		out = append(out, Finding{Line: lineOf(f.Data, loc[0]), Message: "Vault token (" + string(f.Data[loc[0]:loc[0]+4]) + "...)"})
	}
	for _, m := range legacyTokenRE.FindAllSubmatchIndex(f.Data, 8) {
		out = append(out, Finding{Line: lineOf(f.Data, m[0]), Message: "Vault token (legacy " + string(f.Data[m[4]:m[4]+2]) + "... format)"})
	}
	return out
}

const uuidPattern = `[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`

var (
	// Keys named *token anywhere; in Consul/Nomad configuration also the
	// acl { tokens { ... } } names.
	tokenKeyRE = regexp.MustCompile(`(?im)["']?\b([a-z_]*token)["']?\s*[:=]\s*["']?(` + uuidPattern + `)\b`)
	aclKeyRE   = regexp.MustCompile(`(?im)["']?\b(agent|default|initial_management|master|replication|agent_recovery|agent_master|dns|config_file_service_registration)["']?\s*[:=]\s*["']?(` + uuidPattern + `)\b`)
)

// wellKnownTokens are public constants, not secrets.
var wellKnownTokens = map[string]bool{"00000000-0000-0000-0000-000000000000": true, "00000000-0000-0000-0000-000000000002": true}

func isHashiCorpConfig(p string) bool {
	return strings.HasPrefix(p, "/etc/consul") || strings.HasPrefix(p, "/etc/nomad") || strings.HasPrefix(p, "/etc/vault") ||
		strings.Contains(p, "consul") || strings.Contains(p, "nomad")
}

func matchACLToken(f *File) []Finding {
	if f.Data == nil {
		return nil
	}
	var out []Finding
	res := []*regexp.Regexp{tokenKeyRE}
	if isHashiCorpConfig(f.Path) {
		res = append(res, aclKeyRE)
	}
	seen := map[int]bool{}
	for _, re := range res {
		for _, m := range re.FindAllSubmatchIndex(f.Data, 8) {
			if wellKnownTokens[strings.ToLower(string(f.Data[m[4]:m[5]]))] {
				continue
			}
			line := lineOf(f.Data, m[0])
			if seen[line] {
				continue
			}
			seen[line] = true
			key := string(f.Data[m[2]:m[3]])
			if len(key) > 40 {
				key = key[:40] + "..."
			}
			out = append(out, Finding{Line: line, Message: "ACL token (" + key + " = <uuid>): whoever has the image holds it; deliver tokens at first boot instead"})
		}
	}
	return out
}

var pskRE = regexp.MustCompile(`(?m)^\s*(psk|wpa-psk)\s*[=\s]\s*\S`)

func matchWifiPSK(f *File) []Finding {
	if f.Data == nil || !onRoot(f) {
		return nil
	}
	if !(strings.HasSuffix(f.Path, ".nmconnection") || strings.HasPrefix(f.Path, "/etc/wpa_supplicant/") ||
		strings.HasPrefix(f.Path, "/etc/network/interfaces") || strings.HasPrefix(f.Path, "/etc/NetworkManager/")) {
		return nil
	}
	var out []Finding
	for _, loc := range pskRE.FindAllIndex(f.Data, 4) {
		out = append(out, Finding{Line: lineOf(f.Data, loc[0]), Message: "wifi pre-shared key: anyone with the image can join that network (expected when the spec has a wifi block)"})
	}
	return out
}

func matchRandomSeed(f *File) []Finding {
	if onRoot(f) && f.Info.IsRegular() && (f.Path == "/var/lib/systemd/random-seed" || f.Path == "/var/lib/urandom/random-seed") {
		return []Finding{{Message: "saved random seed: machines would start from the same entropy (golden { random_seed = true } removes it)"}}
	}
	return nil
}
