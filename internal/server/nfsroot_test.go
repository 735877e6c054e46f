package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/netboot/dhcp"
	"github.com/bakeryhq/bakery/internal/netboot/nfs"
	"github.com/bakeryhq/bakery/internal/netboot/overlay"
	"github.com/bakeryhq/bakery/internal/netboot/overlay/overlaytest"
	"github.com/bakeryhq/bakery/internal/power"
	"github.com/bakeryhq/bakery/internal/store"
	"github.com/bakeryhq/bakery/internal/testimage"
	"github.com/insomniacslk/dhcp/dhcpv4"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"
)

// engineOpts runs a test server with the real image engine and NFS.
func engineOpts(dataDir string, nfsLn net.Listener, mutate func(*Config)) options {
	return options{dataDir: dataDir, nfs: nfsLn == nil, mutate: func(c *Config) {
		c.OpenImage, c.InspectImage = nil, nil
		if nfsLn != nil {
			c.NFSListener, c.DisableNFS = nfsLn, false
		}
		if mutate != nil {
			mutate(c)
		}
	}}
}

func (ts *testServer) uploadFile(name, path string) store.Image {
	ts.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		ts.t.Fatal(err)
	}
	im, code := ts.upload(name, b)
	if code != http.StatusCreated {
		ts.t.Fatalf("upload: %d", code)
	}
	return im
}

func (ts *testServer) events(id string) []store.Event {
	var evs []store.Event
	ts.do("GET", "/api/v1/machines/"+id+"/events", ts.admin, nil, &evs)
	return evs
}

func (ts *testServer) lastEvent(id, typ string) (store.Event, bool) {
	evs := ts.events(id)
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == typ {
			return evs[i], true
		}
	}
	return store.Event{}, false
}

