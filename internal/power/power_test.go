package power

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var pi = Machine{ID: "3a7f91c2", Name: "pi-1", MAC: "dc:a6:32:01:02:03", IP: "10.0.0.7"}

// recorder is a fake device that records every request.
type recorder struct {
	mu   sync.Mutex
	reqs []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.reqs = append(r.reqs, s)
	r.mu.Unlock()
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

func noSleep(waits *[]time.Duration) Options {
	return Options{Sleep: func(_ context.Context, d time.Duration) error { *waits = append(*waits, d); return nil }}
}

// TestTasmota plays a Tasmota plug and checks the exact requests.
func TestTasmota(t *testing.T) {
	rec := &recorder{}
	state := "OFF"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.add(r.Method + " " + r.URL.RequestURI())
		cmnd := r.URL.Query().Get("cmnd")
		key := strings.ToUpper(strings.Fields(cmnd)[0])
		if key == "POWER1" {
			key = "POWER" // Tasmota answers POWER for relay 1 of a single-relay device
		}
		switch {
		case strings.HasSuffix(cmnd, " On"):
			state = "ON"
		case strings.HasSuffix(cmnd, " Off"):
			state = "OFF"
		}
		fmt.Fprintf(w, `{%q:%q}`, key, state)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	var waits []time.Duration
	cfg := Config{Driver: "tasmota", Settings: map[string]any{"host": host, "cycle_wait": "0s"}}
	for _, c := range []struct {
		a     Action
		state string
	}{{On, StateOn}, {Status, StateOn}, {Off, StateOff}, {Cycle, StateOn}} {
		res, err := Run(context.Background(), cfg, noSleep(&waits), c.a, pi)
		if err != nil || !res.OK || res.State != c.state {
			t.Fatalf("%s: %+v %v", c.a, res, err)
		}
	}
	want := []string{"GET /cm?cmnd=Power%20On", "GET /cm?cmnd=Power", "GET /cm?cmnd=Power%20Off", "GET /cm?cmnd=Power%20Off", "GET /cm?cmnd=Power%20On"}
	if got := rec.got(); !reflect.DeepEqual(got, want) {
		t.Fatalf("requests:\n%q\nwant\n%q", got, want)
	}
	if !reflect.DeepEqual(waits, []time.Duration{0}) {
		t.Fatalf("cycle waits %v", waits)
	}
	rec.reqs = nil
	cfg.Settings = map[string]any{"host": srv.URL, "relay": 1.0, "user": "admin", "password": "p w&x"}
	if _, err := Run(context.Background(), cfg, Options{}, Off, pi); err != nil {
		t.Fatal(err)
	}
	if got := rec.got(); len(got) != 1 || got[0] != "GET /cm?user=admin&password=p%20w%26x&cmnd=Power1%20Off" {
		t.Fatalf("with credentials: %q", got)
	}
}

// TestShelly plays a Shelly Gen2 switch with digest authentication.
func TestShelly(t *testing.T) {
	rec := &recorder{}
	on := false
	const realm, nonce, password = "shellyplus1-a8032ab12345", "63b1f1a9", "s3cret"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		auth := r.Header.Get("Authorization")
		if auth == "" {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Digest qop="auth", realm=%q, nonce=%q, algorithm=SHA-256`, realm, nonce))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		p := parseAuthParams(strings.TrimPrefix(auth, "Digest "))
		h := func(s string) string { x := sha256.Sum256([]byte(s)); return hex.EncodeToString(x[:]) }
		want := h(h("admin:"+realm+":"+password) + ":" + nonce + ":" + p["nc"] + ":" + p["cnonce"] + ":auth:" + h("POST:"+r.URL.Path))
		if p["username"] != "admin" || p["response"] != want || p["uri"] != r.URL.Path {
			http.Error(w, "bad digest", http.StatusUnauthorized)
			return
		}
		rec.add(r.Method + " " + r.URL.Path + " " + string(body))
		var req struct {
			ID int   `json:"id"`
			On *bool `json:"on"`
		}
		json.Unmarshal(body, &req)
		switch r.URL.Path {
		case "/rpc/Switch.Set":
			fmt.Fprintf(w, `{"was_on":%v}`, on)
			on = *req.On
		case "/rpc/Switch.GetStatus":
			fmt.Fprintf(w, `{"id":%d,"source":"HTTP","output":%v,"apower":12.5,"voltage":229.8}`, req.ID, on)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	cfg := Config{Driver: "shelly", Settings: map[string]any{"host": srv.URL, "password": password}}
	var waits []time.Duration
	for _, c := range []struct {
		a     Action
		state string
	}{{On, StateOn}, {Status, StateOn}, {Off, StateOff}, {Status, StateOff}, {Cycle, StateOn}} {
		res, err := Run(context.Background(), cfg, noSleep(&waits), c.a, pi)
		if err != nil || !res.OK || res.State != c.state {
			t.Fatalf("%s: %+v %v", c.a, res, err)
		}
	}
	want := []string{
		`POST /rpc/Switch.Set {"id":0,"on":true}`, `POST /rpc/Switch.GetStatus {"id":0}`, `POST /rpc/Switch.Set {"id":0,"on":false}`,
		`POST /rpc/Switch.GetStatus {"id":0}`, `POST /rpc/Switch.Set {"id":0,"on":false}`, `POST /rpc/Switch.Set {"id":0,"on":true}`,
	}
	if got := rec.got(); !reflect.DeepEqual(got, want) {
		t.Fatalf("requests:\n%q\nwant\n%q", got, want)
	}
	if !reflect.DeepEqual(waits, []time.Duration{3 * time.Second}) {
		t.Fatalf("default cycle wait: %v", waits)
	}
	cfg.Settings["password"] = "wrong"
	if _, err := Run(context.Background(), cfg, Options{}, On, pi); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong password: %v", err)
	}
}

// TestHTTPWebhook checks templating and the HMAC signature the receiver
// verifies.
func TestHTTPWebhook(t *testing.T) {
	const secret = "hmac-secret"
	rec := &recorder{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Bakery-Signature") != Signature(secret, body) {
			http.Error(w, "bad signature", http.StatusForbidden)
			return
		}
		rec.add(r.Method + " " + r.URL.RequestURI() + " " + r.Header.Get("X-Pdu") + " " + string(body))
		if strings.Contains(r.URL.Path, "fail") {
			http.Error(w, "outlet jammed", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, `{"ok":true,"state":"ON","message":"outlet 4"}`)
	}))
	defer srv.Close()
	cfg := Config{Driver: "http", Settings: map[string]any{
		"url":     srv.URL + "/outlets/{{.Settings.outlet}}/{{.Action}}?m={{urlquery .Machine.ID}}",
		"method":  "put",
		"headers": map[string]any{"X-Pdu": "rack-{{.Settings.outlet}}"},
		"body":    `{"machine":{{json .Machine.Name}},"do":"{{.Action}}"}`,
		"secret":  secret,
		"outlet":  4.0,
	}}
	res, err := Run(context.Background(), cfg, Options{}, On, pi)
	if err != nil || !res.OK || res.State != StateOn || res.Message != "outlet 4" {
		t.Fatalf("%+v %v", res, err)
	}
	want := `PUT /outlets/4/on?m=3a7f91c2 rack-4 {"machine":"pi-1","do":"on"}`
	if got := rec.got(); len(got) != 1 || got[0] != want {
		t.Fatalf("request %q", got)
	}
	// The default body is the plugin envelope without secrets.
	rec.reqs = nil
	delete(cfg.Settings, "body")
	if _, err := Run(context.Background(), cfg, Options{}, Status, pi); err != nil {
		t.Fatal(err)
	}
	if got := rec.got(); len(got) != 1 || strings.Contains(got[0], secret) || !strings.Contains(got[0], `"action":"status"`) {
		t.Fatalf("default body: %q", got)
	}
	cfg.Settings["url"] = srv.URL + "/fail?token=abc"
	if _, err := Run(context.Background(), cfg, Options{}, Off, pi); err == nil || !strings.Contains(err.Error(), "outlet jammed") || strings.Contains(err.Error(), "abc") {
		t.Fatalf("failure: %v", err)
	}
	cfg.Settings["url"] = "file:///etc/passwd"
	if err := Validate(cfg, Options{}); err == nil {
		t.Fatal("file URL accepted")
	}
}

func writePlugin(t *testing.T, dir, name, script string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestExecPlugin runs plugin scripts with the seed's protocol.
func TestExecPlugin(t *testing.T) {
	dir := t.TempDir()
	seen := filepath.Join(t.TempDir(), "stdin.json")
	writePlugin(t, dir, "ipmi", `cat > `+seen+`
case "$BAKERY_POWER_ACTION" in
  on) echo '{"ok":true,"state":"on","message":"chassis power on"}' ;;
  off) echo '{"ok":true,"state":"off"}' ;;
  *) echo '{"ok":true,"state":"unknown"}' ;;
