package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/netboot/dhcp"
	"github.com/bakeryhq/bakery/internal/netboot/tftp"
	"github.com/bakeryhq/bakery/internal/store"
	dhcpv4 "github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

func (ts *testServer) token(scopes ...string) string {
	var nt NewToken
	b, _ := json.Marshal(TokenRequest{Name: "t-" + strings.Join(scopes, "-"), Scopes: scopes})
	if code := ts.do(http.MethodPost, "/api/v1/tokens", ts.admin, bytes.NewReader(b), &nt); code != http.StatusCreated {
		ts.t.Fatalf("create token: %d", code)
	}
	return nt.Token
}

func (ts *testServer) upload(name string, payload []byte) (store.Image, int) {
	var im store.Image
	code := ts.do(http.MethodPost, "/api/v1/images?name="+name+"&sha256="+sha256Hex(payload), ts.admin, bytes.NewReader(payload), &im)
	return im, code
}

func TestAuthScopes(t *testing.T) {
	ts := startTest(t, options{})
	read, write := ts.token("read"), ts.token("write")
	cases := []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/healthz", "", 200},
		{"GET", "/api/v1/machines", "", 401},
		{"GET", "/api/v1/machines", "bkr_not-a-token", 401},
		{"GET", "/api/v1/machines", read, 200},
		{"GET", "/metrics", "", 401},
		{"GET", "/metrics", read, 200},
		{"GET", "/api/v1/openapi.json", read, 200},
		{"PUT", "/api/v1/machines/3a7f91c2", read, 403},
		{"PUT", "/api/v1/machines/3a7f91c2", write, 200 + 1}, // 201 created
		{"DELETE", "/api/v1/images/nope", read, 403},
		{"GET", "/api/v1/tokens", write, 403},
		{"GET", "/api/v1/tokens", ts.admin, 200},
	}
	for _, c := range cases {
		var body io.Reader
		if c.method == "PUT" {
			body = strings.NewReader(`{"name":"pi"}`)
		}
		if got := ts.do(c.method, c.path, c.token, body, nil); got != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, got, c.want)
		}
	}
	// Tokens never appear in logs, only their ids.
	if strings.Contains(ts.logs.String(), read) || strings.Contains(ts.logs.String(), ts.admin) {
		t.Fatal("a token leaked into the log")
	}
	// A deleted token stops working.
	var toks []store.Token
	ts.do("GET", "/api/v1/tokens", ts.admin, nil, &toks)
	for _, tk := range toks {
		if tk.Hash != "" {
			t.Fatalf("token list shows a hash: %+v", tk)
		}
		if tk.Name == "t-read" {
			if code := ts.do("DELETE", "/api/v1/tokens/"+tk.ID, ts.admin, nil, nil); code != 204 {
				t.Fatalf("delete token: %d", code)
			}
		}
	}
	if code := ts.do("GET", "/api/v1/machines", read, nil, nil); code != 401 {
		t.Fatalf("deleted token: %d", code)
	}
}

