package netboot

import (
	"bufio"
	"io"
	"net/netip"
	"os"
	"strings"
)

// ARPTable is the kernel's IPv4 neighbour table (this network namespace's).
const ARPTable = "/proc/net/arp"

// ParseARP reads /proc/net/arp and returns the complete entries as IP to
// normalised MAC. A Pi that sends a TFTP request has just asked for our MAC
// by ARP, so its own entry is there: this is how a request without a serial
// prefix (Pi 3 bootcode.bin) is tied to a machine.
func ParseARP(r io.Reader) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	sc := bufio.NewScanner(r)
	first := true
	for sc.Scan() {
		if first { // header line
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		ip, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		// Flags 0x2 is ATF_COM: the entry is resolved.
		if f[2] != "0x2" && f[2] != "0x6" {
			continue
		}
		mac, err := NormalizeMAC(f[3])
		if err != nil || mac == "00:00:00:00:00:00" {
			continue
		}
		out[ip] = mac
	}
	return out
}

// LookupMAC returns the MAC address of a neighbour from the ARP table.
func LookupMAC(ip netip.Addr) (string, bool) {
	f, err := os.Open(ARPTable)
	if err != nil {
		return "", false
	}
	defer f.Close()
	mac, ok := ParseARP(f)[ip.Unmap()]
	return mac, ok
}
