package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	pintftp "github.com/pin/tftp/v3"
)

func TestParsePath(t *testing.T) {
	good := map[string]Path{
		"start4.elf":                     {File: "start4.elf"},
		"3a7f91c2/start4.elf":            {File: "start4.elf", Serial: "3a7f91c2"},
		"3A7F91C2/overlays/vc4.dtbo":     {File: "overlays/vc4.dtbo", Serial: "3a7f91c2"},
		"100000003a7f91c2/cmdline.txt":   {File: "cmdline.txt", Serial: "3a7f91c2"},
		"dc-a6-32-01-02-03/config.txt":   {File: "config.txt", MAC: "dc:a6:32:01:02:03"},
		"overlays/overlay_map.dtb":       {File: "overlays/overlay_map.dtb"},
		"3a7f91c2":                       {File: "3a7f91c2"},
		"bootcode.bin":                   {File: "bootcode.bin"},
		"ipxe-arm64.efi":                 {File: "ipxe-arm64.efi"},
		"3a7f91c2/dir with space/x.dtbo": {File: "dir with space/x.dtbo", Serial: "3a7f91c2"},
	}
	for in, want := range good {
		got, err := ParsePath(in)
		if err != nil || got != want {
			t.Errorf("ParsePath(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := []string{"", "/etc/passwd", "../etc/passwd", "3a7f91c2/../x", "3a7f91c2/./x", "a//b", "a/", "a\\b",
		"..\\..\\windows", "a\x00b", "a\nb", "\xff\xfe", strings.Repeat("a", 256), strings.Repeat("a/", 8) + "a", "."}
	for _, in := range bad {
		if got, err := ParsePath(in); err == nil || !errors.Is(err, ErrBadPath) {
			t.Errorf("ParsePath(%q) = %+v, %v; want refusal", in, got, err)
		}
	}
}

func TestParseRequestAndNegotiate(t *testing.T) {
	p := []byte("\x00\x01a/b\x00OCTET\x00TSIZE\x000\x00blksize\x001024\x00windowsize\x0016\x00blksize\x0099\x00")
	rq, err := ParseRequest(p)
	if err != nil {
		t.Fatal(err)
	}
	if rq.Filename != "a/b" || rq.Mode != "octet" || rq.Options["tsize"] != "0" || rq.Options["blksize"] != "1024" {
		t.Fatalf("%+v", rq)
	}
	n := Negotiate(rq.Options, 1468, 8)
	if n.BlockSize != 1024 || n.WindowSize != 8 || !n.TSize || strings.Join(n.Acked, ",") != "blksize,tsize,windowsize" {
		t.Fatalf("%+v", n)
	}
	if got := string(n.oack(1234)); got != "\x00\x06blksize\x001024\x00tsize\x001234\x00windowsize\x008\x00" {
		t.Fatalf("oack %q", got)
	}
	if n := Negotiate(map[string]string{"blksize": "70000", "windowsize": "0", "timeout": "x"}, 1468, 64); len(n.Acked) != 0 || n.BlockSize != 512 || n.WindowSize != 1 {
		t.Fatalf("bad options accepted: %+v", n)
	}
	for _, bad := range []string{"", "\x00\x01", "\x00\x03a\x00octet\x00", "\x00\x01a\x00octet", "\x00\x01\x00octet\x00", "\x00\x01a\x00octet\x00blksize\x00"} {
		if _, err := ParseRequest([]byte(bad)); err == nil {
			t.Errorf("ParseRequest(%q) accepted", bad)
		}
	}
}

// memResolver serves files from memory; "<serial>/file" only for known
// serials, like the real router.
type memResolver struct {
	files  map[string][]byte
	serial string
}

func (m *memResolver) Resolve(_ context.Context, rq Request) (Content, error) {
	if rq.Path.Serial != "" && rq.Path.Serial != m.serial {
		return Content{}, ErrNotFound
	}
	if rq.Path.File == "secret" {
		return Content{}, ErrAccess
	}
	b, ok := m.files[rq.Path.File]
	if !ok {
		return Content{}, fmt.Errorf("%s: %w", rq.Path.File, ErrNotFound)
	}
	return Content{R: bytes.NewReader(b), Size: int64(len(b)), Machine: rq.Path.Serial}, nil
}

type testServer struct {
	*Server
	addr   string
	mu     sync.Mutex
	done   []Transfer
	cancel func()
}

func (ts *testServer) transfers() []Transfer {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]Transfer(nil), ts.done...)
}

