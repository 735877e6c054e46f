package dhcp

import (
	"bytes"
	"context"
	"encoding/hex"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// pi4ClientID is option 97 of a real Pi 4 (MAC e4:5f:01:09:02:f7, serial
// 91cdf03d, revision d03114) as dnsmasq logged it; this bootloader writes the
// model code byte-swapped ("4iPR").
const pi4ClientIDHex = "00346950521431d000010902f73df0cd91"

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParsePiClientID(t *testing.T) {
	id, err := ParsePiClientID(mustHex(t, pi4ClientIDHex))
	if err != nil {
		t.Fatal(err)
	}
	if id.Model != "RPi4" || id.Serial != "91cdf03d" || id.BoardRev != 0xd03114 || id.MACLow != [4]byte{0x01, 0x09, 0x02, 0xf7} {
		t.Fatalf("parsed %+v", id)
	}
	// Other bootloaders write "RPi4" in reading order; Bytes does too.
	b, err := PiClientID{Model: "RPi5", BoardRev: 0xc04170, Serial: "3a7f91c2"}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("\x00RPi5")) {
		t.Fatalf("encoded %x", b)
	}
	back, err := ParsePiClientID(b)
	if err != nil || back.Serial != "3a7f91c2" || back.Model != "RPi5" || back.BoardRev != 0xc04170 {
		t.Fatalf("round trip %+v %v", back, err)
	}
	for _, bad := range [][]byte{nil, {0}, mustHex(t, pi4ClientIDHex)[:16], append(mustHex(t, pi4ClientIDHex), 0),
		append([]byte{1}, mustHex(t, pi4ClientIDHex)[1:]...), append([]byte{0}, bytes.Repeat([]byte{0x44}, 16)...)} {
		if _, err := ParsePiClientID(bad); err == nil {
			t.Errorf("ParsePiClientID(%x) accepted", bad)
		}
	}
	if !IsPi3ClientID(append([]byte{0}, bytes.Repeat([]byte{0x44}, 16)...)) {
		t.Error("Pi 3 UUID not recognised")
	}
}

func TestPiVendorOptionsLayout(t *testing.T) {
	b := PiVendorOptions()
	// 9 (menu), 10 (prompt), 6 (discovery control), 0xff in this order.
	want := append([]byte{9, 23, 0, 0, 20}, "Raspberry Pi Boot   "...)
	want = append(want, 10, 4, 0, 'P', 'X', 'E', 6, 1, 3, 0xff)
	if !bytes.Equal(b, want) {
		t.Fatalf("option 43 = % x\nwant        % x", b, want)
	}
	subs, err := ParseVendorOptions(b)
	if err != nil {
		t.Fatal(err)
	}
	menu, err := ParseBootMenu(subs[SubBootMenu])
	if err != nil || len(menu) != 1 || menu[0].Type != 0 || menu[0].Text != "Raspberry Pi Boot   " {
		t.Fatalf("menu %+v %v", menu, err)
	}
	if string(subs[SubMenuPrompt][1:]) != "PXE" {
		t.Fatalf("prompt %q", subs[SubMenuPrompt])
	}
	for _, bad := range [][]byte{{9}, {9, 5, 1}, {6, 1, 3}, {6, 1, 3, 6, 1, 3, 0xff}} {
		if _, err := ParseVendorOptions(bad); err == nil {
			t.Errorf("ParseVendorOptions(% x) accepted", bad)
		}
	}
}

func discover(t testing.TB, mac string, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dhcpv4.NewDiscovery(hw, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func piMods(t testing.TB) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(PiVendorClass)),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(0))),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, mustHex(t, pi4ClientIDHex)),
	}
}

