package broker_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/broker"
)

func newBroker(t *testing.T, f *fakeVault, logs *bytes.Buffer) *broker.Broker {
	t.Helper()
	b, err := broker.New(broker.Config{Addr: f.URL, Token: f.brokerToken, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMintSendsTheDocumentedRequest(t *testing.T) {
	f := newFakeVault(t)
	var logs bytes.Buffer
	b := newBroker(t, f, &logs)
	cred, err := b.Mint(context.Background(), broker.Request{
		CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.11/32")}, TTL: 72 * time.Hour, WrapTTL: 48 * time.Hour,
		Metadata: map[string]string{"card": "1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	body, hdr := f.last()
	if hdr.Get("X-Vault-Wrap-TTL") != "172800s" {
		t.Errorf("X-Vault-Wrap-TTL = %q", hdr.Get("X-Vault-Wrap-TTL"))
	}
	if got := body["cidr_list"].([]any); len(got) != 1 || got[0] != "10.0.0.11/32" {
		t.Errorf("cidr_list %v", got)
	}
	if got := body["token_bound_cidrs"].([]any); len(got) != 1 || got[0] != "10.0.0.11/32" {
		t.Errorf("token_bound_cidrs %v", got)
	}
	if body["num_uses"] != float64(1) || body["ttl"] != "259200s" || body["metadata"] != `{"card":"1"}` {
		t.Errorf("body %v", body)
	}
	if cred.CreationPath != "auth/approle/role/node/secret-id" || cred.SecretIDAccessor == "" || !strings.HasPrefix(cred.WrapToken, "hvs.") {
		t.Errorf("credential %+v", cred)
	}
	if strings.Contains(logs.String(), cred.WrapToken) || strings.Contains(cred.String(), cred.WrapToken) {
		t.Error("the wrapping token was logged or printed")
	}
	if !strings.Contains(logs.String(), cred.SecretIDAccessor) {
		t.Errorf("the accessor is not logged:\n%s", logs.String())
	}
	// The node unwraps once; a second unwrap fails (the alarm case).
	if code, out := f.unwrap(t, cred.WrapToken); code != 200 || !strings.Contains(out, "secret_id") {
		t.Fatalf("unwrap: %d %s", code, out)
	}
	if code, _ := f.unwrap(t, cred.WrapToken); code != 400 {
		t.Fatalf("second unwrap: %d, want 400", code)
	}
}

func TestDestroyUnused(t *testing.T) {
	f := newFakeVault(t)
	var logs bytes.Buffer
	b := newBroker(t, f, &logs)
	cred, err := b.Mint(context.Background(), broker.Request{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.12/32")}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Destroy(context.Background(), cred.SecretIDAccessor); err != nil {
		t.Fatal(err)
	}
	if body, _ := f.last(); body["secret_id_accessor"] != cred.SecretIDAccessor {
		t.Errorf("destroy body %v", body)
	}
	if err := b.Destroy(context.Background(), cred.SecretIDAccessor); err == nil {
		t.Error("destroying twice succeeded")
	}
}

func TestMintRefusals(t *testing.T) {
	f := newFakeVault(t)
	var logs bytes.Buffer
	b := newBroker(t, f, &logs)
	if _, err := b.Mint(context.Background(), broker.Request{TTL: time.Hour}); err == nil {
		t.Error("a secret-id without a CIDR binding was minted")
	}
	bad, _ := broker.New(broker.Config{Addr: f.URL, Token: "hvs.wrongwrongwrongwrongwrong"})
	_, err := bad.Mint(context.Background(), broker.Request{CIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/32")}, TTL: time.Hour})
	if err == nil || !strings.Contains(err.Error(), "permission denied") || strings.Contains(err.Error(), "wrongwrong") {
		t.Errorf("got %v", err)
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{"hvs.CAESIabc": "hvs.***", "s.abcdefgh": "s.***", "plain": "***", "": ""} {
		if got := broker.Redact(in); got != want {
			t.Errorf("Redact(%q) = %q", in, got)
		}
	}
	if got := broker.RedactText(`Error: token hvs.CAESIJ0123456789abc is bad`); strings.Contains(got, "0123456789") {
		t.Errorf("RedactText: %s", got)
	}
}

func TestParseNodeIPs(t *testing.T) {
	n, err := broker.ParseNodeIPs([]string{"10.0.0.11,10.0.0.12", "5=10.0.0.15"})
	if err != nil {
		t.Fatal(err)
	}
	for card, want := range map[int]string{1: "10.0.0.11", 2: "10.0.0.12", 5: "10.0.0.15"} {
		if a, err := n.For(card); err != nil || a.String() != want {
			t.Errorf("card %d: %v %v", card, a, err)
		}
	}
	if err := n.Check(3); err == nil {
		t.Error("card 3 has no address but Check passed")
	}
	pool, err := broker.ParseNodeIPs([]string{"10.0.0.250+"})
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := pool.For(4); a.String() != "10.0.0.253" {
		t.Errorf("pool card 4: %v", a)
	}
	for _, bad := range [][]string{{"10.0.0.1", "1=10.0.0.2"}, {"x"}, {"10.0.0.1,10.0.0.1"}, {}} {
		if _, err := broker.ParseNodeIPs(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
