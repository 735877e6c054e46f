// Package broker mints the one credential a node needs to join the
// cluster: a response-wrapped, single-use AppRole secret-id bound to the
// node's address, from Vault or OpenBao (the same API). Only the wrapping
// token leaves the broker; Vault Agent on the node unwraps it itself
// (secret_id_response_wrapping_path), so a wrapping token used by anyone
// else makes the node's first boot fail loudly instead of silently.
//
// Tokens never appear in logs or errors: they are redacted to their
// prefix; accessors (which cannot be used to authenticate) are logged.
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/openbao/openbao/api/v2"
)

// Broker mints and destroys secret-ids for one AppRole role.
type Broker struct {
	Client *api.Client
	// Mount is the AppRole mount path (default "approle").
	Mount string
	// Role is the role name (default "node").
	Role   string
	Logger *slog.Logger
}

// Config opens a Broker.
type Config struct {
	// Addr is the Vault/OpenBao address (https://vault.example:8200).
	Addr string
	// Token is the broker's own token: a policy allowing only update on
	// auth/approle/role/ROLE/secret-id and secret-id-accessor/destroy.
	Token string
	// CACert is a PEM file to verify the server with ("" = system roots).
	CACert string
	Mount  string
	Role   string
	// Timeout bounds each request (default 30s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// New makes a Broker. It does not read VAULT_*/BAO_* environment
// variables: everything is explicit.
func New(c Config) (*Broker, error) {
	if c.Addr == "" {
		return nil, errors.New("broker: the Vault address is required")
	}
	if c.Token == "" {
		return nil, errors.New("broker: a token is required")
	}
	cfg := api.DefaultConfig()
	cfg.Address = c.Addr
	cfg.Timeout = c.Timeout
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	cfg.MaxRetries = 2
	if c.CACert != "" {
		if err := cfg.ConfigureTLS(&api.TLSConfig{CACert: c.CACert}); err != nil {
			return nil, fmt.Errorf("broker: CA certificate %s: %w", c.CACert, err)
		}
	}
	if cfg.Error != nil {
		return nil, fmt.Errorf("broker: %w", cfg.Error)
	}
	client, err := api.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	client.SetToken(c.Token)
	// Never take a namespace, wrap TTL or token from the environment.
	client.ClearNamespace()
	client.SetWrappingLookupFunc(func(string, string) string { return "" })
	return &Broker{Client: client, Mount: c.Mount, Role: c.Role, Logger: c.Logger}, nil
}

// ReadTokenFile reads a token file (trailing whitespace removed).
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	t := strings.TrimSpace(string(b))
	if t == "" || strings.ContainsAny(t, " \n") {
		return "", fmt.Errorf("%s does not hold one token", path)
	}
	return t, nil
}

func (b *Broker) mount() string {
	if b.Mount == "" {
		return "approle"
	}
	return strings.Trim(b.Mount, "/")
}

func (b *Broker) role() string {
	if b.Role == "" {
		return "node"
	}
	return b.Role
}

func (b *Broker) logger() *slog.Logger {
	if b.Logger != nil {
		return b.Logger
	}
	return slog.Default()
}

// CreationPath is where the role's secret-ids are created: the path a
// wrapping token's creation_path must show, and Vault Agent's
// secret_id_response_wrapping_path.
func (b *Broker) CreationPath() string {
	return "auth/" + b.mount() + "/role/" + b.role() + "/secret-id"
}

// Request describes one secret-id.
type Request struct {
	// CIDRs limit where the secret-id may be used from (cidr_list) and,
	// unless TokenCIDRs is given, where the resulting token may be used
	// (token_bound_cidrs). A node's reserved address is one /32.
	CIDRs      []netip.Prefix
	TokenCIDRs []netip.Prefix
	// TTL of the secret-id (hours to days for a flashed card, minutes
	// for a netbooted node).
	TTL time.Duration
	// WrapTTL of the wrapping token (default TTL).
	WrapTTL time.Duration
	// NumUses of the secret-id (default 1).
	NumUses int
	// Metadata is attached to the secret-id and shows in the token's
	// metadata and the audit log (card number, MAC, hostname).
	Metadata map[string]string
}

// Credential is a minted, wrapped secret-id.
type Credential struct {
	// WrapToken is the wrapping token: the only thing the node gets.
	WrapToken string `json:"-"`
	// WrapAccessor is the wrapping token's accessor.
	WrapAccessor string `json:"wrap_accessor"`
	// SecretIDAccessor identifies the secret-id (to destroy it unused).
	SecretIDAccessor string `json:"secret_id_accessor"`
	CreationPath     string `json:"creation_path"`
	// Expires is when the wrapping token expires.
	Expires time.Time `json:"expires"`
}

// String never shows the token.
func (c *Credential) String() string {
	return fmt.Sprintf("wrapped secret-id %s (token %s, expires %s)", c.SecretIDAccessor, Redact(c.WrapToken), c.Expires.Format(time.RFC3339))
}