func TestAdminTokenStoredHashed(t *testing.T) {
	dir := t.TempDir()
	ts := startTest(t, options{dataDir: dir})
	fi, err := os.Stat(filepath.Join(dir, AdminTokenFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token: %v %v", fi.Mode(), err)
	}
	if !strings.HasPrefix(ts.admin, TokenPrefix) {
		t.Fatalf("token %q", ts.admin[:4])
	}
	if !strings.Contains(ts.logs.String(), AdminTokenFile) || strings.Contains(ts.logs.String(), ts.admin) {
		t.Fatal("log must name the file and not the token")
	}
	ts.stop()
	db, _ := os.ReadFile(filepath.Join(dir, "state.db"))
	if bytes.Contains(db, []byte(ts.admin)) {
		t.Fatal("plaintext token in the database")
	}
	if !bytes.Contains(db, []byte(HashToken(ts.admin))) {
		t.Fatal("token hash not in the database")
	}
}

func TestUploadValidatesAndDedups(t *testing.T) {
	ts := startTest(t, options{})
	payload := []byte("pi image bytes v1")
	ts.images.add(t, payload, piTree("console=serial0,115200 root=/dev/mmcblk0p2 rootwait\n"))
	im, code := ts.upload("raspios", payload)
	if code != http.StatusCreated || im.ID != sha256Hex(payload)[:12] || im.Kind != "pi" || im.Size != int64(len(payload)) {
		t.Fatalf("upload: %d %+v", code, im)
	}
	if !strings.Contains(strings.Join(im.BootFiles, ","), "start4.elf") {
		t.Fatalf("boot files %v", im.BootFiles)
	}
	stored := filepath.Join(ts.cfg.DataDir, "images", "sha256", im.SHA256+".img")
	if b, err := os.ReadFile(stored); err != nil || !bytes.Equal(b, payload) {
		t.Fatalf("stored file: %v", err)
	}
	again, code := ts.upload("raspios-again", payload)
	if code != http.StatusOK || again.ID != im.ID || again.Name != "raspios" {
		t.Fatalf("dedup: %d %+v", code, again)
	}
	// Hash mismatch: 400 and nothing kept.
	bad := []byte("other bytes")
	if code := ts.do("POST", "/api/v1/images?name=x&sha256="+sha256Hex([]byte("something else")), ts.admin, bytes.NewReader(bad), nil); code != 400 {
		t.Fatalf("mismatch: %d", code)
	}
	// Not an image we can boot: 422 and nothing kept.
	if _, code := ts.upload("junk", bad); code != http.StatusUnprocessableEntity {
		t.Fatalf("junk: %d", code)
	}
	var ims []store.Image
	ts.do("GET", "/api/v1/images", ts.admin, nil, &ims)
	files, _ := os.ReadDir(filepath.Join(ts.cfg.DataDir, "images", "sha256"))
	tmp, _ := os.ReadDir(ts.tmpDir())
	if len(ims) != 1 || len(files) != 1 || len(tmp) != 0 {
		t.Fatalf("%d records, %d files, %d temporary files; want 1, 1, 0", len(ims), len(files), len(tmp))
	}
	var got store.Image
	if code := ts.do("GET", "/api/v1/images/raspios", ts.admin, nil, &got); code != 200 || got.ID != im.ID {
		t.Fatalf("get by name: %d", code)
	}
	for _, q := range []string{"name=&sha256=" + im.SHA256, "name=x&sha256=zz", "name=a/b&sha256=" + im.SHA256} {
		if code := ts.do("POST", "/api/v1/images?"+q, ts.admin, strings.NewReader("x"), nil); code != 400 {
			t.Errorf("%s: %d", q, code)
		}
	}
}

// TestUploadKilledMidway cuts the connection halfway through the body:
// neither a record nor a file may remain.
func TestUploadKilledMidway(t *testing.T) {
	ts := startTest(t, options{})
	payload := bytes.Repeat([]byte("0123456789"), 1<<20) // 10 MiB
	ts.images.add(t, payload, piTree(""))
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /api/v1/images?name=half&sha256=%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n",
		sha256Hex(payload), ts.admin, len(payload))
	conn.Write(payload[:len(payload)/2])
	// Wait until the server has started writing the temporary file, then kill.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ents, _ := os.ReadDir(ts.tmpDir())
		if len(ents) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	conn.Close()
	for {
		ents, _ := os.ReadDir(ts.tmpDir())
		if len(ents) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("temporary file left: %v", ents[0].Name())
		}
		time.Sleep(5 * time.Millisecond)
	}
	var ims []store.Image
	ts.do("GET", "/api/v1/images", ts.admin, nil, &ims)
	files, _ := os.ReadDir(filepath.Join(ts.cfg.DataDir, "images", "sha256"))
	if len(ims) != 0 || len(files) != 0 {
		t.Fatalf("%d records and %d files after a killed upload", len(ims), len(files))
	}
}

