package server

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/netboot/dhcp"
	"github.com/bakeryhq/bakery/internal/netboot/nfs"
	"github.com/bakeryhq/bakery/internal/netboot/overlay/overlaytest"
	"github.com/bakeryhq/bakery/internal/store"
	"github.com/insomniacslk/dhcp/dhcpv4"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
)

// tryMount mounts a machine's root from 127.0.0.1 and returns the
// client's error: nil means the export answered.
func tryMount(t *testing.T, addr net.Addr, machine string) error {
	t.Helper()
	a := addr.(*net.TCPAddr)
	c, err := nfsc.DialServiceAtPort(a.IP.String(), a.Port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = (&nfsc.Mount{Client: c}).Mount(nfs.ExportPath(machine), rpc.AuthUnix{Machinename: "pi"}.Auth())
	return err
}

// piRequest is a Raspberry Pi firmware's DHCPREQUEST (or DISCOVER) for
// address ip.
func piRequest(serial, mac, ip string, typ dhcpv4.MessageType) dhcp.Client {
	return dhcp.Client{Kind: dhcp.KindPi, MAC: mac, Serial: serial, IP: netip.MustParseAddr(ip), MessageType: typ}
}

// TestNFSIsolationIgnoresTFTPSightings is the auditor's bypass: a TFTP
// request for "<serial>/cmdline.txt" (serials are broadcast in DHCP option
// 97) must not make the requester's address the machine's own, with or
// without an ip in the record, before and after a restart.
func TestNFSIsolationIgnoresTFTPSightings(t *testing.T) {
	img := overlaytest.Image(t, 0)
	dataDir := t.TempDir()
	ts := startTest(t, engineOpts(dataDir, nil, nil))
	im := ts.uploadFile("raspios", img)
	ts.putJSON("/api/v1/machines/cafe0001", ts.admin, MachineSpec{Image: im.ID, IP: "10.99.99.99"}, nil)
	ts.putJSON("/api/v1/machines/cafe0002", ts.admin, MachineSpec{Image: im.ID}, nil)
	for _, id := range []string{"cafe0001", "cafe0002"} {
		if err := tryMount(t, ts.NFSAddr(), id); err == nil {
			t.Fatalf("%s: mounted from an address that is not its own", id)
		}
		if _, err := tftpGet(t, ts.TFTPAddr().String(), id+"/cmdline.txt"); err != nil {
			t.Fatalf("%s/cmdline.txt: %v", id, err)
		}
		if err := tryMount(t, ts.NFSAddr(), id); err == nil {
			t.Fatalf("%s: a TFTP request made 127.0.0.1 its address", id)
		}
		if ev, ok := ts.lastEvent(id, "nfs.refused"); !ok || !strings.Contains(ev.Message, "127.0.0.1") {
			t.Errorf("%s: no nfs.refused event naming the client: %+v", id, ev)
		}
		// The sighting is still shown, and grants nothing.
		m, _ := ts.store.Machine(id)
		if len(m.SeenIPs) == 0 || m.SeenIPs[0] != "127.0.0.1" || m.DHCPIP != "" {
			t.Fatalf("%s: seen_ips %v dhcp_ip %q", id, m.SeenIPs, m.DHCPIP)
		}
	}
	ts.stop()

	ts = startTest(t, engineOpts(dataDir, nil, nil))
	for _, id := range []string{"cafe0001", "cafe0002"} {
		if err := tryMount(t, ts.NFSAddr(), id); err == nil {
			t.Fatalf("%s: after a restart, the stored TFTP sighting grants the mount", id)
		}
	}
}

// TestNFSIsolationTrustsDHCPOnlyWithoutFixedIP: an address from a
// DHCPREQUEST the server answered is the machine's only when its record
// sets no ip; with one set, only that address mounts. A DISCOVER's address
// grants nothing, an address moves with its lease, and a learned address
// survives a restart.
func TestNFSIsolationTrustsDHCPOnlyWithoutFixedIP(t *testing.T) {
	img := overlaytest.Image(t, 0)
	dataDir := t.TempDir()
	ts := startTest(t, engineOpts(dataDir, nil, nil))
	im := ts.uploadFile("raspios", img)
	const mac1, mac2 = "dc:a6:32:00:00:01", "dc:a6:32:00:00:02"
	ts.putJSON("/api/v1/machines/cafe0001", ts.admin, MachineSpec{Image: im.ID, MAC: mac1, IP: "10.99.99.99"}, nil)
	ctx := context.Background()

	// Fixed ip: DHCP and TFTP from 127.0.0.1 never authorise it.
	for _, typ := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest} {
		if d := ts.Decide(ctx, piRequest("cafe0001", mac1, "127.0.0.1", typ)); !d.Answer {
			t.Fatalf("%s not answered: %+v", typ, d)
		}
	}
	ts.Decide(ctx, dhcp.Client{Kind: dhcp.KindOther, MAC: mac1, IP: netip.MustParseAddr("127.0.0.1"), MessageType: dhcpv4.MessageTypeRequest})
	if _, err := tftpGet(t, ts.TFTPAddr().String(), "cafe0001/cmdline.txt"); err != nil {
		t.Fatal(err)
	}
	if err := tryMount(t, ts.NFSAddr(), "cafe0001"); err == nil {
		t.Fatal("DHCP and TFTP from another address authorise a machine with a fixed ip")
	}
	if id, ok := ts.nfsMachineFor(netip.MustParseAddr("127.0.0.1")); ok {
		t.Fatalf("127.0.0.1 belongs to %s", id)
	}

	// No fixed ip: a DISCOVER's address is only a wish.
	ts.putJSON("/api/v1/machines/cafe0002", ts.admin, MachineSpec{Image: im.ID, MAC: mac2}, nil)
	if d := ts.Decide(ctx, piRequest("cafe0002", mac2, "127.0.0.2", dhcpv4.MessageTypeDiscover)); !d.Answer {
		t.Fatalf("DISCOVER not answered: %+v", d)
	}
	if id, ok := ts.nfsMachineFor(netip.MustParseAddr("127.0.0.2")); ok {
		t.Fatalf("a DISCOVER's address belongs to %s", id)
	}
	// An answered REQUEST makes the address the machine's.
	if d := ts.Decide(ctx, piRequest("cafe0002", mac2, "127.0.0.1", dhcpv4.MessageTypeRequest)); !d.Answer {
		t.Fatalf("REQUEST not answered: %+v", d)
	}
	_, root := mountRoot(t, ts.NFSAddr(), "cafe0002")
	if tok := nfsRead(t, root, "/etc/bakery/node-token"); tok == "" {
		t.Fatal("empty node token")
	}
	if err := tryMount(t, ts.NFSAddr(), "cafe0001"); err == nil {
		t.Fatal("another machine's DHCP address mounts cafe0001")
	}
	ts.stop()

	// The learned address survives a restart; then the lease moves to
	// cafe0001 once its fixed ip is gone, and cafe0002 loses it.
	ts = startTest(t, engineOpts(dataDir, nil, nil))
	if err := tryMount(t, ts.NFSAddr(), "cafe0002"); err != nil {
		t.Fatalf("DHCP-learned address after a restart: %v", err)
	}
	ts.putJSON("/api/v1/machines/cafe0001", ts.admin, MachineSpec{Image: im.ID, MAC: mac1}, nil)
	if d := ts.Decide(ctx, piRequest("cafe0001", mac1, "127.0.0.1", dhcpv4.MessageTypeRequest)); !d.Answer {
		t.Fatalf("REQUEST not answered: %+v", d)
	}
	if err := tryMount(t, ts.NFSAddr(), "cafe0002"); err == nil {
		t.Fatal("cafe0002 kept an address whose lease moved to cafe0001")
	}
	if err := tryMount(t, ts.NFSAddr(), "cafe0001"); err != nil {
		t.Fatalf("cafe0001 from its DHCP address: %v", err)
	}
	var m store.Machine
	ts.do("GET", "/api/v1/machines/cafe0002", ts.admin, nil, &m)
	if m.DHCPIP != "" {
		t.Fatalf("cafe0002 dhcp_ip %q", m.DHCPIP)
	}
	// Setting an ip again: only that address.
	ts.putJSON("/api/v1/machines/cafe0001", ts.admin, MachineSpec{Image: im.ID, MAC: mac1, IP: "10.99.99.99"}, nil)
	if err := tryMount(t, ts.NFSAddr(), "cafe0001"); err == nil {
		t.Fatal("a DHCP address still mounts after a fixed ip was set")
	}
}

