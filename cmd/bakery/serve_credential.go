package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/bakeryhq/bakery/internal/broker"
	"github.com/bakeryhq/bakery/internal/server"
)

// serveCredentialFlags make bakery serve the broker for netbooted nodes
// (POST /boot/credential; docs/cluster.md).
type serveCredentialFlags struct {
	vaultAddr, tokenFile, caCert, role, mount string
	ttl, wrapTTL                              time.Duration
}

func (c *serveCredentialFlags) register(f *pflag.FlagSet) {
	f.StringVar(&c.vaultAddr, "vault-addr", "", "issue netbooted nodes a wrapped Vault/OpenBao AppRole secret-id (POST /boot/credential)")
	f.StringVar(&c.tokenFile, "vault-token-file", "", "file holding the broker's token (policy: update on auth/approle/role/ROLE/secret-id and secret-id-accessor/destroy only)")
	f.StringVar(&c.caCert, "vault-ca-cert", "", "PEM CA certificate to verify the Vault server")
	f.StringVar(&c.role, "approle-role", "node", "AppRole role the secret-ids are for")
	f.StringVar(&c.mount, "approle-mount", "approle", "AppRole auth mount path")
	f.DurationVar(&c.ttl, "credential-ttl", 2*time.Minute, "lifetime of a netbooted node's secret-id")
	f.DurationVar(&c.wrapTTL, "credential-wrap-ttl", 60*time.Second, "lifetime of its wrapping token")
}

// issuer returns the credential issuer, or nil without --vault-addr.
func (c *serveCredentialFlags) issuer() (server.CredentialIssuer, error) {
	if c.vaultAddr == "" {
		if c.tokenFile != "" {
			return nil, fmt.Errorf("--vault-token-file needs --vault-addr")
		}
		return nil, nil
	}
	if c.tokenFile == "" {
		return nil, fmt.Errorf("--vault-addr needs --vault-token-file")
	}
	token, err := broker.ReadTokenFile(c.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("--vault-token-file: %w", err)
	}
	b, err := broker.New(broker.Config{Addr: c.vaultAddr, Token: token, CACert: c.caCert, Mount: c.mount, Role: c.role, Logger: slog.Default()})
	if err != nil {
		return nil, err
	}
	return &broker.NetbootIssuer{Broker: b, TTL: c.ttl, WrapTTL: c.wrapTTL}, nil
}