func mountRoot(t *testing.T, addr net.Addr, machine string) (*rpc.Client, *nfsc.Target) {
	t.Helper()
	a := addr.(*net.TCPAddr)
	c, err := nfsc.DialServiceAtPort(a.IP.String(), a.Port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	tgt, err := (&nfsc.Mount{Client: c}).Mount(nfs.ExportPath(machine), rpc.AuthUnix{Machinename: "pi", Uid: 0, Gid: 0}.Auth())
	if err != nil {
		t.Fatalf("mount %s: %v", machine, err)
	}
	return c, tgt
}

func nfsRead(t *testing.T, tgt *nfsc.Target, p string) string {
	t.Helper()
	f, err := tgt.Open(p)
	if err != nil {
		t.Fatalf("open %s over NFS: %v", p, err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestNFSRootEndToEnd: assigning an image provisions an NFS root (O(1),
// events say what was adjusted), cmdline.txt over TFTP points the kernel
// at it, the machine mounts it from its address and finds its hostname and
// node token, reports its boot with that token, and a reset gives it a
// fresh root. The image file never changes.
func TestNFSRootEndToEnd(t *testing.T) {
	img := overlaytest.Image(t, 0)
	before := testimage.FileSHA256(t, img)
	ts := startTest(t, engineOpts("", nil, nil))
	im := ts.uploadFile("raspios", img)
	var m store.Machine
	if code := ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Image: im.ID, Name: "Pi One", IP: "127.0.0.1", CmdlineAppend: "quiet"}, &m); code != http.StatusCreated {
		t.Fatalf("put: %d", code)
	}
	if m.NodeTokenID == "" {
		t.Fatalf("no node token: %+v", m)
	}
	ev, ok := ts.lastEvent("3a7f91c2", "root.provisioned")
	if !ok || !strings.Contains(ev.Message, "/etc/hostname: pi-one") || !strings.Contains(ev.Message, "rpi-resize.service: masked") {
		t.Fatalf("provisioning event: %+v", ev)
	}

	got, err := tftpGet(t, ts.TFTPAddr().String(), "3a7f91c2/cmdline.txt")
	port := ts.NFSAddr().(*net.TCPAddr).Port
	want := fmt.Sprintf("console=serial0,115200 console=tty1 fsck.repair=yes quiet root=/dev/nfs nfsroot=127.0.0.1:/machines/3a7f91c2,vers=3,tcp,port=%d,mountport=%d,nolock rw ip=dhcp rootwait quiet\n", port, port)
	if err != nil || string(got) != want {
		t.Fatalf("cmdline.txt %q %v\nwant %q", got, err, want)
	}

	_, root := mountRoot(t, ts.NFSAddr(), "3a7f91c2")
	if h := nfsRead(t, root, "/etc/hostname"); h != "pi-one\n" {
		t.Fatalf("hostname %q", h)
	}
	token := strings.TrimSpace(nfsRead(t, root, "/etc/bakery/node-token"))
	env := nfsRead(t, root, "/etc/bakery/node.env")
	if !strings.Contains(env, "BAKERY_MACHINE=3a7f91c2") || !strings.Contains(env, "BAKERY_SERVER="+ts.url) {
		t.Fatalf("node.env %q", env)
	}
	if _, at, _ := root.Lookup("/etc/bakery/node-token"); at == nil {
		t.Fatal("no node token file")
	}

	// The node reports its boot with its own token; that token can do
	// nothing else, not even for another machine.
	if code := ts.do("POST", "/api/v1/machines/3a7f91c2/booted", token, nil, &m); code != 200 || m.Booted.IsZero() {
		t.Fatalf("booted with the node token: %d %+v", code, m)
	}
	ts.putJSON("/api/v1/machines/aabbccdd", ts.admin, MachineSpec{}, nil)
	for _, c := range []struct{ method, path string }{{"POST", "/api/v1/machines/aabbccdd/booted"}, {"GET", "/api/v1/machines/3a7f91c2"}, {"POST", "/api/v1/machines/3a7f91c2/reset"}} {
		if code := ts.do(c.method, c.path, token, nil, nil); code != http.StatusForbidden {
			t.Errorf("node token on %s %s: %d", c.method, c.path, code)
		}
	}

	// Writes land in the layer; usage shows them; reset refuses while the
	// machine is connected, then starts over.
	f, err := root.OpenFile("/etc/motd", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(bytes.Repeat([]byte("x"), 100000))
	var u RootUsage
	if code := ts.do("GET", "/api/v1/machines/3a7f91c2/root/usage", ts.admin, nil, &u); code != 200 || u.Bytes < 100000 || u.Whiteouts < 2 || u.Connections != 1 {
		t.Fatalf("usage %d %+v", code, u)
	}
	if code := ts.do("POST", "/api/v1/machines/3a7f91c2/reset", ts.admin, nil, nil); code != http.StatusConflict {
		t.Fatalf("reset while mounted: %d", code)
	}
	var reset ResetAnswer
	if code := ts.do("POST", "/api/v1/machines/3a7f91c2/reset?force=true", ts.admin, nil, &reset); code != 200 || len(reset.Adjustments) == 0 {
		t.Fatalf("reset: %d %+v", code, reset)
	}
	_, root2 := mountRoot(t, ts.NFSAddr(), "3a7f91c2")
	if _, _, err := root2.Lookup("/etc/motd"); err == nil {
		t.Fatal("reset kept /etc/motd")
	}
	if newToken := strings.TrimSpace(nfsRead(t, root2, "/etc/bakery/node-token")); newToken == token {
		t.Fatal("reset kept the node token")
	}
	if code := ts.do("POST", "/api/v1/machines/3a7f91c2/booted", token, nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("old node token after reset: %d", code)
	}

	// The kernel's own DHCP request (not a netboot client) teaches the
	// server the address its NFS mount will come from, when the record
	// sets no ip; with one set, only that address counts.
	ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Image: im.ID, MAC: "dc:a6:32:01:02:03", Name: "Pi One"}, nil)
	kernel := dhcp.Client{Kind: dhcp.KindOther, MAC: "dc:a6:32:01:02:03", IP: netip.MustParseAddr("10.9.9.9"), MessageType: dhcpv4.MessageTypeRequest}
	ts.Decide(context.Background(), kernel)
	if id, ok := ts.nfsMachineFor(netip.MustParseAddr("10.9.9.9")); !ok || id != "3a7f91c2" {
		t.Fatalf("address from the kernel's DHCP: %q %v", id, ok)
	}
	if _, ok := ts.nfsMachineFor(netip.MustParseAddr("10.9.9.8")); ok {
		t.Fatal("an unknown address belongs to a machine")
	}
	ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Image: im.ID, IP: "127.0.0.1", MAC: "dc:a6:32:01:02:03", Name: "Pi One"}, nil)
	if id, ok := ts.nfsMachineFor(netip.MustParseAddr("10.9.9.9")); ok {
		t.Fatalf("a DHCP address beside a fixed ip belongs to %q", id)
	}

	// Root "image": the layer goes and cmdline.txt is the image's again.
	ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Image: im.ID, IP: "127.0.0.1", Root: "image"}, nil)
	got, _ = tftpGet(t, ts.TFTPAddr().String(), "3a7f91c2/cmdline.txt")
	if !strings.Contains(string(got), "root=PARTUUID=5452574f-02") {
		t.Fatalf("cmdline with root image: %q", got)
	}
	if code := ts.do("GET", "/api/v1/machines/3a7f91c2/root/usage", ts.admin, nil, nil); code != http.StatusNotFound {
		t.Fatalf("usage without a layer: %d", code)
	}
	ts.stop()
	if after := testimage.FileSHA256(t, img); after != before {
		t.Fatal("the uploaded image's source changed")
	}
	if after := testimage.FileSHA256(t, ts.imagePath(im)); after != im.SHA256 {
		t.Fatal("the stored image changed")
	}
}

