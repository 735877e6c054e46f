package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeIssuer struct {
	mu    sync.Mutex
	calls []string
	err   error
}

type tooSoon struct{}

func (tooSoon) Error() string             { return "already issued" }
func (tooSoon) RetryAfter() time.Duration { return time.Minute }

func (f *fakeIssuer) IssueNodeCredential(_ context.Context, machine string, ip netip.Addr, _ time.Time) (string, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", "", f.err
	}
	f.calls = append(f.calls, machine+"@"+ip.String())
	return "hvs.wrappingtokenfortest0123456789", "acc-1", nil
}

func postCredential(t *testing.T, ts *testServer) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Post(ts.url+"/boot/credential", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestCredentialEndpoint(t *testing.T) {
	iss := &fakeIssuer{}
	ts := startTest(t, options{mutate: func(c *Config) { c.Credentials = iss }})
	// Nobody is known at 127.0.0.1 yet.
	if code, _, _ := postCredential(t, ts); code != http.StatusForbidden {
		t.Fatalf("unknown address: %d", code)
	}
	if code := ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Name: "pi", IP: "127.0.0.1"}, nil); code != http.StatusCreated {
		t.Fatalf("put machine: %d", code)
	}
	code, body, hdr := postCredential(t, ts)
	if code != http.StatusOK || strings.TrimSpace(body) != "hvs.wrappingtokenfortest0123456789" || hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("credential: %d %q", code, body)
	}
	if len(iss.calls) != 1 || iss.calls[0] != "3a7f91c2@127.0.0.1" {
		t.Errorf("issuer calls %v", iss.calls)
	}
	evs, err := ts.store.Events("3a7f91c2", 100)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range evs {
		if e.Type == "credential.issued" && e.Fields["secret_id_accessor"] == "acc-1" {
			found = true
		}
		if strings.Contains(e.Message, "hvs.") {
			t.Errorf("event holds the token: %+v", e)
		}
	}
	if !found {
		t.Errorf("no credential.issued event with the accessor: %+v", evs)
	}
	if strings.Contains(ts.logs.String(), "wrappingtokenfortest") {
		t.Error("the token was logged")
	}
	iss.err = tooSoon{}
	if code, _, hdr := postCredential(t, ts); code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Fatalf("second issue: %d", code)
	}
	iss.err = errors.New("vault is sealed")
	if code, _, _ := postCredential(t, ts); code != http.StatusBadGateway {
		t.Fatalf("vault down: %d", code)
	}
}

func TestCredentialEndpointDisabled(t *testing.T) {
	ts := startTest(t, options{})
	if code, _, _ := postCredential(t, ts); code != http.StatusNotFound {
		t.Fatalf("without a broker: %d", code)
	}
}

// TestCredentialURLOnCmdline: a server that issues credentials names
// itself on every machine's kernel command line, where
// bakery-credential.service looks for it.
func TestCredentialURLOnCmdline(t *testing.T) {
	ts := startTest(t, options{mutate: func(c *Config) { c.Credentials = &fakeIssuer{} }})
	pi := []byte("pi image")
	ts.images.add(t, pi, piTree("console=tty1 root=/dev/mmcblk0p2 rootwait\n"))
	img, _ := ts.upload("raspios", pi)
	ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Image: img.ID, CmdlineAppend: "quiet"}, nil)
	got, err := tftpGet(t, ts.TFTPAddr().String(), "3a7f91c2/cmdline.txt")
	want := "console=tty1 root=/dev/mmcblk0p2 rootwait bakery.url=" + ts.baseURL + " quiet\n"
	if err != nil || string(got) != want {
		t.Fatalf("cmdline.txt %q %v; want %q", got, err, want)
	}
}