esac
`)
	writePlugin(t, dir, "broken", "echo 'bmc unreachable' >&2\nexit 3\n")
	writePlugin(t, dir, "liar", "echo not json\n")
	writePlugin(t, dir, "refuses", `echo '{"ok":false,"state":"off","message":"interlock open"}'`+"\n")
	writePlugin(t, dir, "slow", "sleep 10\n")
	opts := Options{PluginDir: dir}
	cfg := Config{Driver: "exec", Settings: map[string]any{"command": "ipmi", "bmc": "10.0.0.99", "password": "pw"}}
	res, err := Run(context.Background(), cfg, opts, On, pi)
	if err != nil || !res.OK || res.State != StateOn || res.Message != "chassis power on" {
		t.Fatalf("%+v %v", res, err)
	}
	raw, _ := os.ReadFile(seen)
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("stdin %q: %v", raw, err)
	}
	if env.Action != On || env.Machine.ID != pi.ID || env.Settings["bmc"] != "10.0.0.99" || env.Settings["password"] != "pw" {
		t.Fatalf("plugin got %+v", env)
	}
	for name, want := range map[string]string{"broken": "bmc unreachable", "liar": "no JSON result", "refuses": "interlock open"} {
		cfg.Settings = map[string]any{"command": name}
		if _, err := Run(context.Background(), cfg, opts, Off, pi); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	cfg.Settings = map[string]any{"command": "slow", "timeout": "200ms"}
	start := time.Now()
	if _, err := Run(context.Background(), cfg, opts, Off, pi); err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("slow plugin: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("timeout not applied")
	}
	for _, bad := range []string{"../bin/sh", "/bin/sh", "missing"} {
		if err := Validate(Config{Driver: "exec", Settings: map[string]any{"command": bad}}, opts); err == nil {
			t.Errorf("command %q accepted", bad)
		}
	}
	if err := Validate(Config{Driver: "exec", Settings: map[string]any{"command": "ipmi"}}, Options{}); err == nil {
		t.Error("exec without a plugin directory accepted")
	}
}

func TestRedact(t *testing.T) {
	s := map[string]any{"host": "plug", "password": "pw", "headers": map[string]any{"Authorization": "Bearer x", "X-Rack": "4"}, "secret": "k"}
	r := Redact(s)
	want := map[string]any{"host": "plug", "password": RedactedValue, "headers": map[string]any{"Authorization": RedactedValue, "X-Rack": "4"}, "secret": RedactedValue}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("%v", r)
	}
	r["host"] = "plug2"
	m := MergeRedacted(r, s)
	if m["password"] != "pw" || m["host"] != "plug2" || m["headers"].(map[string]any)["Authorization"] != "Bearer x" {
		t.Fatalf("merge %v", m)
	}
	if left := HasRedacted(MergeRedacted(r, nil)); len(left) != 3 {
		t.Fatalf("left %v", left)
	}
	if _, err := ParseAction("reboot"); err == nil {
		t.Fatal("reboot accepted")
	}
}
