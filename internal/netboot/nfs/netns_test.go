package nfs

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/testimage"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"golang.org/x/sys/unix"
)

// inNetns runs fn on an OS thread that has joined network namespace ns.
// Sockets fn opens live in ns for good. The thread is never handed back
// to the runtime (it ends with its goroutine), so no other goroutine runs
// in ns by accident.
func inNetns(t *testing.T, ns string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Errorf("open netns %s: %v", ns, err)
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			t.Errorf("setns %s: %v", ns, err)
			return
		}
		fn()
	}()
	<-done
	if t.Failed() {
		t.FailNow()
	}
}

func ipRun(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// lab is three network namespaces: the server's and two clients', each
// client on its own veth pair, so the server sees two source addresses.
type lab struct {
	srv, a, b        string // namespace names
	srvIPA, srvIPB   string // server addresses towards a and b
	clientA, clientB string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	testimage.Need(t, "ip")
	n := os.Getpid() % 250
	l := &lab{
		srv: fmt.Sprintf("bnfs%d", os.Getpid()), a: fmt.Sprintf("bnfa%d", os.Getpid()), b: fmt.Sprintf("bnfb%d", os.Getpid()),
		srvIPA: fmt.Sprintf("10.98.%d.1", n), clientA: fmt.Sprintf("10.98.%d.2", n),
		srvIPB: fmt.Sprintf("10.98.%d.5", n), clientB: fmt.Sprintf("10.98.%d.6", n),
	}
	for _, ns := range []string{l.srv, l.a, l.b} {
		ipRun(t, "netns", "add", ns)
		ns := ns
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	}
	pair := func(tag, client, srvIP, cliIP string) {
		s, c := fmt.Sprintf("vs%s%d", tag, n), fmt.Sprintf("vc%s%d", tag, n)
		ipRun(t, "link", "add", s, "type", "veth", "peer", "name", c)
		ipRun(t, "link", "set", s, "netns", l.srv)
		ipRun(t, "link", "set", c, "netns", client)
		ipRun(t, "-n", l.srv, "addr", "add", srvIP+"/30", "dev", s)
		ipRun(t, "-n", client, "addr", "add", cliIP+"/30", "dev", c)
		ipRun(t, "-n", l.srv, "link", "set", s, "up")
		ipRun(t, "-n", client, "link", "set", c, "up")
	}
	pair("a", l.a, l.srvIPA, l.clientA)
	pair("b", l.b, l.srvIPB, l.clientB)
	return l
}

// dialFrom connects go-nfs-client from namespace ns to the server.
func dialFrom(t *testing.T, ns, host string, port int) *rpc.Client {
	t.Helper()
	var c *rpc.Client
	inNetns(t, ns, func() {
		var err error
		if c, err = nfsc.DialServiceAtPort(host, port); err != nil {
			t.Errorf("dial from %s: %v", ns, err)
		}
	})
	t.Cleanup(c.Close)
	return c
}

// TestIsolationByAddress: a machine's export answers only the machine's
// address; another client is refused at mount, cannot use a handle it
// learned, and every refusal is an event. A connection whose address stops
// belonging to the machine loses access at its next call.
func TestIsolationByAddress(t *testing.T) {
	l := newLab(t)
	var ln net.Listener
	inNetns(t, l.srv, func() {
		var err error
		if ln, err = net.Listen("tcp", ":0"); err != nil {
			t.Error(err)
		}
	})
	h := newHarness(t, func() net.Listener { return ln })
	h.be.setIP("127.0.0.1", "")
	h.be.setIP(l.clientA, machA)
	h.be.setIP(l.clientB, machB)
	_, port := h.hostPort()

	ca := dialFrom(t, l.a, l.srvIPA, port)
	ta, err := h.mount(ca, machA, rootAuth())
	if err != nil {
		t.Fatalf("A mounts its root: %v", err)
	}
	secret := lookupFH(t, ta, "/etc/hostname")
	if st, got := readFH(t, ca, rootAuth(), secret, 100); st != 0 || got != "host-3a7f\n" {
		t.Fatalf("A reads its hostname: %d %q", st, got)
	}

	cb := dialFrom(t, l.b, l.srvIPB, port)
	if _, err := h.mount(cb, machA, rootAuth()); err == nil || !strings.Contains(err.Error(), "MNT3ERR_ACCES") {
		t.Fatalf("B mounts A's root: %v", err)
	}
	if _, err := h.mount(cb, machB, rootAuth()); err != nil {
		t.Fatalf("B mounts its own root: %v", err)
	}
	// A handle B learned from A does not resolve on B's connection.
	if st, got := readFH(t, cb, rootAuth(), secret, 100); st != nfsc.NFS3ErrStale {
		t.Fatalf("B reads with A's handle: status %d %q", st, got)
	}
	if st, _ := getattr(t, cb, rootAuth(), secret); st != nfsc.NFS3ErrStale {
		t.Fatalf("B getattr with A's handle: %d", st)
	}
	refused := h.be.eventsOf("nfs.refused")
	if len(refused) == 0 || refused[0].machine != machA || !strings.Contains(refused[0].msg, l.clientB) {
		t.Fatalf("refusal events: %+v", refused)
	}

	// An address no machine has gets nothing.
	h.be.setIP(l.clientB, "")
	cb2 := dialFrom(t, l.b, l.srvIPB, port)
	if _, err := h.mount(cb2, machB, rootAuth()); err == nil {
		t.Fatal("unknown address mounted a root")
	}
	// A's address is taken away: its open connection is cut off.
	h.be.setIP(l.clientA, "")
	if st, _ := readFH(t, ca, rootAuth(), secret, 100); st != nfsc.NFS3ErrStale {
		t.Fatalf("revoked connection still reads: %d", st)
	}
	if n := len(h.be.eventsOf("nfs.refused")); n < 3 {
		t.Fatalf("%d refusal events", n)
	}
}