// TestNFSHandlesAcrossServerRestart: a handle the machine got before
// bakery serve restarted works after it (same data directory, same port).
func TestNFSHandlesAcrossServerRestart(t *testing.T) {
	img := overlaytest.Image(t, 0)
	dataDir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ts := startTest(t, engineOpts(dataDir, ln, nil))
	im := ts.uploadFile("raspios", img)
	ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Image: im.ID, IP: "127.0.0.1"}, nil)
	c, root := mountRoot(t, ts.NFSAddr(), "3a7f91c2")
	f, _ := root.OpenFile("/etc/layer-file", 0o600)
	f.Write([]byte("kept"))
	_, fh, err := root.Lookup("/etc/layer-file")
	if err != nil {
		t.Fatal(err)
	}
	_, sudo, _ := root.Lookup("/usr/bin/sudo")
	ts.stop()

	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	startTest(t, engineOpts(dataDir, ln2, nil))
	for _, h := range [][]byte{fh, sudo} {
		type getattr struct {
			rpc.Header
			FH []byte
		}
		res, err := c.Call(&getattr{rpc.Header{Rpcvers: 2, Prog: nfsc.Nfs3Prog, Vers: 3, Proc: 1, Cred: rpc.AuthUnix{Machinename: "pi"}.Auth(), Verf: rpc.AuthNull}, h})
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := xdr.ReadUint32(res); st != 0 {
			t.Fatalf("handle after restart: status %d", st)
		}
	}
}