func TestClassify(t *testing.T) {
	pi := Classify(discover(t, "e4:5f:01:09:02:f7", piMods(t)...))
	if pi.Kind != KindPi || pi.Serial != "91cdf03d" || pi.DetectedBy != "option97" || pi.Model != "RPi4" {
		t.Fatalf("Pi 4: %+v", pi)
	}
	// The Pi 4 REQUEST may lack option 60: option 97 still identifies it.
	req := discover(t, "e4:5f:01:09:02:f7", dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, mustHex(t, pi4ClientIDHex)))
	if c := Classify(req); c.Kind != KindPi || c.Serial != "91cdf03d" {
		t.Fatalf("Pi 4 REQUEST without option 60: %+v", c)
	}
	// A Pi with an OUI only (no option 97) is still a Pi, never an x86 BIOS.
	oui := Classify(discover(t, "2c:cf:67:00:00:01", dhcpv4.WithOption(dhcpv4.OptClassIdentifier(PiVendorClass)),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(0)))))
	if oui.Kind != KindPi || oui.DetectedBy != "oui" {
		t.Fatalf("Pi 5 by OUI: %+v", oui)
	}
	pi3 := Classify(discover(t, "b8:27:eb:00:00:01", dhcpv4.WithOption(dhcpv4.OptClassIdentifier(PiVendorClass)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, bytes.Repeat([]byte{0x44}, 16)...))))
	if pi3.Kind != KindPi || pi3.Model != "RPi3" {
		t.Fatalf("Pi 3: %+v", pi3)
	}
	// Same vendor class and arch 0 from a non-Pi MAC: an x86 BIOS.
	bios := Classify(discover(t, "52:54:00:00:00:01", dhcpv4.WithOption(dhcpv4.OptClassIdentifier(PiVendorClass)),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(0)))))
	if bios.Kind != KindPXE || bios.Arch != 0 || IPXEBootFile(bios.Arch) != "undionly.kpxe" {
		t.Fatalf("BIOS: %+v", bios)
	}
	uefi := Classify(discover(t, "52:54:00:00:00:02", dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(7)))))
	if uefi.Kind != KindPXE || IPXEBootFile(uefi.Arch) != "ipxe.efi" {
		t.Fatalf("UEFI: %+v", uefi)
	}
	arm := Classify(discover(t, "52:54:00:00:00:03", dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00011:UNDI:003000"))))
	if arm.Kind != KindPXE || arm.Arch != 11 || IPXEBootFile(arm.Arch) != "ipxe-arm64.efi" {
		t.Fatalf("arm64 from vendor class: %+v", arm)
	}
	ipxe := Classify(discover(t, "52:54:00:00:00:04", dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003010")),
		dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE"))))
	if ipxe.Kind != KindIPXE {
		t.Fatalf("iPXE: %+v", ipxe)
	}
	linux := Classify(discover(t, "dc:a6:32:00:00:05", dhcpv4.WithOption(dhcpv4.OptClassIdentifier("udhcp 1.36.1"))))
	if linux.Kind != KindOther {
		t.Fatalf("an OS on a Pi asking for a lease: %+v", linux)
	}
}

type recordingPolicy struct {
	mu      sync.Mutex
	seen    []Client
	decide  func(Client) Decision
	sentErr []error
}

func (p *recordingPolicy) Decide(_ context.Context, c Client) Decision {
	p.mu.Lock()
	p.seen = append(p.seen, c)
	p.mu.Unlock()
	return p.decide(c)
}

// TestServerAnswersPi runs the server on loopback sockets and checks the
// reply a Pi gets, byte for byte where pi-netboot.md is specific.
func TestServerAnswersPi(t *testing.T) {
	srvConn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	sent := make(chan error, 4)
	pol := &recordingPolicy{decide: func(c Client) Decision {
		if c.Serial == "91cdf03d" {
			return Decision{Answer: true, MachineID: c.Serial}
		}
		return Decision{Reason: "unknown"}
	}}
	srv, err := New(Config{Conn: srvConn, ServerIP: net.IPv4(10, 9, 8, 7), ReplyTo: cli.LocalAddr().(*net.UDPAddr),
		Policy: pol, ReplyDelay: time.Millisecond, OnSent: func(_ Client, _ Decision, err error) { sent <- err }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// An unknown Pi first: no answer (OnSent is not called).
	unknown := discover(t, "dc:a6:32:00:00:09", dhcpv4.WithOption(dhcpv4.OptClassIdentifier(PiVendorClass)))
	if _, err := cli.WriteTo(unknown.ToBytes(), srvConn.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	req := discover(t, "e4:5f:01:09:02:f7", piMods(t)...)
	if _, err := cli.WriteTo(req.ToBytes(), srvConn.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	cli.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, _, err := cli.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	reply, err := dhcpv4.FromBytes(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	checkPiReply(t, reply, req, net.IPv4(10, 9, 8, 7))
	pol.mu.Lock()
	defer pol.mu.Unlock()
	if len(pol.seen) != 2 {
		t.Fatalf("policy saw %d requests, want 2", len(pol.seen))
	}
}

func checkPiReply(t *testing.T, reply, req *dhcpv4.DHCPv4, server net.IP) {
	t.Helper()
	if reply.MessageType() != dhcpv4.MessageTypeOffer || reply.TransactionID != req.TransactionID {
		t.Fatalf("reply %s", reply.Summary())
	}
	if !reply.YourIPAddr.Equal(net.IPv4zero) {
		t.Errorf("proxy reply hands out address %v", reply.YourIPAddr)
	}
	if !reply.ServerIPAddr.Equal(server) || !reply.ServerIdentifier().Equal(server) || reply.TFTPServerName() != server.String() {
		t.Errorf("server address: siaddr %v, option 54 %v, option 66 %q", reply.ServerIPAddr, reply.ServerIdentifier(), reply.TFTPServerName())
	}
	if reply.ClassIdentifier() != "PXEClient" {
		t.Errorf("option 60 = %q", reply.ClassIdentifier())
	}
	if !bytes.Equal(reply.Options.Get(dhcpv4.OptionVendorSpecificInformation), PiVendorOptions()) {
		t.Errorf("option 43 = % x", reply.Options.Get(dhcpv4.OptionVendorSpecificInformation))
	}
	if !reply.IsBroadcast() {
		t.Error("reply not flagged broadcast")
	}
}

func TestBuildReplyPXE(t *testing.T) {
	req := discover(t, "52:54:00:00:00:02", dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(7))))
	c := Classify(req)
	reply, err := BuildReply(req, c, Answer{ServerIP: net.IPv4(10, 0, 0, 1), BootFile: "ipxe.efi"})
	if err != nil {
		t.Fatal(err)
	}
	if reply.BootFileName != "ipxe.efi" || reply.BootFileNameOption() != "ipxe.efi" {
		t.Fatalf("boot file %q / %q", reply.BootFileName, reply.BootFileNameOption())
	}
	if _, err := BuildReply(req, c, Answer{ServerIP: net.IPv4(10, 0, 0, 1)}); err == nil {
		t.Fatal("PXE reply without boot file built")
	}
	url := "http://10.0.0.1:8080/boot/ipxe?mac=52:54:00:00:00:02&padding=" + string(bytes.Repeat([]byte("x"), 120))
	reply, err = BuildReply(req, c, Answer{ServerIP: net.IPv4(10, 0, 0, 1), BootFile: url})
	if err != nil || reply.BootFileNameOption() != url || reply.BootFileName != "" {
		t.Fatalf("long URL: %q %q %v", reply.BootFileName, reply.BootFileNameOption(), err)
	}
	inform := discover(t, "52:54:00:00:00:02", dhcpv4.WithMessageType(dhcpv4.MessageTypeInform))
	if _, err := BuildReply(inform, Classify(inform), Answer{ServerIP: net.IPv4(10, 0, 0, 1), BootFile: "x"}); err == nil {
		t.Fatal("answered an INFORM")
	}
}
