package netboot

import (
	"net/netip"
	"strings"
	"testing"
)

func TestNormalizeSerial(t *testing.T) {
	good := map[string]string{
		"3a7f91c2":         "3a7f91c2",
		"3A7F91C2":         "3a7f91c2",
		"100000003a7f91c2": "3a7f91c2",
		"0x3a7f91c2":       "3a7f91c2",
		" 3a7f91c2 ":       "3a7f91c2",
	}
	for in, want := range good {
		got, err := NormalizeSerial(in)
		if err != nil || got != want {
			t.Errorf("NormalizeSerial(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "3a7f91c", "3a7f91c2a", "zz7f91c2", "200000003a7f91c2", "../a7f91c"} {
		if got, err := NormalizeSerial(in); err == nil {
			t.Errorf("NormalizeSerial(%q) = %q, want error", in, got)
		}
	}
}

func TestNormalizeMAC(t *testing.T) {
	good := map[string]string{
		"DC:A6:32:01:02:03": "dc:a6:32:01:02:03",
		"dc-a6-32-01-02-03": "dc:a6:32:01:02:03",
		"dca632010203":      "dc:a6:32:01:02:03",
	}
	for in, want := range good {
		got, err := NormalizeMAC(in)
		if err != nil || got != want {
			t.Errorf("NormalizeMAC(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "dc:a6:32:01:02", "dc:a6:32:01:02:0g", "dc:a6-32:01:02:03", "dca6.3201.0203", "d:ca6:32:01:02:03"} {
		if got, err := NormalizeMAC(in); err == nil {
			t.Errorf("NormalizeMAC(%q) = %q, want error", in, got)
		}
	}
}

func TestParseMachineID(t *testing.T) {
	if id, kind, err := ParseMachineID("100000003A7F91C2"); err != nil || id != "3a7f91c2" || kind != KindSerial {
		t.Errorf("serial: %q %q %v", id, kind, err)
	}
	if id, kind, err := ParseMachineID("52:54:00:AB:CD:EF"); err != nil || id != "52:54:00:ab:cd:ef" || kind != KindMAC {
		t.Errorf("mac: %q %q %v", id, kind, err)
	}
	if _, _, err := ParseMachineID("pi-1"); err == nil {
		t.Error("pi-1 accepted")
	}
}

func TestIsPiMAC(t *testing.T) {
	// The complete list from pi-netboot.md: a missing prefix means a batch
	// of boards that never netboots.
	for _, oui := range []string{"b8:27:eb", "dc:a6:32", "e4:5f:01", "28:cd:c1", "d8:3a:dd", "2c:cf:67"} {
		if !IsPiMAC(oui + ":01:02:03") {
			t.Errorf("%s not recognised as a Pi", oui)
		}
	}
	if IsPiMAC("52:54:00:01:02:03") || IsPiMAC("") {
		t.Error("non-Pi MAC recognised")
	}
	if MACPrefix("dc:a6:32:01:02:03") != "dc-a6-32-01-02-03" {
		t.Error("MACPrefix")
	}
}

func TestParseARP(t *testing.T) {
	table := `IP address       HW type     Flags       HW address            Mask     Device
10.0.0.2         0x1         0x2         DC:A6:32:01:02:03     *        veth0
10.0.0.3         0x1         0x0         00:00:00:00:00:00     *        veth0
bogus
10.0.0.4         0x1         0x6         52:54:00:aa:bb:cc     *        veth0
`
	got := ParseARP(strings.NewReader(table))
	if len(got) != 2 || got[netip.MustParseAddr("10.0.0.2")] != "dc:a6:32:01:02:03" || got[netip.MustParseAddr("10.0.0.4")] != "52:54:00:aa:bb:cc" {
		t.Fatalf("%v", got)
	}
}
