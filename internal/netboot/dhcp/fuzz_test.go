package dhcp

import (
	"bytes"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

func FuzzParsePiClientID(f *testing.F) {
	f.Add(mustHex(f, pi4ClientIDHex))
	f.Add(append([]byte("\x00RPi5"), make([]byte, 12)...))
	f.Add(append([]byte{0}, bytes.Repeat([]byte{0x44}, 16)...))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := ParsePiClientID(b)
		if err != nil {
			return
		}
		if len(id.Serial) != 8 {
			t.Fatalf("serial %q", id.Serial)
		}
		enc, err := id.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParsePiClientID(enc)
		if err != nil || back != id {
			t.Fatalf("round trip %+v -> %+v (%v)", id, back, err)
		}
	})
}

func FuzzParseVendorOptions(f *testing.F) {
	f.Add(PiVendorOptions())
	f.Add(ChainloadVendorOptions())
	f.Add([]byte{0, 0, 9, 0, 0xff})
	f.Add([]byte{9, 3, 0, 0, 200, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		subs, err := ParseVendorOptions(b)
		if err != nil {
			return
		}
		if menu, ok := subs[SubBootMenu]; ok {
			ParseBootMenu(menu)
		}
	})
}

// FuzzClassify feeds whole DHCP packets through the library's parser, our
// classification and, for clients we would answer, the reply builder: the
// reply must always carry option 43 that our own parser accepts.
func FuzzClassify(f *testing.F) {
	hw, _ := net.ParseMAC("e4:5f:01:09:02:f7")
	for _, mods := range [][]dhcpv4.Modifier{
		{dhcpv4.WithOption(dhcpv4.OptClassIdentifier(PiVendorClass)), dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, mustHex(f, pi4ClientIDHex))},
		{dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")), dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(7)))},
		{dhcpv4.WithOption(dhcpv4.OptUserClass("iPXE"))},
		{dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest)},
	} {
		m, err := dhcpv4.NewDiscovery(hw, mods...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(m.ToBytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		c := Classify(m)
		if c.Kind == KindOther {
			return
		}
		reply, err := BuildReply(m, c, Answer{ServerIP: net.IPv4(10, 0, 0, 1), BootFile: "ipxe.efi"})
		if err != nil {
			return
		}
		back, err := dhcpv4.FromBytes(reply.ToBytes())
		if err != nil {
			t.Fatalf("our reply does not parse: %v", err)
		}
		if _, err := ParseVendorOptions(back.Options.Get(dhcpv4.OptionVendorSpecificInformation)); err != nil {
			t.Fatalf("our option 43 does not parse: %v", err)
		}
	})
}