// waitIdle waits until every transfer has ended (a condition, not a time).
func (ts *testServer) waitIdle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for ts.Active() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d transfers still active", ts.Active())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startServer(t *testing.T, r Resolver, cfg Config) *testServer {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{addr: conn.LocalAddr().String()}
	cfg.Conn, cfg.Resolver = conn, r
	if cfg.Timeout == 0 {
		cfg.Timeout = 200 * time.Millisecond
	}
	cfg.OnDone = func(tr Transfer) {
		ts.mu.Lock()
		ts.done = append(ts.done, tr)
		ts.mu.Unlock()
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = srv
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx) }()
	ts.cancel = func() {
		cancel()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(ts.cancel)
	return ts
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func testFiles(t testing.TB) map[string][]byte {
	return map[string][]byte{
		"start4.elf":        randomBytes(t, 2<<20+17),
		"cmdline.txt":       []byte("console=serial0,115200 root=/dev/nfs\n"),
		"empty":             {},
		"exact":             randomBytes(t, 4096),
		"overlays/vc4.dtbo": randomBytes(t, 3000),
	}
}

func TestInteropCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	files := testFiles(t)
	ts := startServer(t, &memResolver{files: files, serial: "3a7f91c2"}, Config{})
	dir := t.TempDir()
	// curl 7.88 fails on empty files against any server (dnsmasq too:
	// "getpeername() failed"), so the empty file is fetched with Fetch below.
	for _, name := range []string{"start4.elf", "cmdline.txt", "exact", "overlays/vc4.dtbo"} {
		out := filepath.Join(dir, "out")
		cmd := exec.Command("curl", "-sS", "--tftp-blksize", "1024", "-o", out, "tftp://"+ts.addr+"/3a7f91c2/"+name)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("curl %s: %v\n%s", name, err, b)
		}
		got, _ := os.ReadFile(out)
		if !bytes.Equal(got, files[name]) {
			t.Fatalf("%s: got %d bytes, want %d", name, len(got), len(files[name]))
		}
	}
	// Unknown serial: curl reports TFTP "file not found" (exit 68).
	err := exec.Command("curl", "-sS", "-o", filepath.Join(dir, "x"), "tftp://"+ts.addr+"/deadbeef/start4.elf").Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 68 {
		t.Fatalf("unknown serial: curl %v, want exit 68 (file not found)", err)
	}
	ts.waitIdle(t)
}

func TestInteropPinClient(t *testing.T) {
	files := testFiles(t)
	ts := startServer(t, &memResolver{files: files, serial: "3a7f91c2"}, Config{})
	c, err := pintftp.NewClient(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetBlockSize(1024)
	c.RequestTSize(true)
	wt, err := c.Receive("3a7f91c2/start4.elf", "octet")
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := wt.(pintftp.IncomingTransfer).Size(); !ok || n != int64(len(files["start4.elf"])) {
		t.Fatalf("tsize %d %v", n, ok)
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), files["start4.elf"]) {
		t.Fatal("content differs")
	}
	ts.waitIdle(t)
	tr := ts.transfers()
	if len(tr) != 1 || tr[0].Outcome != OutcomeServed || tr[0].Bytes != int64(len(files["start4.elf"])) || tr[0].BlockSize != 1024 || tr[0].Machine != "3a7f91c2" {
		t.Fatalf("transfer report %+v", tr)
	}
}

// TestInteropAtftpWindowsize checks RFC 7440 against a client we did not
// write (atftp 0.8 implements windowsize).
func TestInteropAtftpWindowsize(t *testing.T) {
	if _, err := exec.LookPath("atftp"); err != nil {
		t.Skip("atftp not installed (scripts/ensure-deps.sh test)")
	}
	files := testFiles(t)
	ts := startServer(t, &memResolver{files: files, serial: "3a7f91c2"}, Config{})
	host, port, _ := net.SplitHostPort(ts.addr)
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command("atftp", "--option", "blksize 1428", "--option", "windowsize 16", "--option", "tsize 0",
		"-g", "-r", "3a7f91c2/start4.elf", "-l", out, host, port)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("atftp: %v\n%s", err, b)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, files["start4.elf"]) {
		t.Fatalf("got %d bytes, want %d", len(got), len(files["start4.elf"]))
	}
	ts.waitIdle(t)
	tr := ts.transfers()
	if len(tr) != 1 || tr[0].WindowSize != 16 || tr[0].Outcome != OutcomeServed {
		t.Fatalf("transfer %+v", tr)
	}
}