func TestMachinesAPI(t *testing.T) {
	ts := startTest(t, options{})
	payload := []byte("img")
	ts.images.add(t, payload, piTree(""))
	im, _ := ts.upload("raspios", payload)
	spec := MachineSpec{Name: "pi-1", Image: "raspios", Labels: map[string]string{"rack": "a", "role": "worker"}, CmdlineAppend: "quiet"}
	var m store.Machine
	if code := ts.putJSON("/api/v1/machines/100000003A7F91C2", ts.admin, spec, &m); code != 201 {
		t.Fatalf("create: %d", code)
	}
	if m.ID != "3a7f91c2" || m.Image != im.ID || m.BootMode != "netboot" || m.Serial != "3a7f91c2" {
		t.Fatalf("%+v", m)
	}
	if code := ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, spec, &m); code != 200 {
		t.Fatalf("idempotent PUT: %d", code)
	}
	ts.putJSON("/api/v1/machines/DC-A6-32-01-02-03", ts.admin, MachineSpec{Labels: map[string]string{"rack": "b"}, BootMode: "local"}, &m)
	if m.ID != "dc:a6:32:01:02:03" || m.MAC != "dc:a6:32:01:02:03" {
		t.Fatalf("MAC id: %+v", m)
	}
	for _, bad := range []MachineSpec{{BootMode: "sometimes"}, {Image: "nope"}, {MAC: "zz"}, {IP: "::1"}, {CmdlineAppend: "a\nb"}, {Root: "disk"}} {
		if code := ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, bad, nil); code != 400 {
			t.Errorf("%+v: %d", bad, code)
		}
	}
	if code := ts.putJSON("/api/v1/machines/not-an-id", ts.admin, spec, nil); code != 400 {
		t.Errorf("bad id: %d", code)
	}
	if code := ts.do("PUT", "/api/v1/machines/3a7f91c2", ts.admin, strings.NewReader(`{"nmae":"typo"}`), nil); code != 400 {
		t.Errorf("unknown field: %d", code)
	}
	var ms []store.Machine
	ts.do("GET", "/api/v1/machines?label=rack=a", ts.admin, nil, &ms)
	if len(ms) != 1 || ms[0].ID != "3a7f91c2" {
		t.Fatalf("label filter: %+v", ms)
	}
	ts.do("GET", "/api/v1/machines?label=rack=a&label=role=db", ts.admin, nil, &ms)
	if len(ms) != 0 {
		t.Fatalf("two labels: %+v", ms)
	}
	// The image is in use: 409.
	if code := ts.do("DELETE", "/api/v1/images/"+im.ID, ts.admin, nil, nil); code != 409 {
		t.Fatalf("delete used image: %d", code)
	}
	var evs []store.Event
	ts.do("GET", "/api/v1/machines/3a7f91c2/events", ts.admin, nil, &evs)
	if len(evs) != 1 || evs[0].Type != "api.machine.put" {
		t.Fatalf("events %+v", evs)
	}
	if code := ts.do("DELETE", "/api/v1/machines/3a7f91c2", ts.admin, nil, nil); code != 204 {
		t.Fatalf("delete machine: %d", code)
	}
	if code := ts.do("GET", "/api/v1/machines/3a7f91c2", ts.admin, nil, nil); code != 404 {
		t.Fatalf("deleted machine: %d", code)
	}
	if code := ts.do("DELETE", "/api/v1/images/"+im.ID, ts.admin, nil, nil); code != 204 {
		t.Fatalf("delete unused image: %d", code)
	}
	if _, err := os.Stat(ts.imagePath(im)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("image file kept after delete: %v", err)
	}
}

func TestRestartKeepsState(t *testing.T) {
	dir := t.TempDir()
	images := &fakeImages{trees: map[string]map[string]string{}}
	ts := startTest(t, options{dataDir: dir, images: images})
	payload := []byte("img")
	images.add(t, payload, piTree(""))
	im, _ := ts.upload("raspios", payload)
	ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Image: im.ID}, nil)
	admin := ts.admin
	ts.stop()

	ts2 := startTest(t, options{dataDir: dir, images: images})
	if ts2.admin != admin {
		t.Fatal("admin token changed across restarts")
	}
	var m store.Machine
	if code := ts2.do("GET", "/api/v1/machines/3a7f91c2", admin, nil, &m); code != 200 || m.Image != im.ID {
		t.Fatalf("after restart: %d %+v", code, m)
	}
	var ims []store.Image
	ts2.do("GET", "/api/v1/images", admin, nil, &ims)
	if len(ims) != 1 {
		t.Fatalf("images after restart: %+v", ims)
	}
}