// Mint creates a wrapped secret-id:
// POST auth/approle/role/ROLE/secret-id with X-Vault-Wrap-TTL.
func (b *Broker) Mint(ctx context.Context, req Request) (*Credential, error) {
	if len(req.CIDRs) == 0 {
		return nil, errors.New("mint: bind the secret-id to the node's address (at least one CIDR)")
	}
	if req.TTL <= 0 {
		return nil, errors.New("mint: a TTL is required")
	}
	wrap := req.WrapTTL
	if wrap <= 0 {
		wrap = req.TTL
	}
	uses := req.NumUses
	if uses <= 0 {
		uses = 1
	}
	tokenCIDRs := req.TokenCIDRs
	if len(tokenCIDRs) == 0 {
		tokenCIDRs = req.CIDRs
	}
	meta := map[string]string{}
	for k, v := range req.Metadata {
		meta[k] = v
	}
	if len(meta) == 0 {
		meta["issued_by"] = "bakery"
	}
	body := map[string]any{
		"cidr_list":         prefixes(req.CIDRs),
		"token_bound_cidrs": prefixes(tokenCIDRs),
		"num_uses":          uses,
		"ttl":               fmt.Sprintf("%ds", int(req.TTL.Seconds())),
		// Vault wants metadata as a JSON string of string values.
		"metadata": jsonString(meta),
	}
	r := b.Client.NewRequest("POST", "/v1/"+b.CreationPath())
	r.WrapTTL = fmt.Sprintf("%ds", int(wrap.Seconds()))
	if err := r.SetJSONBody(body); err != nil {
		return nil, err
	}
	resp, err := b.Client.RawRequestWithContext(ctx, r) //nolint:staticcheck // the only API that sends a per-request wrap TTL
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("mint a secret-id for role %q: %w", b.role(), redactErr(err))
	}
	secret, err := api.ParseSecret(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("mint: parse the reply: %w", err)
	}
	if secret == nil || secret.WrapInfo == nil || secret.WrapInfo.Token == "" {
		return nil, errors.New("mint: the reply is not wrapped; refusing an unwrapped secret-id (is the path behind a proxy that drops X-Vault-Wrap-TTL?)")
	}
	wi := secret.WrapInfo
	if wi.CreationPath != b.CreationPath() {
		return nil, fmt.Errorf("mint: the wrapping token was created at %q, not %q", wi.CreationPath, b.CreationPath())
	}
	c := &Credential{WrapToken: wi.Token, WrapAccessor: wi.Accessor, SecretIDAccessor: wi.WrappedAccessor, CreationPath: wi.CreationPath}
	if !wi.CreationTime.IsZero() {
		c.Expires = wi.CreationTime.Add(time.Duration(wi.TTL) * time.Second)
	} else {
		c.Expires = time.Now().Add(time.Duration(wi.TTL) * time.Second)
	}
	b.logger().Info("minted wrapped secret-id", "role", b.role(), "secret_id_accessor", c.SecretIDAccessor,
		"wrap_accessor", c.WrapAccessor, "cidrs", prefixes(req.CIDRs), "ttl", req.TTL, "wrap_ttl", wrap, "token", Redact(c.WrapToken))
	return c, nil
}

// Destroy revokes an unused secret-id by its accessor:
// POST auth/approle/role/ROLE/secret-id-accessor/destroy.
func (b *Broker) Destroy(ctx context.Context, accessor string) error {
	if accessor == "" {
		return errors.New("destroy: no accessor")
	}
	_, err := b.Client.Logical().WriteWithContext(ctx, "auth/"+b.mount()+"/role/"+b.role()+"/secret-id-accessor/destroy",
		map[string]any{"secret_id_accessor": accessor})
	if err != nil {
		return fmt.Errorf("destroy secret-id %s: %w", accessor, redactErr(err))
	}
	b.logger().Info("destroyed unused secret-id", "role", b.role(), "secret_id_accessor", accessor)
	return nil
}

func prefixes(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Masked().String()
	}
	return out
}

func jsonString(m map[string]string) string {
	b, _ := json.Marshal(m) // a map of strings always marshals, keys sorted
	return string(b)
}

var tokenRE = regexp.MustCompile(`\b(hv[sbr]\.|[sb]\.)[A-Za-z0-9_-]{8,}`)

// Redact hides a token, keeping its type prefix: "hvs.CAES…" becomes
// "hvs.***".
func Redact(s string) string {
	if s == "" {
		return ""
	}
	if i := strings.IndexByte(s, '.'); i > 0 && i <= 3 {
		return s[:i+1] + "***"
	}
	return "***"
}

// RedactText hides every token inside a text (an error message).
func RedactText(s string) string {
	return tokenRE.ReplaceAllStringFunc(s, Redact)
}

type redacted struct{ err error }

func (r redacted) Error() string { return RedactText(r.err.Error()) }
func (r redacted) Unwrap() error { return r.err }

func redactErr(err error) error { return redacted{err} }