func TestInteropBusybox(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("busybox not installed")
	}
	files := testFiles(t)
	ts := startServer(t, &memResolver{files: files, serial: "3a7f91c2"}, Config{})
	host, port, _ := net.SplitHostPort(ts.addr)
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command("busybox", "tftp", "-b", "1024", "-g", "-r", "3a7f91c2/exact", "-l", out, host, port)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox tftp: %v\n%s", err, b)
	}
	got, _ := os.ReadFile(out)
	if !bytes.Equal(got, files["exact"]) {
		t.Fatalf("got %d bytes", len(got))
	}
}

func TestFetchWindowsize(t *testing.T) {
	files := testFiles(t)
	ts := startServer(t, &memResolver{files: files, serial: "3a7f91c2"}, Config{})
	var empty bytes.Buffer
	if n, err := Fetch(context.Background(), ts.addr, "empty", FetchOptions{TSize: true}, &empty); err != nil || n != 0 {
		t.Fatalf("empty file: %d bytes, %v", n, err)
	}
	for _, o := range []FetchOptions{{}, {BlockSize: 1024, TSize: true}, {BlockSize: 1468, WindowSize: 16}, {BlockSize: 8, WindowSize: 64}} {
		var buf bytes.Buffer
		if _, err := Fetch(context.Background(), ts.addr, "3a7f91c2/overlays/vc4.dtbo", o, &buf); err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		if !bytes.Equal(buf.Bytes(), files["overlays/vc4.dtbo"]) {
			t.Fatalf("%+v: content differs", o)
		}
	}
	// Block numbers wrap past 65535: 2 MiB in 8-byte blocks is 262k blocks.
	var buf bytes.Buffer
	if _, err := Fetch(context.Background(), ts.addr, "start4.elf", FetchOptions{BlockSize: 8, WindowSize: 64}, &buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), files["start4.elf"]) {
		t.Fatal("wrapped transfer differs")
	}
}

// rawClient speaks TFTP packet by packet to check what the server sends.
type rawClient struct {
	t    *testing.T
	conn *net.UDPConn
	srv  *net.UDPAddr
	peer *net.UDPAddr
}

func newRaw(t *testing.T, addr string) *rawClient {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ra, _ := net.ResolveUDPAddr("udp4", addr)
	return &rawClient{t: t, conn: conn, srv: ra}
}

func (c *rawClient) rrq(name string, opts ...string) {
	p := append([]byte{0, 1}, name...)
	p = append(append(p, 0), "octet\x00"...)
	for _, o := range opts {
		p = append(append(p, o...), 0)
	}
	if _, err := c.conn.WriteToUDP(p, c.srv); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) recv() (op uint16, block uint16, payload []byte) {
	c.t.Helper()
	buf := make([]byte, 70000)
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := c.conn.ReadFromUDP(buf)
	if err != nil {
		c.t.Fatal(err)
	}
	c.peer = from
	return binary.BigEndian.Uint16(buf), binary.BigEndian.Uint16(buf[2:]), append([]byte(nil), buf[4:n]...)
}

func (c *rawClient) send(op, block uint16) {
	p := make([]byte, 4)
	binary.BigEndian.PutUint16(p, op)
	binary.BigEndian.PutUint16(p[2:], block)
	c.conn.WriteToUDP(p, c.peer)
}

func TestRefusals(t *testing.T) {
	ts := startServer(t, &memResolver{files: testFiles(t), serial: "3a7f91c2"}, Config{})
	for name, want := range map[string]uint16{
		"../../etc/passwd":       ErrCodeAccess,
		"/etc/passwd":            ErrCodeAccess,
		"3a7f91c2/..\\x":         ErrCodeAccess,
		strings.Repeat("a", 300): ErrCodeAccess,
		"3a7f91c2/secret":        ErrCodeAccess,
		"3a7f91c2/bootsig.bin":   ErrCodeNotFound,
		"deadbeef/start4.elf":    ErrCodeNotFound,
	} {
		c := newRaw(t, ts.addr)
		c.rrq(name)
		op, code, _ := c.recv()
		if op != opERROR || code != want {
			t.Errorf("%q: op %d code %d, want error %d", name, op, code, want)
		}
	}
	// A write request is refused with access violation.
	c := newRaw(t, ts.addr)
	c.conn.WriteToUDP([]byte("\x00\x02x\x00octet\x00"), c.srv)
	if op, code, _ := c.recv(); op != opERROR || code != ErrCodeAccess {
		t.Errorf("WRQ: op %d code %d", op, code)
	}
	ts.waitIdle(t)
	refused := 0
	for _, tr := range ts.transfers() {
		if tr.Outcome == OutcomeRefused {
			refused++
		}
	}
	if refused != 6 {
		t.Errorf("%d refused transfers reported, want 6: %+v", refused, ts.transfers())
	}
}

