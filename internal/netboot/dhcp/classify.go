package dhcp

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"

	"github.com/bakeryhq/bakery/internal/netboot"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Kind is what sort of netboot client a packet comes from.
type Kind string

// Client kinds.
const (
	KindPi    Kind = "pi"    // Raspberry Pi bootloader
	KindPXE   Kind = "pxe"   // PXE firmware (BIOS or UEFI): gets an iPXE chainload
	KindIPXE  Kind = "ipxe"  // iPXE: gets a per-machine HTTP script
	KindOther Kind = "other" // not a netboot client (an OS asking for a lease)
)

// PiVendorClass is option 60 as every Raspberry Pi bootloader sends it.
const PiVendorClass = "PXEClient:Arch:00000:UNDI:002001"

// Client architectures (option 93, RFC 4578 and the IANA registry).
const (
	ArchBIOS      = 0
	ArchX64UEFI   = 7
	ArchEBCUEFI   = 9 // used by many x86-64 UEFI firmwares
	ArchARM64UEFI = 11
)

// Client is everything the proxy needs to know about one request.
type Client struct {
	Kind        Kind
	MessageType dhcpv4.MessageType
	XID         uint32
	MAC         string // aa:bb:cc:dd:ee:ff
	// Pi identification: Serial is set for a Pi 4/5 (option 97).
	Serial     string
	Model      string // RPi3, RPi4, RPi5 or "" when only the OUI matched
	BoardRev   uint32
	DetectedBy string // option97, pi3-uuid, oui
	// PXE identification.
	VendorClass string
	Arch        uint16
	HasArch     bool
	UserClass   []string
	// IP is the address the client asks for (option 50) or already has (ciaddr).
	IP netip.Addr
}

// Classify decides what kind of client sent m. Pi detection comes first:
// a Pi sends client architecture 0, which otherwise means an x86 BIOS, and a
// Pi must never be given an x86 boot file.
func Classify(m *dhcpv4.DHCPv4) Client {
	c := Client{
		MessageType: m.MessageType(),
		XID:         binary.BigEndian.Uint32(m.TransactionID[:]),
		VendorClass: m.ClassIdentifier(),
		UserClass:   m.UserClass(),
	}
	if len(m.ClientHWAddr) == 6 {
		c.MAC = netboot.FormatMAC(m.ClientHWAddr)
	}
	if ip, ok := netip.AddrFromSlice(m.RequestedIPAddress().To4()); ok && ip.IsValid() && !ip.IsUnspecified() {
		c.IP = ip
	} else if ip, ok := netip.AddrFromSlice(m.ClientIPAddr.To4()); ok && !ip.IsUnspecified() {
		c.IP = ip
	}
	c.Arch, c.HasArch = ParseArch(m.Options.Get(dhcpv4.OptionClientSystemArchitectureType), c.VendorClass)

	pxe := strings.HasPrefix(c.VendorClass, "PXEClient")
	opt97 := m.Options.Get(dhcpv4.OptionClientMachineIdentifier)
	switch id, err := ParsePiClientID(opt97); {
	case err == nil:
		// The Pi 4 REQUEST may lack option 60; option 97 alone is enough.
		c.Kind, c.Serial, c.Model, c.BoardRev, c.DetectedBy = KindPi, id.Serial, id.Model, id.BoardRev, "option97"
		return c
	case pxe && IsPi3ClientID(opt97):
		c.Kind, c.Model, c.DetectedBy = KindPi, "RPi3", "pi3-uuid"
		return c
	case c.VendorClass == PiVendorClass && netboot.IsPiMAC(c.MAC):
		c.Kind, c.DetectedBy = KindPi, "oui"
		return c
	}
	if isIPXE(c.UserClass) {
		c.Kind = KindIPXE
		return c
	}
	if pxe && c.HasArch {
		c.Kind = KindPXE
		return c
	}
	c.Kind = KindOther
	return c
}

// ParseArch reads the first architecture of option 93, falling back to the
// "Arch:NNNNN" field of a PXE vendor class.
func ParseArch(opt93 []byte, vendorClass string) (uint16, bool) {
	if len(opt93) >= 2 {
		return binary.BigEndian.Uint16(opt93[:2]), true
	}
	const key = "PXEClient:Arch:"
	if strings.HasPrefix(vendorClass, key) && len(vendorClass) >= len(key)+5 {
		n, err := strconv.ParseUint(vendorClass[len(key):len(key)+5], 10, 16)
		if err == nil {
			return uint16(n), true
		}
	}
	return 0, false
}

func isIPXE(userClass []string) bool {
	for _, uc := range userClass {
		if uc == "iPXE" {
			return true
		}
	}
	return false
}

// IPXEBootFile is the iPXE binary a PXE client of the given architecture
// chainloads from our TFTP server; "" when we have none for it.
func IPXEBootFile(arch uint16) string {
	switch arch {
	case ArchBIOS:
		return "undionly.kpxe"
	case ArchX64UEFI, ArchEBCUEFI:
		return "ipxe.efi"
	case ArchARM64UEFI:
		return "ipxe-arm64.efi"
	}
	return ""
}

// ArchName names an architecture for events and logs.
func ArchName(arch uint16) string {
	switch arch {
	case ArchBIOS:
		return "x86-bios"
	case ArchX64UEFI, ArchEBCUEFI:
		return "x86_64-uefi"
	case ArchARM64UEFI:
		return "arm64-uefi"
	}
	return "arch-" + strconv.Itoa(int(arch))
}