// TestOpenAPIMatchesRoutes keeps the hand-written OpenAPI document and the
// registered routes in sync, both ways.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	ts := startTest(t, options{})
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	var inDoc, inMux []string
	for p, ops := range doc.Paths {
		for m := range ops {
			inDoc = append(inDoc, strings.ToUpper(m)+" "+p)
		}
	}
	wild := regexp.MustCompile(`\{(\w+)\.\.\.\}`)
	for _, rt := range ts.routes {
		inMux = append(inMux, wild.ReplaceAllString(rt.pattern, "{$1}"))
	}
	sort.Strings(inDoc)
	sort.Strings(inMux)
	if strings.Join(inDoc, "\n") != strings.Join(inMux, "\n") {
		t.Fatalf("OpenAPI paths and routes differ:\ndoc:\n%s\n\nroutes:\n%s", strings.Join(inDoc, "\n"), strings.Join(inMux, "\n"))
	}
}

func TestMetrics(t *testing.T) {
	ts := startTest(t, options{})
	ts.do("GET", "/healthz", "", nil, nil)
	req, _ := http.NewRequest("GET", ts.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+ts.admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"bakery_tftp_active_transfers", "bakery_boot_cache_bytes", "bakery_http_requests_total", "go_goroutines"} {
		if !strings.Contains(string(b), name) {
			t.Errorf("metric %s missing", name)
		}
	}
	pub := startTest(t, options{mutate: func(c *Config) { c.MetricsPublic = true }})
	if code := pub.do("GET", "/metrics", "", nil, nil); code != 200 {
		t.Fatalf("public metrics: %d", code)
	}
}

// dhcpRig runs the server's DHCP on loopback with replies unicast to a
// test socket.
type dhcpRig struct {
	*testServer
	cli *net.UDPConn
	srv net.Addr
}

func newDHCPRig(t *testing.T, o options) *dhcpRig {
	srvConn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	o.dhcp, o.replyTo = srvConn, cli.LocalAddr().(*net.UDPAddr)
	return &dhcpRig{testServer: startTest(t, o), cli: cli, srv: srvConn.LocalAddr()}
}

// exchange sends m and returns the reply, or nil when the server stays
// silent (it sends a sentinel probe after m to know without waiting for a
// timeout: answers come in order because the policy runs before the delay).
func (r *dhcpRig) exchange(m *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	r.t.Helper()
	if _, err := r.cli.WriteTo(m.ToBytes(), r.srv); err != nil {
		r.t.Fatal(err)
	}
	// The sentinel is a configured iPXE client that is always answered.
	hw, _ := net.ParseMAC("52:54:00:ff:ff:ff")
	sentinel, _ := dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")))
	time.Sleep(20 * time.Millisecond) // order the two packets; not an assertion
	r.cli.WriteTo(sentinel.ToBytes(), r.srv)
	buf := make([]byte, 1500)
	var got *dhcpv4.DHCPv4
	for {
		r.cli.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := r.cli.ReadFrom(buf)
		if err != nil {
			r.t.Fatalf("no DHCP reply: %v", err)
		}
		rep, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			r.t.Fatal(err)
		}
		if rep.TransactionID == sentinel.TransactionID {
			return got
		}
		if rep.TransactionID == m.TransactionID {
			got = rep
		}
	}
}

