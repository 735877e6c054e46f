package nfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/netboot/overlay"
	"github.com/bakeryhq/bakery/internal/netboot/overlay/overlaytest"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"
)

const (
	imageKey = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	machA    = "3a7f91c2"
	machB    = "dc:a6:32:01:02:03"
)

type event struct{ machine, typ, msg string }

// testBackend is the control plane as the NFS server sees it.
type testBackend struct {
	mu     sync.Mutex
	mgr    *overlay.Manager
	ips    map[netip.Addr]string
	disks  map[string][]string
	events []event
}

func (b *testBackend) MachineFor(ip netip.Addr) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m, ok := b.ips[ip]
	return m, ok
}

func (b *testBackend) setIP(ip string, machine string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if machine == "" {
		delete(b.ips, netip.MustParseAddr(ip))
		return
	}
	b.ips[netip.MustParseAddr(ip)] = machine
}

func (b *testBackend) Root(machine string) (*overlay.Root, error) { return b.mgr.Root(machine) }

func (b *testBackend) DiskPath(machine, disk string) (string, error) {
	p := b.mgr.DiskPath(machine, disk)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("disk %s: %w", disk, fs.ErrNotExist)
	}
	return p, nil
}

func (b *testBackend) Disks(machine string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.disks[machine]
}

func (b *testBackend) Event(machine, typ, msg string, _ map[string]string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, event{machine, typ, msg})
}

func (b *testBackend) eventsOf(typ string) []event {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []event
	for _, e := range b.events {
		if e.typ == typ {
			out = append(out, e)
		}
	}
	return out
}

type harness struct {
	t       *testing.T
	img     string
	dataDir string
	be      *testBackend
	srv     *Server
	addr    string // host:port the server listens on
	listen  func() net.Listener
	stop    func()
}

// newHarness builds the test image, provisions machines A and B over it
// and serves them; 127.0.0.1 is machine A's address.
func newHarness(t *testing.T, listen func() net.Listener) *harness {
	t.Helper()
	h := &harness{t: t, img: overlaytest.Image(t, 0), dataDir: t.TempDir(), listen: listen}
	if h.listen == nil {
		h.listen = func() net.Listener {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			return ln
		}
	}
	h.be = &testBackend{ips: map[netip.Addr]string{netip.MustParseAddr("127.0.0.1"): machA}, disks: map[string][]string{}}
	h.openManager()
	for _, m := range []string{machA, machB} {
		if _, _, err := h.be.mgr.Provision(m, imageKey, overlay.Adjustments{Hostname: "host-" + m[:4]}); err != nil {
			t.Fatal(err)
		}
	}
	h.start(h.listen())
	t.Cleanup(func() {
		h.stop()
		h.be.mgr.Close()
	})
	return h
}

func (h *harness) openManager() {
	m, err := overlay.NewManager(h.dataDir, overlay.NewBases(nil), func(string) string { return h.img }, overlay.Options{})
	if err != nil {
		h.t.Fatal(err)
	}
	h.be.mgr = m
}

func (h *harness) start(ln net.Listener) {
	srv, err := New(Config{Listener: ln, Backend: h.be, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RecheckEvery: time.Millisecond})
	if err != nil {
		h.t.Fatal(err)
	}
	h.srv, h.addr = srv, ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	h.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("Serve: %v", err)
		}
	})
}

// restart stops the server and the layers and starts fresh ones (new
// manager, new bases: nothing cached) on the same address, as a restarted
// bakery serve would.
func (h *harness) restart() {
	h.stop()
	h.be.mgr.Close()
	h.openManager()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", h.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		h.t.Fatal(err)
	}
	h.start(ln)
}

func (h *harness) hostPort() (string, int) {
	host, port, _ := net.SplitHostPort(h.addr)
	var p int
	fmt.Sscan(port, &p)
	return host, p
}

// dial connects a go-nfs-client RPC client (MOUNT and NFS on one port).
func (h *harness) dial() *rpc.Client {
	h.t.Helper()
	host, port := h.hostPort()
	c, err := nfsc.DialServiceAtPort(host, port)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(c.Close)
	return c
}

func rootAuth() rpc.Auth { return rpc.AuthUnix{Machinename: "node", Uid: 0, Gid: 0}.Auth() }

