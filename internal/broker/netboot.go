package broker

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// NetbootIssuer issues netbooted nodes their credential for bakery
// serve (server.CredentialIssuer): a secret-id valid for TTL (default 2
// minutes), wrapped for WrapTTL (default 60 seconds), bound to the
// caller's address, at most once per boot.
type NetbootIssuer struct {
	Broker       *Broker
	TTL, WrapTTL time.Duration
	// Window is the minimum time between two issues to one machine when
	// its boot time is unknown (default 10 minutes).
	Window time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu     sync.Mutex
	issued map[string]issue
}

type issue struct {
	boot time.Time // the boot it was issued for (zero if unknown)
	at   time.Time
}

// TooSoonError refuses a second credential within one boot.
type TooSoonError struct {
	Machine string
	Wait    time.Duration
}

func (e *TooSoonError) Error() string {
	return fmt.Sprintf("a credential was already issued to %s for this boot", e.Machine)
}

// RetryAfter says when a new boot window may start at the earliest.
func (e *TooSoonError) RetryAfter() time.Duration { return e.Wait }

// IssueNodeCredential implements server.CredentialIssuer.
func (n *NetbootIssuer) IssueNodeCredential(ctx context.Context, machine string, ip netip.Addr, bootStarted time.Time) (string, string, error) {
	now := time.Now
	if n.Now != nil {
		now = n.Now
	}
	window := n.Window
	if window <= 0 {
		window = 10 * time.Minute
	}
	n.mu.Lock()
	defer n.mu.Unlock() // serialises issues, so two requests cannot both pass the check
	if n.issued == nil {
		n.issued = map[string]issue{}
	}
	t := now()
	if last, ok := n.issued[machine]; ok {
		sameBoot := !bootStarted.IsZero() && !bootStarted.After(last.boot)
		if sameBoot || bootStarted.IsZero() && t.Sub(last.at) < window {
			return "", "", &TooSoonError{Machine: machine, Wait: max(window-t.Sub(last.at), 0)}
		}
	}
	ttl, wrap := n.TTL, n.WrapTTL
	if ttl <= 0 {
		ttl = 2 * time.Minute
	}
	if wrap <= 0 {
		wrap = 60 * time.Second
	}
	bits := 32
	if ip.Is6() {
		bits = 128
	}
	cred, err := n.Broker.Mint(ctx, Request{
		CIDRs: []netip.Prefix{netip.PrefixFrom(ip, bits)}, TTL: ttl, WrapTTL: wrap,
		Metadata: map[string]string{"issued_by": "bakery serve", "machine": machine, "node_ip": ip.String()},
	})
	if err != nil {
		return "", "", err
	}
	n.issued[machine] = issue{boot: bootStarted, at: t}
	return cred.WrapToken, cred.SecretIDAccessor, nil
}