func piDiscover(t *testing.T, mac, serial string, mt dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	hw, _ := net.ParseMAC(mac)
	id, err := dhcp.PiClientID{Model: "RPi4", BoardRev: 0xd03114, Serial: serial}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(mt), dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, id),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(0)))}
	if mt == dhcpv4.MessageTypeDiscover {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(dhcp.PiVendorClass)))
	} else {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(127, 0, 0, 1))))
	}
	m, err := dhcpv4.NewDiscovery(hw, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDHCPPolicy(t *testing.T) {
	r := newDHCPRig(t, options{})
	// The sentinel: a configured iPXE VM.
	vm := []byte("vm image")
	r.images.add(t, vm, map[string]map[string]string{"root": {"boot/vmlinuz": "kernel", "boot/initrd.img": "initrd"}})
	vmImg, _ := r.upload("debian", vm)
	r.putJSON("/api/v1/machines/52:54:00:ff:ff:ff", r.admin, MachineSpec{Image: vmImg.ID}, nil)

	pi := []byte("pi image")
	r.images.add(t, pi, piTree("console=tty1\n"))
	piImg, _ := r.upload("raspios", pi)

	// Unknown Pi: no answer, recorded as discovered.
	if rep := r.exchange(piDiscover(t, "dc:a6:32:00:00:01", "3a7f91c2", dhcpv4.MessageTypeDiscover)); rep != nil {
		t.Fatalf("unknown Pi answered: %s", rep.Summary())
	}
	var m store.Machine
	if code := r.do("GET", "/api/v1/machines/3a7f91c2", r.admin, nil, &m); code != 200 || !m.Discovered || m.MAC != "dc:a6:32:00:00:01" || m.Model != "RPi4" {
		t.Fatalf("discovered machine: %d %+v", code, m)
	}
	// Assign an image: the DISCOVER gets an OFFER and the REQUEST (without
	// option 60) an ACK.
	r.putJSON("/api/v1/machines/3a7f91c2", r.admin, MachineSpec{Image: piImg.ID}, nil)
	offer := r.exchange(piDiscover(t, "dc:a6:32:00:00:01", "3a7f91c2", dhcpv4.MessageTypeDiscover))
	if offer == nil || offer.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatal("configured Pi not offered")
	}
	if !bytes.Equal(offer.Options.Get(dhcpv4.OptionVendorSpecificInformation), dhcp.PiVendorOptions()) || offer.TFTPServerName() != "127.0.0.1" {
		t.Fatalf("offer: %s", offer.Summary())
	}
	ack := r.exchange(piDiscover(t, "dc:a6:32:00:00:01", "3a7f91c2", dhcpv4.MessageTypeRequest))
	if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Fatal("REQUEST without option 60 not acknowledged")
	}
	// Local boot mode: ignored.
	r.putJSON("/api/v1/machines/3a7f91c2", r.admin, MachineSpec{Image: piImg.ID, BootMode: "local"}, nil)
	if rep := r.exchange(piDiscover(t, "dc:a6:32:00:00:01", "3a7f91c2", dhcpv4.MessageTypeDiscover)); rep != nil {
		t.Fatal("local-mode machine answered")
	}
	var evs []store.Event
	r.do("GET", "/api/v1/machines/3a7f91c2/events", r.admin, nil, &evs)
	var types []string
	for _, e := range evs {
		types = append(types, e.Type)
	}
	want := "machine.discovered dhcp.ignored api.machine.put dhcp.answered dhcp.answered api.machine.put dhcp.ignored"
	if strings.Join(types, " ") != want {
		t.Fatalf("timeline:\n%s\nwant\n%s", strings.Join(types, " "), want)
	}
	if !strings.Contains(evs[len(evs)-1].Message, "boot mode is local") {
		t.Fatalf("reason missing: %+v", evs[len(evs)-1])
	}
	// The REQUEST's requested address was learned.
	r.do("GET", "/api/v1/machines/3a7f91c2", r.admin, nil, &m)
	if len(m.SeenIPs) == 0 || m.SeenIPs[0] != "127.0.0.1" {
		t.Fatalf("seen ips %v", m.SeenIPs)
	}
}

