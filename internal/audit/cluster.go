package audit

import "strings"

// Rules of issue 7: per-node credentials that only bakery flash (per
// card) or bakery serve (per boot) may deliver, never a golden image.

// credentialPaths are where a node's wrapped secret-id and Vault Agent's
// token live on a running node.
var credentialPaths = map[string]map[string]string{
	"boot": {
		"/bakery/secret-id": "a node's wrapped AppRole secret-id (bakery flash writes one per card; in a golden image every card would share it)",
	},
	"root": {
		"/boot/firmware/bakery/secret-id": "a node's wrapped AppRole secret-id",
		"/boot/bakery/secret-id":          "a node's wrapped AppRole secret-id",
		"/run/bakery/secret-id":           "a node's wrapped AppRole secret-id (netboot delivers it to tmpfs at boot)",
		"/run/vault-agent/token":          "Vault Agent's token sink",
		"/var/lib/vault-agent/token":      "Vault Agent's token sink",
	},
}

func matchNodeCredential(f *File) []Finding {
	if !f.Info.IsRegular() || f.Info.Size == 0 {
		return nil
	}
	what, ok := credentialPaths[f.Partition][f.Path]
	if !ok && f.Partition == "root" && strings.HasPrefix(f.Path, "/etc/vault-agent.d/") && strings.Contains(f.Path, "secret-id") {
		what, ok = "an AppRole secret-id in Vault Agent's configuration", true
	}
	if !ok {
		return nil
	}
	return []Finding{{Message: what + ": credentials reach each node at run time, never through the image"}}
}
