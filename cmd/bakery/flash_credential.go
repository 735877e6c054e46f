package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/bakeryhq/bakery/internal/broker"
	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/flash"
)

// credentialFlags make bakery flash the broker of issue 7: each card gets
// a response-wrapped, single-use AppRole secret-id bound to its node's
// reserved address, written to the boot partition where Vault Agent
// expects it (docs/cluster.md).
type credentialFlags struct {
	vaultAddr, tokenFile, caCert, role, mount, path string
	nodeIPs                                         []string
	ttl, wrapTTL                                    time.Duration
}

func (c *credentialFlags) register(f *pflag.FlagSet) {
	f.StringVar(&c.vaultAddr, "vault-addr", "", "mint a per-card Vault/OpenBao credential from this server (https://vault:8200)")
	f.StringVar(&c.tokenFile, "vault-token-file", "", "file holding the broker's token (policy: update on auth/approle/role/ROLE/secret-id and secret-id-accessor/destroy only)")
	f.StringVar(&c.caCert, "vault-ca-cert", "", "PEM CA certificate to verify the Vault server")
	f.StringVar(&c.role, "approle-role", "node", "AppRole role the secret-ids are for")
	f.StringVar(&c.mount, "approle-mount", "approle", "AppRole auth mount path")
	f.StringSliceVar(&c.nodeIPs, "node-ip", nil, "each card's reserved node address, in target order (10.0.0.11,10.0.0.12), as CARD=IP, or a pool START+ (10.0.0.11+)")
	f.DurationVar(&c.ttl, "credential-ttl", 72*time.Hour, "how long a card's secret-id stays usable before its first boot")
	f.DurationVar(&c.wrapTTL, "credential-wrap-ttl", 0, "lifetime of the wrapping token on the card (default --credential-ttl)")
	f.StringVar(&c.path, "credential-path", bundle.BootSecretIDPath, "where the wrapping token goes on the boot partition")
}

// customizer returns the per-card credential customizer, or nil when
// --vault-addr is not given.
func (c *credentialFlags) customizer(cards int) (flash.Customizer, error) {
	if c.vaultAddr == "" {
		if c.tokenFile != "" || len(c.nodeIPs) > 0 {
			return nil, fmt.Errorf("--vault-token-file and --node-ip need --vault-addr")
		}
		return nil, nil
	}
	if c.tokenFile == "" {
		return nil, fmt.Errorf("--vault-addr needs --vault-token-file (the broker's token; never on the command line)")
	}
	token, err := broker.ReadTokenFile(c.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("--vault-token-file: %w", err)
	}
	ips, err := broker.ParseNodeIPs(c.nodeIPs)
	if err != nil {
		return nil, err
	}
	if err := ips.Check(cards); err != nil {
		return nil, err
	}
	if c.ttl < time.Minute || c.ttl > 30*24*time.Hour {
		return nil, fmt.Errorf("--credential-ttl %s: want between 1m and 720h", c.ttl)
	}
	b, err := broker.New(broker.Config{Addr: c.vaultAddr, Token: token, CACert: c.caCert, Mount: c.mount, Role: c.role, Logger: slog.Default()})
	if err != nil {
		return nil, err
	}
	return &broker.CardCredentials{Broker: b, IPs: ips, TTL: c.ttl, WrapTTL: c.wrapTTL, Path: c.path}, nil
}