func TestPXEAndIPXE(t *testing.T) {
	r := newDHCPRig(t, options{})
	vm := []byte("vm image")
	r.images.add(t, vm, map[string]map[string]string{
		"boot": {"EFI/BOOT/BOOTX64.EFI": "efi", "cmdline.txt": "console=ttyS0 root=/dev/vda2\n"},
		"root": {"boot/vmlinuz": "the kernel", "boot/initrd.img": "the initrd"}})
	img, code := r.upload("debian", vm)
	if code != 201 || img.Kind != "pxe" || img.Kernel != "root:/boot/vmlinuz" {
		t.Fatalf("%d %+v", code, img)
	}
	r.putJSON("/api/v1/machines/52:54:00:ff:ff:ff", r.admin, MachineSpec{Image: img.ID}, nil)
	r.putJSON("/api/v1/machines/52:54:00:00:00:07", r.admin, MachineSpec{Image: img.ID, CmdlineAppend: "quiet"}, nil)
	hw, _ := net.ParseMAC("52:54:00:00:00:07")
	uefi, _ := dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(7))))
	if rep := r.exchange(uefi); rep != nil {
		t.Fatal("answered PXE without iPXE binaries in DATA/ipxe")
	}
	os.WriteFile(filepath.Join(r.ipxeDir(), "ipxe.efi"), []byte("placeholder ipxe"), 0o644)
	rep := r.exchange(uefi)
	if rep == nil || rep.BootFileNameOption() != "ipxe.efi" || !rep.ServerIPAddr.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("PXE reply %v", rep)
	}
	// The chainload file comes from our TFTP.
	var buf bytes.Buffer
	if _, err := tftp.Fetch(context.Background(), r.TFTPAddr().String(), "ipxe.efi", tftp.FetchOptions{}, &buf); err != nil || buf.String() != "placeholder ipxe" {
		t.Fatalf("ipxe.efi over TFTP: %q %v", buf.String(), err)
	}
	ipxe, _ := dhcpv4.NewDiscovery(hw, dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE")),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003010")))
	rep = r.exchange(ipxe)
	wantURL := r.url + "/boot/ipxe?mac=52%3A54%3A00%3A00%3A00%3A07"
	if rep == nil || rep.BootFileNameOption() != wantURL {
		t.Fatalf("iPXE boot file %v, want %s", rep, wantURL)
	}
	resp, err := http.Get(wantURL)
	if err != nil {
		t.Fatal(err)
	}
	script, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantScript := "#!ipxe\nkernel " + r.url + "/boot/52:54:00:00:00:07/kernel initrd=initrd console=ttyS0 root=/dev/vda2 quiet\ninitrd --name initrd " + r.url + "/boot/52:54:00:00:00:07/initrd\nboot\n"
	if string(script) != wantScript {
		t.Fatalf("script:\n%s\nwant:\n%s\n%s", script, wantScript, r.logs.String())
	}
	for file, want := range map[string]string{"kernel": "the kernel", "initrd": "the initrd"} {
		resp, err := http.Get(r.url + "/boot/52:54:00:00:00:07/" + file)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != want {
			t.Fatalf("%s: %d %q", file, resp.StatusCode, b)
		}
	}
	// Unknown or local machines get nothing over HTTP either.
	r.putJSON("/api/v1/machines/52:54:00:00:00:07", r.admin, MachineSpec{Image: img.ID, BootMode: "local"}, nil)
	for _, u := range []string{"/boot/ipxe?mac=52:54:00:00:00:07", "/boot/52:54:00:00:00:07/kernel", "/boot/ipxe?mac=52:54:00:00:00:99", "/boot/ipxe?mac=../etc"} {
		resp, _ := http.Get(r.url + u)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("%s served", u)
		}
	}
}

// waitTFTPIdle waits until every transfer has been reported (a condition).
func (ts *testServer) waitTFTPIdle() {
	deadline := time.Now().Add(20 * time.Second)
	for ts.tftp.Active() != 0 && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
}

func tftpGet(t *testing.T, addr, name string) ([]byte, error) {
	var buf bytes.Buffer
	_, err := tftp.Fetch(context.Background(), addr, name, tftp.FetchOptions{BlockSize: 1024, TSize: true}, &buf)
	return buf.Bytes(), err
}

