package dhcp

import (
	"errors"
	"fmt"
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// PXE vendor sub-options (option 43) we send or read.
const (
	SubDiscoveryControl = 6
	SubBootMenu         = 9
	SubMenuPrompt       = 10
	SubEnd              = 0xff
	SubPad              = 0
)

// PiMenuText is the boot menu entry the Pi bootloader looks for. The three
// trailing spaces are needed by the Pi 3B before the B+ and harmless to the
// others.
const PiMenuText = "Raspberry Pi Boot   "

// PiVendorOptions is option 43 for a Raspberry Pi, in the layout known to
// work with every Pi bootloader: a boot menu of type 0x0000 with the
// "Raspberry Pi Boot" text, the prompt "PXE" with timeout 0, discovery
// control 3 (no broadcast or multicast boot server discovery), and the end.
func PiVendorOptions() []byte {
	b := make([]byte, 0, 40)
	b = append(b, SubBootMenu, byte(3+len(PiMenuText)), 0x00, 0x00, byte(len(PiMenuText)))
	b = append(b, PiMenuText...)
	b = append(b, SubMenuPrompt, 4, 0x00, 'P', 'X', 'E')
	b = append(b, SubDiscoveryControl, 1, 0x03)
	return append(b, SubEnd)
}

// ChainloadVendorOptions is option 43 for PXE firmware that is to boot the
// file named in the reply straight away (discovery control bit 3).
func ChainloadVendorOptions() []byte {
	return []byte{SubDiscoveryControl, 1, 0x08, SubEnd}
}

// errVendorOptions is returned for malformed option 43 contents.
var errVendorOptions = errors.New("malformed PXE vendor options")

// ParseVendorOptions splits option 43 into its PXE sub-options, checking
// every length against the buffer. Pad bytes are skipped; parsing stops at
// the end byte.
func ParseVendorOptions(b []byte) (map[byte][]byte, error) {
	out := map[byte][]byte{}
	for i := 0; i < len(b); {
		code := b[i]
		switch code {
		case SubPad:
			i++
			continue
		case SubEnd:
			return out, nil
		}
		if i+1 >= len(b) {
			return nil, fmt.Errorf("%w: sub-option %d has no length at offset %d", errVendorOptions, code, i)
		}
		n := int(b[i+1])
		if i+2+n > len(b) {
			return nil, fmt.Errorf("%w: sub-option %d length %d runs past the end (%d bytes)", errVendorOptions, code, n, len(b))
		}
		if _, dup := out[code]; dup {
			return nil, fmt.Errorf("%w: sub-option %d repeated", errVendorOptions, code)
		}
		out[code] = b[i+2 : i+2+n]
		i += 2 + n
	}
	return nil, fmt.Errorf("%w: no end byte", errVendorOptions)
}

// MenuItem is one entry of sub-option 9.
type MenuItem struct {
	Type uint16
	Text string
}

// ParseBootMenu decodes sub-option 9: a list of (type u16, len u8, text).
func ParseBootMenu(b []byte) ([]MenuItem, error) {
	var items []MenuItem
	for i := 0; i < len(b); {
		if i+3 > len(b) {
			return nil, fmt.Errorf("%w: boot menu entry header truncated at offset %d", errVendorOptions, i)
		}
		n := int(b[i+2])
		if i+3+n > len(b) {
			return nil, fmt.Errorf("%w: boot menu text length %d runs past the end", errVendorOptions, n)
		}
		items = append(items, MenuItem{Type: uint16(b[i])<<8 | uint16(b[i+1]), Text: string(b[i+3 : i+3+n])})
		i += 3 + n
	}
	return items, nil
}

// Answer says how to reply to a client.
type Answer struct {
	// ServerIP is our TFTP (and boot HTTP) address: siaddr, option 54 and option 66.
	ServerIP net.IP
	// BootFile is option 67 and the file field for PXE and iPXE clients; a
	// Pi ignores it, so it stays empty for Pis.
	BootFile string
}

// BuildReply makes the proxy reply to req: an OFFER for a DISCOVER and an
// ACK for a REQUEST, without an address (yiaddr stays 0.0.0.0: the network's
// own DHCP server hands out addresses).
func BuildReply(req *dhcpv4.DHCPv4, c Client, a Answer) (*dhcpv4.DHCPv4, error) {
	var mt dhcpv4.MessageType
	switch c.MessageType {
	case dhcpv4.MessageTypeDiscover:
		mt = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		mt = dhcpv4.MessageTypeAck
	default:
		return nil, fmt.Errorf("no proxy reply to a %s", c.MessageType)
	}
	ip := a.ServerIP.To4()
	if ip == nil {
		return nil, fmt.Errorf("server address %v is not IPv4", a.ServerIP)
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithServerIP(ip),
		dhcpv4.WithYourIP(net.IPv4zero),
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip)),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")),
		dhcpv4.WithOption(dhcpv4.OptTFTPServerName(ip.String())),
	}
	// PXE: a proxy reply echoes the client's machine identifier.
	if id := req.Options.Get(dhcpv4.OptionClientMachineIdentifier); id != nil {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, id))
	}
	switch c.Kind {
	case KindPi:
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, PiVendorOptions()))
	case KindPXE, KindIPXE:
		if a.BootFile == "" {
			return nil, errors.New("PXE reply without a boot file")
		}
		mods = append(mods,
			dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, ChainloadVendorOptions()),
			dhcpv4.WithOption(dhcpv4.OptBootFileName(a.BootFile)))
	default:
		return nil, fmt.Errorf("no proxy reply for a %s client", c.Kind)
	}
	reply, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, err
	}
	// The file field holds 128 bytes; longer names (URLs) travel in option 67 only.
	if c.Kind != KindPi && len(a.BootFile) < 128 {
		reply.BootFileName = a.BootFile
	}
	return reply, nil
}
