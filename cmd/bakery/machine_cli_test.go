package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/client"
	"github.com/bakeryhq/bakery/internal/server"
)

func TestPowerFromFlags(t *testing.T) {
	cur := &client.Power{Driver: "tasmota", Settings: map[string]any{"host": "plug", "password": "(redacted)"}}
	// Nothing given: unchanged.
	if p, err := powerFromFlags(cur, "", nil, "", false); err != nil || p != cur {
		t.Fatalf("no flags: %+v %v", p, err)
	}
	// Same driver: settings merge, the redacted secret stays for the server to keep.
	p, err := powerFromFlags(cur, "tasmota", []string{"relay=2", "user=admin"}, "", false)
	want := map[string]any{"host": "plug", "password": "(redacted)", "relay": float64(2), "user": "admin"}
	if err != nil || p.Driver != "tasmota" || !reflect.DeepEqual(p.Settings, want) {
		t.Fatalf("merge: %+v %v", p, err)
	}
	// Another driver starts afresh.
	p, err = powerFromFlags(cur, "shelly", []string{"host=10.0.0.2", "id=1"}, "", false)
	if err != nil || !reflect.DeepEqual(p.Settings, map[string]any{"host": "10.0.0.2", "id": float64(1)}) {
		t.Fatalf("new driver: %+v %v", p, err)
	}
	p, err = powerFromFlags(nil, "http", nil, `{"url":"http://x/{{.Action}}","headers":{"X":"1"}}`, false)
	if err != nil || p.Settings["url"] != "http://x/{{.Action}}" {
		t.Fatalf("json: %+v %v", p, err)
	}
	if p, err := powerFromFlags(cur, "", nil, "", true); err != nil || p != nil {
		t.Fatalf("--no-power: %+v %v", p, err)
	}
	for _, bad := range [][]string{{"novalue"}, {"=x"}} {
		if _, err := powerFromFlags(cur, "", bad, "", false); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := powerFromFlags(nil, "", []string{"host=x"}, "", false); err == nil {
		t.Error("setting without a driver accepted")
	}
}

// TestMachineCLI drives the new machine commands against a real server.
func TestMachineCLI(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{DataDir: dir, Listener: ln, DisableTFTP: true, DisableNFS: true,
		Advertise: netip.MustParseAddr("127.0.0.1"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	plug := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"POWER":"OFF"}`)
	}))
	defer plug.Close()
	remote := []string{"--server", "http://" + ln.Addr().String(), "--token", "@" + filepath.Join(dir, server.AdminTokenFile)}
	cli := func(args ...string) string {
		t.Helper()
		out, errOut, err := runCLI(t, "", append(append([]string{"machine"}, args...), remote...)...)
		if err != nil {
			t.Fatalf("bakery machine %s: %v\n%s", strings.Join(args, " "), err, errOut)
		}
		return out
	}
	cli("set", "3a7f91c2", "--name", "pi-1", "--boot-mode", "once", "--power-driver", "tasmota",
		"--power-setting", "host="+strings.TrimPrefix(plug.URL, "http://"), "--power-setting", "password=pw")
	if out := cli("power", "3a7f91c2", "status"); !strings.Contains(out, "state off") {
		t.Fatalf("power: %q", out)
	}
	if out := cli("disk", "add", "3a7f91c2", "data", "10MiB"); !strings.Contains(out, "/machines/3a7f91c2/disks/data") {
		t.Fatalf("disk add: %q", out)
	}
	show := cli("show", "3a7f91c2")
	for _, want := range []string{"Power:     tasmota", `password="(redacted)"`, "Disk:      data (10MiB)", "Boot mode: once"} {
		if !strings.Contains(show, want) {
			t.Errorf("show lacks %q:\n%s", want, show)
		}
	}
	token := strings.TrimSpace(cli("node-token", "3a7f91c2"))
	t.Setenv("BAKERY_MACHINE", "3a7f91c2")
	out, errOut, err := runCLI(t, "", "machine", "booted", "--server", "http://"+ln.Addr().String(), "--token", token)
	if err != nil || !strings.Contains(out, "boot reported") {
		t.Fatalf("booted: %q %q %v", out, errOut, err)
	}
	cli("disk", "rm", "3a7f91c2", "data")
	if _, _, err := runCLI(t, "", append([]string{"machine", "reset", "3a7f91c2"}, remote...)...); err == nil {
		t.Fatal("reset without an NFS root succeeded")
	}
}
