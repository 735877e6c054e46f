package broker_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/broker"
)

func TestNetbootIssuerOncePerBoot(t *testing.T) {
	f := newFakeVault(t)
	var logs bytes.Buffer
	now := time.Unix(1700000000, 0)
	n := &broker.NetbootIssuer{Broker: newBroker(t, f, &logs), Now: func() time.Time { return now }}
	ip := netip.MustParseAddr("10.0.0.21")
	boot := now.Add(-30 * time.Second)
	tok, acc, err := n.IssueNodeCredential(context.Background(), "pi-21", ip, boot)
	if err != nil || tok == "" || acc == "" {
		t.Fatalf("%q %q %v", tok, acc, err)
	}
	body, hdr := f.last()
	if hdr.Get("X-Vault-Wrap-TTL") != "60s" || body["ttl"] != "120s" || body["cidr_list"].([]any)[0] != "10.0.0.21/32" {
		t.Errorf("request %v %v", body, hdr)
	}
	// Same boot: refused.
	_, _, err = n.IssueNodeCredential(context.Background(), "pi-21", ip, boot)
	var ts *broker.TooSoonError
	if !errors.As(err, &ts) {
		t.Fatalf("second issue in one boot: %v", err)
	}
	// Another machine is not affected; a new boot gets a new one.
	if _, _, err := n.IssueNodeCredential(context.Background(), "pi-22", netip.MustParseAddr("10.0.0.22"), boot); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Minute)
	if _, _, err := n.IssueNodeCredential(context.Background(), "pi-21", ip, now.Add(-10*time.Second)); err != nil {
		t.Fatalf("new boot: %v", err)
	}
	// Unknown boot times fall back to the window.
	if _, _, err := n.IssueNodeCredential(context.Background(), "pi-23", netip.MustParseAddr("10.0.0.23"), time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.IssueNodeCredential(context.Background(), "pi-23", netip.MustParseAddr("10.0.0.23"), time.Time{}); !errors.As(err, &ts) {
		t.Fatalf("within the window: %v", err)
	}
	now = now.Add(11 * time.Minute)
	if _, _, err := n.IssueNodeCredential(context.Background(), "pi-23", netip.MustParseAddr("10.0.0.23"), time.Time{}); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}