// TestExtraDisksAPI: disks are created sparse, listed on the machine,
// grown but not shrunk, exported to the machine and deleted.
func TestExtraDisksAPI(t *testing.T) {
	ts := startTest(t, options{nfs: true})
	ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{IP: "127.0.0.1"}, nil)
	var d DiskAnswer
	body := func(v any) io.Reader { b, _ := json.Marshal(v); return bytes.NewReader(b) }
	if code := ts.do("PUT", "/api/v1/machines/3a7f91c2/disks/data", ts.admin, body(map[string]any{"size": "10MiB"}), &d); code != http.StatusCreated || d.Size != 10<<20 || d.Export != "/machines/3a7f91c2/disks/data" {
		t.Fatalf("create: %d %+v", code, d)
	}
	if code := ts.do("PUT", "/api/v1/machines/3a7f91c2/disks/data", ts.admin, body(map[string]any{"size": 10 << 20}), &d); code != http.StatusOK {
		t.Fatalf("same size again: %d", code)
	}
	if code := ts.do("PUT", "/api/v1/machines/3a7f91c2/disks/data", ts.admin, body(map[string]any{"size": "1MiB"}), nil); code != http.StatusConflict {
		t.Fatalf("shrink: %d", code)
	}
	if code := ts.do("PUT", "/api/v1/machines/3a7f91c2/disks/Bad!", ts.admin, body(map[string]any{"size": "1MiB"}), nil); code != http.StatusBadRequest {
		t.Fatalf("bad name: %d", code)
	}
	var m store.Machine
	ts.do("GET", "/api/v1/machines/3a7f91c2", ts.admin, nil, &m)
	if len(m.Disks) != 1 || m.Disks[0] != (store.Disk{Name: "data", Size: 10 << 20}) {
		t.Fatalf("disks on the machine: %+v", m.Disks)
	}
	a := ts.NFSAddr().(*net.TCPAddr)
	c, err := nfsc.DialServiceAtPort(a.IP.String(), a.Port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	disk, err := (&nfsc.Mount{Client: c}).Mount(d.Export, rpc.AuthUnix{Machinename: "pi"}.Auth())
	if err != nil {
		t.Fatal(err)
	}
	if fi, _, err := disk.Lookup("/data.img"); err != nil || fi.Size() != 10<<20 {
		t.Fatalf("data.img over NFS: %v %v", fi, err)
	}
	if code := ts.do("DELETE", "/api/v1/machines/3a7f91c2/disks/data", ts.admin, nil, nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if code := ts.do("DELETE", "/api/v1/machines/3a7f91c2/disks/data", ts.admin, nil, nil); code != http.StatusNotFound {
		t.Fatalf("delete twice: %d", code)
	}
	if _, ok := ts.lastEvent("3a7f91c2", "disk.deleted"); !ok {
		t.Fatal("no event")
	}
}

// TestBootOnce: a machine in boot mode once is answered until it reports
// its boot, then ignored with the reason in its events.
func TestBootOnce(t *testing.T) {
	ts := startTest(t, options{})
	pi := []byte("pi image")
	ts.images.add(t, pi, piTree("console=tty1\n"))
	img, _ := ts.upload("raspios", pi)
	ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Image: img.ID, BootMode: "once"}, nil)
	client := dhcp.Client{Kind: dhcp.KindPi, MAC: "dc:a6:32:00:00:01", Serial: "3a7f91c2", MessageType: dhcpv4.MessageTypeDiscover}
	if d := ts.Decide(context.Background(), client); !d.Answer {
		t.Fatalf("boot-once machine not answered: %+v", d)
	}
	if code := ts.do("POST", "/api/v1/machines/3a7f91c2/booted", ts.token("write"), nil, nil); code != 200 {
		t.Fatalf("booted: %d", code)
	}
	if d := ts.Decide(context.Background(), client); d.Answer || !strings.Contains(d.Reason, "boot-once finished") {
		t.Fatalf("after booted: %+v", d)
	}
	if ev, ok := ts.lastEvent("3a7f91c2", "dhcp.ignored"); !ok || !strings.Contains(ev.Message, "boot-once finished") {
		t.Fatalf("no event: %+v", ev)
	}
	// Setting the mode to once again starts a new run.
	ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Image: img.ID, BootMode: "netboot"}, nil)
	ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Image: img.ID, BootMode: "once"}, nil)
	if d := ts.Decide(context.Background(), client); !d.Answer {
		t.Fatalf("new boot-once run not answered: %+v", d)
	}
}

// fakePlug is a Tasmota plug that records commands.
type fakePlug struct {
	mu   sync.Mutex
	cmds []string
	fail bool
}

func (p *fakePlug) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		http.Error(w, "relay stuck", http.StatusInternalServerError)
		return
	}
	cmd := r.URL.Query().Get("cmnd")
	p.cmds = append(p.cmds, cmd)
	state := "ON"
	if strings.HasSuffix(cmd, "Off") {
		state = "OFF"
	}
	fmt.Fprintf(w, `{"POWER":%q}`, state)
}

func (p *fakePlug) commands() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.cmds...)
}