// TestCredentialRefusesSightings: the node credential goes only to a
// machine's trusted address, never to one seen in TFTP or iPXE requests
// (or in the ARP table).
func TestCredentialRefusesSightings(t *testing.T) {
	iss := &fakeIssuer{}
	const mac = "dc:a6:32:00:00:01"
	ts := startTest(t, options{
		neighbor: func(ip netip.Addr) (string, bool) { return mac, ip.String() == "127.0.0.1" },
		mutate:   func(c *Config) { c.Credentials = iss },
	})
	pi := []byte("pi image")
	ts.images.add(t, pi, piTree("console=tty1\n"))
	img, _ := ts.upload("raspios", pi)
	ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Image: img.ID, MAC: mac}, nil)
	if _, err := tftpGet(t, ts.TFTPAddr().String(), "3a7f91c2/cmdline.txt"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(ts.url + "/boot/ipxe?id=3a7f91c2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ctx := context.Background()
	ts.Decide(ctx, piRequest("3a7f91c2", mac, "127.0.0.1", dhcpv4.MessageTypeDiscover))
	if m, _ := ts.store.Machine("3a7f91c2"); len(m.SeenIPs) == 0 || m.SeenIPs[0] != "127.0.0.1" {
		t.Fatalf("sightings not recorded: %v", m.SeenIPs)
	}
	if code, _, _ := postCredential(t, ts); code != http.StatusForbidden {
		t.Fatalf("address seen only in TFTP, iPXE and a DISCOVER: %d", code)
	}
	// The firmware's answered DHCPREQUEST makes it the machine's address.
	if d := ts.Decide(ctx, piRequest("3a7f91c2", mac, "127.0.0.1", dhcpv4.MessageTypeRequest)); !d.Answer {
		t.Fatalf("REQUEST not answered: %+v", d)
	}
	if code, _, _ := postCredential(t, ts); code != http.StatusOK {
		t.Fatalf("address from an answered DHCPREQUEST: %d", code)
	}
	// A fixed ip elsewhere: the DHCP address no longer counts.
	ts.putJSON("/api/v1/machines/3a7f91c2", ts.admin, MachineSpec{Image: img.ID, MAC: mac, IP: "10.99.99.99"}, nil)
	if code, _, _ := postCredential(t, ts); code != http.StatusForbidden {
		t.Fatalf("DHCP address beside a fixed ip: %d", code)
	}
	if len(iss.calls) != 1 || iss.calls[0] != "3a7f91c2@127.0.0.1" {
		t.Fatalf("issuer calls %v", iss.calls)
	}
}