// TestProbesDoNotLeak plays the Pi's existence probes: ask with tsize, stop
// after the OACK (by error, by silence) or after the first block, re-request
// at once. No goroutine may outlive the transfers, none may count as failed.
func TestProbesDoNotLeak(t *testing.T) {
	files := testFiles(t)
	ts := startServer(t, &memResolver{files: files, serial: "3a7f91c2"}, Config{Timeout: 250 * time.Millisecond, Retries: 5})
	ts.waitIdle(t)
	before := runtime.NumGoroutine()
	for i := 0; i < 20; i++ {
		// 1: stop after the OACK with an error packet (what the Pi does).
		c := newRaw(t, ts.addr)
		c.rrq("3a7f91c2/start4.elf", "tsize", "0", "blksize", "1024")
		if op, _, payload := c.recv(); op != opOACK || !bytes.Contains(payload, []byte(fmt.Sprintf("tsize\x00%d\x00", len(files["start4.elf"])))) {
			t.Fatalf("want OACK with tsize, got op %d %q", op, payload)
		}
		c.conn.WriteToUDP([]byte("\x00\x05\x00\x00early terminate\x00"), c.peer)
		// 2: stop after the OACK by going silent and closing the socket.
		c2 := newRaw(t, ts.addr)
		c2.rrq("3a7f91c2/start4.elf", "tsize", "0")
		c2.recv()
		c2.conn.Close()
		// 3: stop after the first block.
		c3 := newRaw(t, ts.addr)
		c3.rrq("3a7f91c2/start4.elf")
		if op, block, _ := c3.recv(); op != opDATA || block != 1 {
			t.Fatalf("want block 1, got op %d block %d", op, block)
		}
		c3.conn.Close()
		// And the immediate re-request, fetched in full.
		var buf bytes.Buffer
		if _, err := Fetch(context.Background(), ts.addr, "3a7f91c2/start4.elf", FetchOptions{BlockSize: 1024, TSize: true, WindowSize: 8}, &buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), files["start4.elf"]) {
			t.Fatal("re-request content differs")
		}
	}
	ts.waitIdle(t)
	// Closed sockets and finished goroutines are not instant; wait for the
	// count to settle rather than for a fixed time.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines: %d before, %d after\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
	for _, tr := range ts.transfers() {
		if tr.Outcome != OutcomeProbe && tr.Outcome != OutcomeServed {
			t.Errorf("transfer %s ended %s: %v", tr.Filename, tr.Outcome, tr.Err)
		}
	}
}

// TestWindowLossRecovery drops a block inside a window and checks the
// server resends from the block after the client's ACK (RFC 7440 section 4).
func TestWindowLossRecovery(t *testing.T) {
	files := testFiles(t)
	ts := startServer(t, &memResolver{files: files, serial: "3a7f91c2"}, Config{})
	c := newRaw(t, ts.addr)
	c.rrq("3a7f91c2/overlays/vc4.dtbo", "blksize", "512", "windowsize", "4")
	if op, _, _ := c.recv(); op != opOACK {
		t.Fatal("no OACK")
	}
	c.send(opACK, 0)
	for want := uint16(1); want <= 4; want++ {
		if op, block, _ := c.recv(); op != opDATA || block != want {
			t.Fatalf("got op %d block %d, want block %d", op, block, want)
		}
	}
	// Pretend block 3 never arrived: acknowledge 2.
	c.send(opACK, 2)
	var got []uint16
	for i := 0; i < 4; i++ {
		_, block, _ := c.recv()
		got = append(got, block)
	}
	if fmt.Sprint(got) != "[3 4 5 6]" {
		t.Fatalf("after ACK 2 the server sent %v, want [3 4 5 6]", got)
	}
}