// TestPowerAPI: power actions go through the driver and are events;
// secrets are redacted in answers and survive a read-modify-write; the
// watchdog power-cycles a machine whose boot stalls.
func TestPowerAPI(t *testing.T) {
	plug := &fakePlug{}
	dev := httptest.NewServer(plug)
	defer dev.Close()
	ts := startTest(t, options{mutate: func(c *Config) { c.PowerWatchdog = 50 * time.Millisecond; c.PowerCycleWait = -1 }})
	pi := []byte("pi image")
	ts.images.add(t, pi, piTree("console=tty1\n"))
	img, _ := ts.upload("raspios", pi)
	spec := MachineSpec{Image: img.ID, Power: &store.Power{Driver: "tasmota", Settings: map[string]any{"host": dev.URL, "password": "hunter2"}}}
	var m store.Machine
	if code := ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, spec, &m); code != http.StatusCreated {
		t.Fatalf("put: %d", code)
	}
	if m.Power.Settings["password"] != power.RedactedValue {
		t.Fatalf("password shown: %+v", m.Power)
	}
	// Read-modify-write with the redacted value keeps the secret.
	spec.Power = m.Power
	ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, spec, nil)
	stored, _ := ts.store.Machine("3a7f91c2")
	if stored.Power.Settings["password"] != "hunter2" {
		t.Fatalf("secret lost: %+v", stored.Power)
	}
	if code := ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Image: img.ID, Power: &store.Power{Driver: "teleport"}}, nil); code != http.StatusBadRequest {
		t.Fatalf("unknown driver: %d", code)
	}

	var ans PowerAnswer
	body := func(a string) io.Reader { return strings.NewReader(`{"action":"` + a + `"}`) }
	if code := ts.do("POST", "/api/v1/machines/3a7f91c2/power", ts.admin, body("status"), &ans); code != 200 || !ans.OK || ans.State != "on" {
		t.Fatalf("status: %d %+v", code, ans)
	}
	if code := ts.do("POST", "/api/v1/machines/3a7f91c2/power", ts.token("read"), body("off"), nil); code != http.StatusForbidden {
		t.Fatalf("read token powers off: %d", code)
	}
	// Power on, then no TFTP request: the watchdog cycles it (and gives up
	// after three cycles).
	if code := ts.do("POST", "/api/v1/machines/3a7f91c2/power", ts.admin, body("on"), &ans); code != 200 {
		t.Fatalf("on: %d %+v", code, ans)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ev, ok := ts.lastEvent("3a7f91c2", "power.watchdog"); ok && strings.Contains(ev.Message, "gives up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watchdog did not act: %+v", ts.events("3a7f91c2"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := []string{"Power", "Power On", "Power Off", "Power On", "Power Off", "Power On", "Power Off", "Power On"}
	if got := plug.commands(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("plug commands %q", got)
	}
	// A TFTP request disarms the watchdog.
	plug.cmds = nil
	ts.do("POST", "/api/v1/machines/3a7f91c2/power", ts.admin, body("on"), nil)
	tftpGet(t, ts.TFTPAddr().String(), "3a7f91c2/start4.elf")
	time.Sleep(200 * time.Millisecond) // give a wrongly armed watchdog time to fire; not an assertion on speed
	if got := plug.commands(); len(got) != 1 {
		t.Fatalf("watchdog cycled a machine that booted: %q", got)
	}
	plug.fail = true
	if code := ts.do("POST", "/api/v1/machines/3a7f91c2/power", ts.admin, body("off"), nil); code != http.StatusBadGateway {
		t.Fatalf("failing plug: %d", code)
	}
	ev, _ := ts.lastEvent("3a7f91c2", "power.off")
	if ev.Fields["result"] != "failed" || !strings.Contains(ev.Fields["error"], "relay stuck") || strings.Contains(ev.Message, "hunter2") {
		t.Fatalf("failure event %+v", ev)
	}
	if code := ts.do("POST", "/api/v1/machines/3a7f91c2/power", ts.admin, body("reboot"), nil); code != http.StatusBadRequest {
		t.Fatalf("bad action: %d", code)
	}
	ts.putJSON("/api/v1/machines/aabbccdd", ts.admin, MachineSpec{}, nil)
	if code := ts.do("POST", "/api/v1/machines/aabbccdd/power", ts.admin, body("on"), nil); code != http.StatusConflict {
		t.Fatalf("no driver: %d", code)
	}
	_ = overlay.ErrNoLayer
}