// userAuth is AUTH_SYS for uid/gid with no extra groups (go-nfs-client's
// NewAuthUnix claims group 0).
func userAuth(uid, gid uint32) rpc.Auth {
	return rpc.AuthUnix{Machinename: "node", Uid: uid, Gid: gid}.Auth()
}

func (h *harness) mount(c *rpc.Client, machine string, auth rpc.Auth) (*nfsc.Target, error) {
	m := &nfsc.Mount{Client: c}
	return m.Mount(ExportPath(machine), auth)
}

func (h *harness) mustMount(machine string, auth rpc.Auth) *nfsc.Target {
	h.t.Helper()
	tgt, err := h.mount(h.dial(), machine, auth)
	if err != nil {
		h.t.Fatalf("mount %s: %v", machine, err)
	}
	return tgt
}

func readFile(t *testing.T, tgt *nfsc.Target, p string) string {
	t.Helper()
	f, err := tgt.Open(p)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read %s: %v", p, err)
	}
	return string(b)
}

func writeFile(t *testing.T, tgt *nfsc.Target, p, content string) {
	t.Helper()
	f, err := tgt.OpenFile(p, 0o644)
	if err != nil {
		t.Fatalf("open %s for writing: %v", p, err)
	}
	if _, err := f.Write([]byte(content)); err != nil {
		t.Fatalf("write %s: %v", p, err)
	}
}

// Raw NFS calls for what go-nfs-client has no method for.

func hdr(proc uint32, auth rpc.Auth) rpc.Header {
	return rpc.Header{Rpcvers: 2, Prog: nfsc.Nfs3Prog, Vers: nfsc.Nfs3Vers, Proc: proc, Cred: auth, Verf: rpc.AuthNull}
}

// call sends a call and returns the NFS status and the rest of the reply.
func call(t *testing.T, c *rpc.Client, args any) (uint32, io.ReadSeeker) {
	t.Helper()
	res, err := c.Call(args)
	if err != nil {
		t.Fatalf("rpc: %v", err)
	}
	status, err := xdr.ReadUint32(res)
	if err != nil {
		t.Fatal(err)
	}
	return status, res
}

type getattrArgs struct {
	rpc.Header
	FH []byte
}

func getattr(t *testing.T, c *rpc.Client, auth rpc.Auth, fh []byte) (uint32, nfsc.Fattr) {
	t.Helper()
	st, res := call(t, c, &getattrArgs{hdr(1, auth), fh})
	var a nfsc.Fattr
	if st == 0 {
		if err := xdr.Read(res, &a); err != nil {
			t.Fatal(err)
		}
	}
	return st, a
}

type readArgs struct {
	rpc.Header
	FH     []byte
	Offset uint64
	Count  uint32
}

func readFH(t *testing.T, c *rpc.Client, auth rpc.Auth, fh []byte, n uint32) (uint32, string) {
	t.Helper()
	st, res := call(t, c, &readArgs{hdr(6, auth), fh, 0, n})
	if st != 0 {
		return st, ""
	}
	var r struct {
		Attr  nfsc.PostOpAttr
		Count uint32
		EOF   uint32
	}
	if err := xdr.Read(res, &r); err != nil {
		t.Fatal(err)
	}
	data, err := xdr.ReadOpaque(res)
	if err != nil {
		t.Fatal(err)
	}
	return st, string(data)
}

func lookupFH(t *testing.T, tgt *nfsc.Target, p string) []byte {
	t.Helper()
	_, fh, err := tgt.Lookup(p)
	if err != nil {
		t.Fatalf("lookup %s: %v", p, err)
	}
	return fh
}

func isNFSErr(err error, code uint32) bool {
	switch code {
	case nfsc.NFS3ErrPerm:
		return errors.Is(err, os.ErrPermission)
	case nfsc.NFS3ErrExist:
		return errors.Is(err, os.ErrExist)
	case nfsc.NFS3ErrNoEnt:
		return errors.Is(err, os.ErrNotExist)
	}
	var e *nfsc.Error
	if errors.As(err, &e) {
		return e.ErrorNum == code
	}
	return err != nil && strings.Contains(err.Error(), fmt.Sprint(code))
}