func TestTFTPRouting(t *testing.T) {
	var macsMu sync.Mutex
	macs := map[netip.Addr]string{}
	ts := startTest(t, options{neighbor: func(ip netip.Addr) (string, bool) {
		macsMu.Lock()
		defer macsMu.Unlock()
		m, ok := macs[ip]
		return m, ok
	},
		mutate: func(c *Config) { c.DefaultImage = "raspios" }})
	pi := []byte("pi image")
	ts.images.add(t, pi, piTree("console=serial0,115200 console=tty1 root=/dev/mmcblk0p2 rootwait\n"))
	img, _ := ts.upload("raspios", pi)
	ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Image: img.ID, CmdlineAppend: "systemd.unit=rescue.target", ConfigAppend: "enable_uart=1"}, nil)
	addr := ts.TFTPAddr().String()

	got, err := tftpGet(t, addr, "3a7f91c2/cmdline.txt")
	if err != nil || string(got) != "console=serial0,115200 console=tty1 root=/dev/mmcblk0p2 rootwait systemd.unit=rescue.target\n" {
		t.Fatalf("cmdline.txt %q %v\n%s", got, err, ts.logs.String())
	}
	got, err = tftpGet(t, addr, "3a7f91c2/config.txt")
	if err != nil || !strings.HasSuffix(string(got), "[all]\nenable_uart=1\n") || !strings.HasPrefix(string(got), "[all]\narm_64bit=1\n") {
		t.Fatalf("config.txt %q %v", got, err)
	}
	for name, want := range map[string]string{"3a7f91c2/start4.elf": "start4 firmware", "3a7f91c2/overlays/vc4-kms-v3d.dtbo": "overlay"} {
		if got, err := tftpGet(t, addr, name); err != nil || string(got) != want {
			t.Fatalf("%s: %q %v", name, got, err)
		}
	}
	var rerr *tftp.RemoteError
	if _, err := tftpGet(t, addr, "3a7f91c2/bootsig.bin"); !errors.As(err, &rerr) || rerr.Code != tftp.ErrCodeNotFound {
		t.Fatalf("missing file: %v", err)
	}
	// Unknown serial: not found, and the machine appears as discovered.
	if _, err := tftpGet(t, addr, "deadbeef/start4.elf"); !errors.As(err, &rerr) || rerr.Code != tftp.ErrCodeNotFound {
		t.Fatalf("unknown serial: %v", err)
	}
	var m store.Machine
	if code := ts.do("GET", "/api/v1/machines/deadbeef", ts.admin, nil, &m); code != 200 || !m.Discovered {
		t.Fatalf("discovered by TFTP: %d %+v", code, m)
	}
	// Traversal: access violation, recorded.
	if _, err := tftpGet(t, addr, "3a7f91c2/../deadbeef/start4.elf"); !errors.As(err, &rerr) || rerr.Code != tftp.ErrCodeAccess {
		t.Fatalf("traversal: %v", err)
	}
	// No prefix: the requesting address (127.0.0.1, learned from the
	// prefixed requests above) decides.
	if got, err := tftpGet(t, addr, "start4.elf"); err != nil || string(got) != "start4 firmware" {
		t.Fatalf("unprefixed: %q %v", got, err)
	}
	ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Image: img.ID, BootMode: "local"}, nil)
	if _, err := tftpGet(t, addr, "3a7f91c2/start4.elf"); !errors.As(err, &rerr) || rerr.Code != tftp.ErrCodeNotFound {
		t.Fatalf("local machine served: %v", err)
	}
	ts.do("DELETE", "/api/v1/machines/3a7f91c2", ts.admin, nil, nil)
	// Unknown address, bootcode.bin: from the default image (Pi 3 first stage).
	if got, err := tftpGet(t, addr, "bootcode.bin"); err != nil || string(got) != "bootcode for pi 3" {
		t.Fatalf("default bootcode.bin: %q %v", got, err)
	}
	if _, err := tftpGet(t, addr, "start.elf"); !errors.As(err, &rerr) || rerr.Code != tftp.ErrCodeNotFound {
		t.Fatalf("unknown address got a file: %v", err)
	}
	// A Pi 3 configured by MAC: found through the ARP table, and its serial
	// is learned from the prefixed request.
	macsMu.Lock()
	macs[netip.MustParseAddr("127.0.0.1")] = "b8:27:eb:00:00:01"
	macsMu.Unlock()
	ts.putJSON("/api/v1/machines/b8:27:eb:00:00:01", ts.admin, MachineSpec{Image: img.ID}, nil)
	if got, err := tftpGet(t, addr, "bootcode.bin"); err != nil || string(got) != "bootcode for pi 3" {
		t.Fatalf("Pi 3 bootcode.bin: %q %v", got, err)
	}
	if _, err := tftpGet(t, addr, "0badc0de/start4.elf"); err != nil {
		t.Fatalf("Pi 3 by ARP with serial prefix: %v", err)
	}
	ts.do("GET", "/api/v1/machines/b8:27:eb:00:00:01", ts.admin, nil, &m)
	if m.Serial != "0badc0de" {
		t.Fatalf("serial not learned: %+v", m)
	}
	ts.waitTFTPIdle()
	var evs []store.Event
	ts.do("GET", "/api/v1/machines/b8:27:eb:00:00:01/events", ts.admin, nil, &evs)
	if len(evs) == 0 || evs[len(evs)-1].Type != "tftp.served" {
		t.Fatalf("events %+v", evs)
	}
}

func TestShutdownStopsEverything(t *testing.T) {
	r := newDHCPRig(t, options{})
	addr := r.TFTPAddr().String()
	r.stop()
	if _, err := http.Get(r.url + "/healthz"); err == nil {
		t.Fatal("HTTP still answers after shutdown")
	}
	if _, err := tftpGet(t, addr, "x"); err == nil {
		t.Fatal("TFTP still answers after shutdown")
	}
}
