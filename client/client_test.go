package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/client"
	"github.com/bakeryhq/bakery/internal/netboot/bootfiles"
	"github.com/bakeryhq/bakery/internal/server"
)

// startServer runs a real server; images are "validated" by a stand-in
// that accepts anything starting with "IMG" (the engine is tested elsewhere).
func startServer(t *testing.T) (*client.Client, string) {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		DataDir: dir, Listener: ln, DisableTFTP: true, DisableNFS: true, Advertise: netip.MustParseAddr("127.0.0.1"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		InspectImage: func(path string) (bootfiles.Info, error) {
			b, _ := os.ReadFile(path)
			if !bytes.HasPrefix(b, []byte("IMG")) {
				return bootfiles.Info{}, bootfiles.ErrNotBootable
			}
			return bootfiles.Info{Kind: bootfiles.KindPi, BootFiles: []string{"start4.elf"}}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	tok, err := os.ReadFile(filepath.Join(dir, server.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New("http://"+ln.Addr().String(), strings.TrimSpace(string(tok)))
	if err != nil {
		t.Fatal(err)
	}
	return c, "http://" + ln.Addr().String()
}

func TestClientEndToEnd(t *testing.T) {
	c, base := startServer(t)
	ctx := context.Background()
	if info, err := c.Info(ctx); err != nil || info.Version == "x" {
		t.Fatalf("info %+v %v", info, err)
	}
	path := filepath.Join(t.TempDir(), "pi.img")
	os.WriteFile(path, append([]byte("IMG"), bytes.Repeat([]byte{7}, 3<<20)...), 0o644)
	var last int64
	img, err := c.PushImageFile(ctx, "raspios", path, nil, func(done, total int64) { last = done })
	if err != nil {
		t.Fatal(err)
	}
	if last != 3<<20+3 || img.Name != "raspios" || img.Kind != "pi" {
		t.Fatalf("push: progress %d, %+v", last, img)
	}
	if got, err := c.Image(ctx, "raspios"); err != nil || got.ID != img.ID {
		t.Fatalf("image: %+v %v", got, err)
	}
	if ims, err := c.Images(ctx); err != nil || len(ims) != 1 {
		t.Fatalf("images: %v %v", ims, err)
	}
	m, err := c.PutMachine(ctx, "3A7F91C2", client.MachineSpec{Name: "pi-1", Image: img.ID, Labels: map[string]string{"rack": "a"}})
	if err != nil || m.ID != "3a7f91c2" || m.Image != img.ID {
		t.Fatalf("put: %+v %v", m, err)
	}
	if ms, err := c.Machines(ctx, map[string]string{"rack": "a"}); err != nil || len(ms) != 1 {
		t.Fatalf("machines: %v %v", ms, err)
	}
	if ms, _ := c.Machines(ctx, map[string]string{"rack": "b"}); len(ms) != 0 {
		t.Fatalf("label filter: %v", ms)
	}
	if err := c.DeleteImage(ctx, img.ID); !client.IsStatus(err, http.StatusConflict) {
		t.Fatalf("delete used image: %v", err)
	}
	if evs, err := c.Events(ctx, "3a7f91c2", 10); err != nil || len(evs) != 1 || evs[0].Type != "api.machine.put" {
		t.Fatalf("events: %+v %v", evs, err)
	}
	nt, err := c.CreateToken(ctx, "ci", []string{"read"})
	if err != nil || !strings.HasPrefix(nt.Token, "bkr_") {
		t.Fatalf("token: %+v %v", nt, err)
	}
	ro, _ := client.New(base, nt.Token)
	if _, err := ro.Machines(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ro.PutMachine(ctx, "3a7f91c2", client.MachineSpec{}); !client.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("read token wrote: %v", err)
	}
	if toks, err := c.Tokens(ctx); err != nil || len(toks) != 2 {
		t.Fatalf("tokens: %v %v", toks, err)
	}
	if err := c.DeleteToken(ctx, nt.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := ro.Machines(ctx, nil); !client.IsStatus(err, http.StatusUnauthorized) {
		t.Fatalf("deleted token: %v", err)
	}
	if err := c.DeleteMachine(ctx, "3a7f91c2"); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteImage(ctx, img.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Machine(ctx, "3a7f91c2"); !client.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("deleted machine: %v", err)
	}
	var apiErr *client.Error
	if _, err := c.PushImage(ctx, "x", strings.NewReader("IMGx"), 4, strings.Repeat("0", 64), nil); !errors.As(err, &apiErr) || apiErr.Status != 400 {
		t.Fatalf("bad hash: %v", err)
	}
	if _, err := client.New("", ""); err == nil {
		t.Fatal("empty server accepted")
	}
}

func TestClientDisksPowerNodeToken(t *testing.T) {
	c, base := startServer(t)
	ctx := context.Background()
	plug := http.NewServeMux()
	var cmds []string
	plug.HandleFunc("/cm", func(w http.ResponseWriter, r *http.Request) {
		cmds = append(cmds, r.URL.Query().Get("cmnd"))
		io.WriteString(w, `{"POWER":"ON"}`)
	})
	plugLn, _ := net.Listen("tcp", "127.0.0.1:0")
	go http.Serve(plugLn, plug)
	defer plugLn.Close()
	spec := client.MachineSpec{Name: "pi", Power: &client.Power{Driver: "tasmota", Settings: map[string]any{"host": plugLn.Addr().String(), "password": "pw"}}}
	m, err := c.PutMachine(ctx, "3a7f91c2", spec)
	if err != nil {
		t.Fatal(err)
	}
	if m.Power == nil || m.Power.Settings["password"] != "(redacted)" {
		t.Fatalf("power %+v", m.Power)
	}
	// Read-modify-write keeps the secret: power still works.
	if _, err := c.PutMachine(ctx, "3a7f91c2", m.Spec()); err != nil {
		t.Fatal(err)
	}
	res, err := c.Power(ctx, "3a7f91c2", "on")
	if err != nil || !res.OK || res.State != "on" || len(cmds) != 1 || cmds[0] != "Power On" {
		t.Fatalf("power on: %+v %v %q", res, err, cmds)
	}
	d, err := c.PutDisk(ctx, "3a7f91c2", "data", 5<<20)
	if err != nil || d.Export != "/machines/3a7f91c2/disks/data" || d.File != "data.img" {
		t.Fatalf("disk %+v %v", d, err)
	}
	if m, _ = c.Machine(ctx, "3a7f91c2"); len(m.Disks) != 1 {
		t.Fatalf("disks %+v", m.Disks)
	}
	if err := c.DeleteDisk(ctx, "3a7f91c2", "data"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RootUsage(ctx, "3a7f91c2"); !client.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("usage without an image: %v", err)
	}
	if _, err := c.ResetMachine(ctx, "3a7f91c2", false); !client.IsStatus(err, http.StatusConflict) {
		t.Fatalf("reset without an image: %v", err)
	}
	nt, err := c.CreateNodeToken(ctx, "3a7f91c2")
	if err != nil || nt.Machine != "3a7f91c2" || nt.WrittenToRoot {
		t.Fatalf("node token %+v %v", nt, err)
	}
	node, _ := client.New(base, nt.Token)
	if m, err := node.Booted(ctx, "3a7f91c2"); err != nil || m.Booted.IsZero() {
		t.Fatalf("booted: %+v %v", m, err)
	}
	if _, err := node.Machines(ctx, nil); !client.IsStatus(err, http.StatusForbidden) {
		t.Fatalf("node token lists machines: %v", err)
	}
}
