// Package netboot holds what the proxy DHCP server, the TFTP server and the
// control plane agree on: how machines are named (Raspberry Pi serials and
// MAC addresses) and how a Pi is recognised by its MAC address.
package netboot

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Kinds of machine identifier.
const (
	KindSerial = "serial"
	KindMAC    = "mac"
)

// ErrBadID is returned for a machine id that is neither a Pi serial nor a MAC.
var ErrBadID = errors.New("want a Raspberry Pi serial (8 hex digits) or a MAC address (aa:bb:cc:dd:ee:ff)")

// NormalizeSerial turns a Raspberry Pi serial as printed by the board
// ("10000000a1b2c3d4", "A1B2C3D4", "0xa1b2c3d4") into the form the bootloader
// uses as its TFTP prefix: the last 8 hex digits in lower case.
func NormalizeSerial(s string) (string, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	v = strings.TrimPrefix(v, "0x")
	if len(v) == 16 && strings.HasPrefix(v, "10000000") {
		v = v[8:]
	}
	if len(v) != 8 || !isHex(v) {
		return "", fmt.Errorf("serial %q: want 8 hex digits (a leading 10000000 is dropped)", s)
	}
	return v, nil
}

// NormalizeMAC accepts aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff or aabbccddeeff in
// any case and returns the lower-case colon form.
func NormalizeMAC(s string) (string, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	var raw string
	switch len(v) {
	case 12:
		raw = v
	case 17:
		sep := v[2]
		if sep != ':' && sep != '-' {
			return "", fmt.Errorf("MAC %q: want aa:bb:cc:dd:ee:ff", s)
		}
		parts := strings.Split(v, string(sep))
		if len(parts) != 6 {
			return "", fmt.Errorf("MAC %q: want six bytes", s)
		}
		for _, p := range parts {
			if len(p) != 2 {
				return "", fmt.Errorf("MAC %q: want two hex digits per byte", s)
			}
		}
		raw = strings.Join(parts, "")
	default:
		return "", fmt.Errorf("MAC %q: want aa:bb:cc:dd:ee:ff", s)
	}
	if !isHex(raw) {
		return "", fmt.Errorf("MAC %q: not hexadecimal", s)
	}
	b, _ := hex.DecodeString(raw)
	return FormatMAC(b), nil
}

// FormatMAC formats 6 bytes as aa:bb:cc:dd:ee:ff.
func FormatMAC(b []byte) string {
	return net.HardwareAddr(b).String()
}

// ParseMachineID normalises a machine id and tells which kind it is.
func ParseMachineID(s string) (id, kind string, err error) {
	if serial, err := NormalizeSerial(s); err == nil {
		return serial, KindSerial, nil
	}
	if mac, err := NormalizeMAC(s); err == nil {
		return mac, KindMAC, nil
	}
	return "", "", fmt.Errorf("machine id %q: %w", s, ErrBadID)
}

// PiOUIs are the MAC prefixes Raspberry Pi Ltd assigns to its boards. They
// are only a fallback for recognising a Pi: new batches get new prefixes,
// which is why option 97 comes first.
var piOUIs = [...]string{
	"b8:27:eb", // Pi 1, 2, 3, Zero
	"dc:a6:32", // Pi 4
	"e4:5f:01", // Pi 4, 400, CM4
	"28:cd:c1", // Pi 4, Pico W
	"d8:3a:dd", // Pi 4, 5, Zero 2
	"2c:cf:67", // Pi 5
}

// PiOUIs returns the known Raspberry Pi MAC prefixes.
func PiOUIs() []string { return append([]string(nil), piOUIs[:]...) }

// IsPiMAC reports whether a normalised MAC belongs to a Raspberry Pi OUI.
func IsPiMAC(mac string) bool {
	if len(mac) < 8 {
		return false
	}
	for _, oui := range piOUIs {
		if mac[:8] == oui {
			return true
		}
	}
	return false
}

// MACPrefix is the TFTP prefix a Pi uses with TFTP_PREFIX=2: dc-a6-32-01-02-03.
func MACPrefix(mac string) string { return strings.ReplaceAll(mac, ":", "-") }

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
