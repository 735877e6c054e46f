package broker

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/flash"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/image"
)

// NodeIPs assigns each card (1, 2, ... in target order) its node's
// reserved address.
type NodeIPs struct {
	byCard map[int]netip.Addr
	pool   netip.Addr // card n gets pool + n-1 when not listed
}

// ParseNodeIPs reads --node-ip values: "10.0.0.11" (the next card in
// order), "3=10.0.0.13" (card 3), or "10.0.0.11+" (a pool: card n gets
// 10.0.0.11 + n - 1). Values may be comma-separated.
func ParseNodeIPs(vals []string) (*NodeIPs, error) {
	n := &NodeIPs{byCard: map[int]netip.Addr{}}
	next := 1
	for _, v := range vals {
		for _, item := range strings.Split(v, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			switch {
			case strings.HasSuffix(item, "+"):
				a, err := netip.ParseAddr(strings.TrimSuffix(item, "+"))
				if err != nil {
					return nil, fmt.Errorf("--node-ip %q: %w", item, err)
				}
				if n.pool.IsValid() {
					return nil, fmt.Errorf("--node-ip %q: only one address pool may be given", item)
				}
				n.pool = a
			case strings.Contains(item, "="):
				k, ip, _ := strings.Cut(item, "=")
				card, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(k), "node-"))
				if err != nil || card < 1 {
					return nil, fmt.Errorf("--node-ip %q: want CARD=IP with CARD 1, 2, ...", item)
				}
				a, err := netip.ParseAddr(ip)
				if err != nil {
					return nil, fmt.Errorf("--node-ip %q: %w", item, err)
				}
				if _, dup := n.byCard[card]; dup {
					return nil, fmt.Errorf("--node-ip: card %d is given twice", card)
				}
				n.byCard[card] = a
			default:
				a, err := netip.ParseAddr(item)
				if err != nil {
					return nil, fmt.Errorf("--node-ip %q: %w", item, err)
				}
				for n.byCard[next].IsValid() {
					next++
				}
				n.byCard[next] = a
				next++
			}
		}
	}
	if len(n.byCard) == 0 && !n.pool.IsValid() {
		return nil, fmt.Errorf("--node-ip: give each card's reserved address (or a pool, 10.0.0.11+)")
	}
	seen := map[netip.Addr]int{}
	cards := make([]int, 0, len(n.byCard))
	for c := range n.byCard {
		cards = append(cards, c)
	}
	sort.Ints(cards)
	for _, c := range cards {
		if other, dup := seen[n.byCard[c]]; dup {
			return nil, fmt.Errorf("--node-ip: cards %d and %d would share %s", other, c, n.byCard[c])
		}
		seen[n.byCard[c]] = c
	}
	return n, nil
}

// For returns card n's address.
func (n *NodeIPs) For(card int) (netip.Addr, error) {
	if a, ok := n.byCard[card]; ok {
		return a, nil
	}
	if n.pool.IsValid() {
		a := n.pool
		for i := 1; i < card; i++ {
			a = a.Next()
			if !a.IsValid() {
				return netip.Addr{}, fmt.Errorf("the address pool from %s has no address for card %d", n.pool, card)
			}
		}
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("no --node-ip for card %d", card)
}

// Check makes sure every one of count cards has an address, before
// anything is written.
func (n *NodeIPs) Check(count int) error {
	for c := 1; c <= count; c++ {
		if _, err := n.For(c); err != nil {
			return err
		}
	}
	return nil
}

// CardCredentials is the flash.Customizer that gives each card its own
// wrapped secret-id, bound to that node's address, on the boot partition
// where Vault Agent expects it (bundle.BootSecretIDPath).
type CardCredentials struct {
	Broker *Broker
	IPs    *NodeIPs
	// TTL of the secret-id and WrapTTL of the wrapping token: hours to
	// days, the time a card may wait before its first boot.
	TTL, WrapTTL time.Duration
	// Path inside the boot filesystem (default bundle.BootSecretIDPath).
	Path string
}

// Customize mints the card's credential and writes only the wrapping
// token. If the write fails the secret-id is destroyed at once.
func (c *CardCredentials) Customize(ctx context.Context, card flash.Card, im *image.Image) error {
	ip, err := c.IPs.For(card.N)
	if err != nil {
		return err
	}
	boot, err := im.Role(image.RoleBoot)
	if err != nil {
		return fmt.Errorf("credential for card %d: %w", card.N, err)
	}
	p := c.Path
	if p == "" {
		p = bundle.BootSecretIDPath
	}
	bits := 32
	if ip.Is6() {
		bits = 128
	}
	cred, err := c.Broker.Mint(ctx, Request{
		CIDRs:   []netip.Prefix{netip.PrefixFrom(ip, bits)},
		TTL:     c.TTL,
		WrapTTL: c.WrapTTL,
		Metadata: map[string]string{
			"issued_by": "bakery flash",
			"card":      strconv.Itoa(card.N),
			"node_ip":   ip.String(),
			"target":    filepath.Base(card.Target),
		},
	})
	if err != nil {
		return fmt.Errorf("credential for card %d (%s): %w", card.N, ip, err)
	}
	if err := writeToken(boot, p, cred.WrapToken); err != nil {
		if derr := c.Broker.Destroy(context.WithoutCancel(ctx), cred.SecretIDAccessor); derr != nil {
			return fmt.Errorf("credential for card %d: %w (and destroying the unused secret-id %s failed: %v)", card.N, err, cred.SecretIDAccessor, derr)
		}
		return fmt.Errorf("credential for card %d: %w (the secret-id was destroyed)", card.N, err)
	}
	return nil
}

func writeToken(f fs.Filesystem, p, token string) error {
	if d := fs.Dir(p); d != "/" {
		if err := f.MkdirAll(d, fs.Attr{Mode: 0o700}); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	if err := f.WriteFile(p, strings.NewReader(token+"\n"), fs.Attr{Mode: 0o600}); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}
