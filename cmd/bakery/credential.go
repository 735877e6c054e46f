package main

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/bakeryhq/bakery/internal/broker"
	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/flash"
	"github.com/bakeryhq/bakery/internal/server"
)

// vaultFlags name the Vault/OpenBao server and the broker's token that
// bakery flash and bakery serve mint node credentials with (issue 7;
// docs/cluster.md).
type vaultFlags struct {
	addr, tokenFile, caCert, role, mount string
}

func (v *vaultFlags) register(f *pflag.FlagSet, addrHelp string) {
	f.StringVar(&v.addr, "vault-addr", "", addrHelp)
	f.StringVar(&v.tokenFile, "vault-token-file", "", "file holding the broker's token (policy: update on auth/approle/role/ROLE/secret-id and secret-id-accessor/destroy only)")
	f.StringVar(&v.caCert, "vault-ca-cert", "", "PEM CA certificate to verify the Vault server")
	f.StringVar(&v.role, "approle-role", "node", "AppRole role the secret-ids are for")
	f.StringVar(&v.mount, "approle-mount", "approle", "AppRole auth mount path")
}

// broker connects the broker, or returns nil without --vault-addr.
// needAddr names the other flags given that only make sense with it.
func (v *vaultFlags) broker(needAddr ...string) (*broker.Broker, error) {
	if v.addr == "" {
		if v.tokenFile != "" {
			needAddr = append([]string{"--vault-token-file"}, needAddr...)
		}
		switch len(needAddr) {
		case 0:
		case 1:
			return nil, fmt.Errorf("%s needs --vault-addr", needAddr[0])
		default:
			return nil, fmt.Errorf("%s need --vault-addr", strings.Join(needAddr, " and "))
		}
		return nil, nil
	}
	if v.tokenFile == "" {
		return nil, fmt.Errorf("--vault-addr needs --vault-token-file (the broker's token; never on the command line)")
	}
	token, err := broker.ReadTokenFile(v.tokenFile)
	if err != nil {
		return nil, fmt.Errorf("--vault-token-file: %w", err)
	}
	return broker.New(broker.Config{Addr: v.addr, Token: token, CACert: v.caCert, Mount: v.mount, Role: v.role, Logger: slog.Default()})
}

// credentialFlags make bakery flash the broker: each card gets a
// response-wrapped, single-use AppRole secret-id bound to its node's
// reserved address, written to the boot partition where Vault Agent
// expects it.
type credentialFlags struct {
	vault        vaultFlags
	path         string
	nodeIPs      []string
	ttl, wrapTTL time.Duration
}

func (c *credentialFlags) register(f *pflag.FlagSet) {
	c.vault.register(f, "mint a per-card Vault/OpenBao credential from this server (https://vault:8200)")
	f.StringSliceVar(&c.nodeIPs, "node-ip", nil, "each card's reserved node address, in target order (10.0.0.11,10.0.0.12), as CARD=IP, or a pool START+ (10.0.0.11+)")
	f.DurationVar(&c.ttl, "credential-ttl", 72*time.Hour, "how long a card's secret-id stays usable before its first boot")
	f.DurationVar(&c.wrapTTL, "credential-wrap-ttl", 0, "lifetime of the wrapping token on the card (default --credential-ttl)")
	f.StringVar(&c.path, "credential-path", bundle.BootSecretIDPath, "where the wrapping token goes on the boot partition")
}

// customizer returns the per-card credential customizer, or nil when
// --vault-addr is not given.
func (c *credentialFlags) customizer(cards int) (flash.Customizer, error) {
	var orphans []string
	if len(c.nodeIPs) > 0 {
		orphans = append(orphans, "--node-ip")
	}
	if c.vault.addr != "" {
		// Check what the cards need before reaching for the token.
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
		b, err := c.vault.broker()
		if err != nil {
			return nil, err
		}
		return &broker.CardCredentials{Broker: b, IPs: ips, TTL: c.ttl, WrapTTL: c.wrapTTL, Path: c.path}, nil
	}
	_, err := c.vault.broker(orphans...)
	return nil, err
}

// serveCredentialFlags make bakery serve the broker for netbooted nodes
// (POST /boot/credential).
type serveCredentialFlags struct {
	vault        vaultFlags
	ttl, wrapTTL time.Duration
}

func (c *serveCredentialFlags) register(f *pflag.FlagSet) {
	c.vault.register(f, "issue netbooted nodes a wrapped Vault/OpenBao AppRole secret-id (POST /boot/credential)")
	f.DurationVar(&c.ttl, "credential-ttl", 2*time.Minute, "lifetime of a netbooted node's secret-id")
	f.DurationVar(&c.wrapTTL, "credential-wrap-ttl", 60*time.Second, "lifetime of its wrapping token")
}

// issuer returns the credential issuer, or nil without --vault-addr.
func (c *serveCredentialFlags) issuer() (server.CredentialIssuer, error) {
	b, err := c.vault.broker()
	if err != nil || b == nil {
		return nil, err
	}
	return &broker.NetbootIssuer{Broker: b, TTL: c.ttl, WrapTTL: c.wrapTTL}, nil
}
