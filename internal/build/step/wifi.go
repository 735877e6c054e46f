package step

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/bakeryhq/bakery/internal/spec"
	"github.com/bakeryhq/bakery/internal/systemd"
)

// piRfkillDevices are the rfkill state files systemd-rfkill keeps for the
// wireless chips of the Raspberry Pi models: the 3 and Zero 2 W
// (3f300000.mmcnr), the 4, 400 and CM4 (fe300000.mmcnr) and the 5
// (1001100000.mmc). Pi OS keeps wifi
// blocked until a country is set; rpi-imager writes 0 ("unblocked") into
// these files, and so does bakery.
var piRfkillDevices = []string{
	"platform-3f300000.mmcnr:wlan",
	"platform-fe300000.mmcnr:wlan",
	"platform-1001100000.mmc:wlan",
}

// Wifi writes the wireless network for the base's stack: a
// NetworkManager keyfile (0600), or wpa_supplicant.conf (dhcpcd and
// ifupdown bases), or wpa_supplicant-IFACE.conf with
// wpa_supplicant@IFACE and a networkd .network file. It sets the
// regulatory country (cfg80211.ieee80211_regdom= on a Pi's cmdline.txt,
// /etc/default/crda when present, country= for wpa_supplicant) and
// unblocks rfkill on Raspberry Pi OS.
//
// The passphrase goes into the image as the WPA pre-shared key derived
// from it (PBKDF2, as wpa_passphrase and rpi-imager do), never as typed,
// and never into logs or build output.
func Wifi(_ context.Context, c *Context) error {
	w := c.Spec.Wifi
	ifc := wirelessInterface(c.Spec)
	ifname := "wlan0"
	if ifc != nil {
		ifname = ifc.Name
	} else {
		ifc = &spec.Interface{Name: ifname, DHCP4: true, IPv6: true}
	}
	psk := ""
	if w.PSK != "" {
		psk = wpaPSK(w.SSID, w.PSK)
	}
	var err error
	switch c.Flavour.Network {
	case StackNetworkManager:
		err = writeNMProfile(c, nmWifi(c, w, ifc, psk))
	case StackNetworkd:
		if !c.Flavour.WPASupplicant || !systemd.Exists(c.Root, "wpa_supplicant@.service") {
			return w.Errorf("", "the base uses systemd-networkd but has no wpa_supplicant@.service to join a wifi network; add wpasupplicant to the base")
		}
		if err = c.WriteFile(c.Root, "/etc/wpa_supplicant/wpa_supplicant-"+ifname+".conf", wpaConf(w, psk), 0o600, 0, 0); err == nil {
			if err = c.EnableUnit("wpa_supplicant@" + ifname + ".service"); err == nil {
				err = writeNetworkd(c, ifc)
			}
		}
		if err == nil && c.Spec.Network == nil {
			err = c.EnableUnit("systemd-networkd.service")
		}
	case StackDhcpcd, StackIfupdown:
		if !c.Flavour.WPASupplicant {
			return w.Errorf("", "the base has no wpa_supplicant to join a wifi network")
		}
		err = c.WriteFile(c.Root, "/etc/wpa_supplicant/wpa_supplicant.conf", wpaConf(w, psk), 0o600, 0, 0)
		if err == nil && c.Flavour.Network == StackIfupdown {
			err = writeIfupdown(c, ifc, "    wpa-conf /etc/wpa_supplicant/wpa_supplicant.conf\n")
		}
		if err == nil && c.Flavour.Network == StackDhcpcd && c.Spec.Network != nil && wirelessInterface(c.Spec) != nil {
			err = writeDhcpcd(c, ifc)
		}
	default:
		return w.Errorf("", "the base image has no network stack bakery knows (NetworkManager, systemd-networkd, dhcpcd or ifupdown) to configure wifi with")
	}
	if err != nil {
		return err
	}
	return setCountry(c, w.Country)
}

// wpaPSK derives the 256-bit WPA key from a passphrase (IEEE 802.11i:
// PBKDF2-HMAC-SHA1, SSID as salt, 4096 rounds); a 64-hex-digit key is
// used as given.
func wpaPSK(ssid, pass string) string {
	if len(pass) == 64 {
		if _, err := hex.DecodeString(pass); err == nil {
			return strings.ToLower(pass)
		}
	}
	key, err := pbkdf2.Key(sha1.New, pass, []byte(ssid), 4096, 32)
	if err != nil {
		panic(fmt.Sprintf("pbkdf2: %v", err)) // only for FIPS-mode key length rules; 32 bytes is fine
	}
	return hex.EncodeToString(key)
}

// nmSSID renders an SSID for a keyfile: as text when it is plain, else
// as the byte list keyfiles also accept.
func nmSSID(ssid string) string {
	plain := ssid != "" && ssid[0] != ' ' && ssid[len(ssid)-1] != ' '
	digitsOnly := true
	for i := 0; i < len(ssid); i++ {
		ch := ssid[i]
		if ch < 0x21 && ch != ' ' || ch > 0x7e || ch == ';' || ch == '\\' || ch == '#' {
			plain = false
		}
		if ch < '0' || ch > '9' {
			digitsOnly = false
		}
	}
	if plain && !digitsOnly {
		return ssid
	}
	var b strings.Builder
	for i := 0; i < len(ssid); i++ {
		fmt.Fprintf(&b, "%d;", ssid[i])
	}
	return b.String()
}

func nmWifi(c *Context, w *spec.Wifi, ifc *spec.Interface, psk string) nmProfile {
	id := "bakery-wifi"
	conn := fmt.Sprintf("id=%s\nuuid=%s\ntype=wifi\n", id, c.IDs.UUIDString("nm connection wifi"))
	if wirelessInterface(c.Spec) != nil {
		conn += "interface-name=" + ifc.Name + "\n"
	}
	conn += "autoconnect=true\n"
	wifi := "mode=infrastructure\nssid=" + nmSSID(w.SSID) + "\n"
	if w.Hidden {
		wifi += "hidden=true\n"
	}
	if ifc.MTU != nil {
		wifi += fmt.Sprintf("mtu=%d\n", *ifc.MTU)
	}
	p := nmProfile{file: id + ".nmconnection", sections: [][2]string{{"connection", conn}, {"wifi", wifi}}}
	if psk != "" {
		p.sections = append(p.sections, [2]string{"wifi-security", "key-mgmt=wpa-psk\npsk=" + psk + "\n"})
	}
	p.sections = append(p.sections, nmIP(ifc)...)
	return p
}

// wpaConf renders a wpa_supplicant configuration with one network.
func wpaConf(w *spec.Wifi, psk string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by bakery build.\nctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev\nupdate_config=1\ncountry=%s\n\nnetwork={\n", w.Country)
	if isPlainSSID(w.SSID) {
		fmt.Fprintf(&b, "\tssid=%q\n", w.SSID)
	} else {
		fmt.Fprintf(&b, "\tssid=%s\n", hex.EncodeToString([]byte(w.SSID)))
	}
	if w.Hidden {
		b.WriteString("\tscan_ssid=1\n")
	}
	if psk != "" {
		fmt.Fprintf(&b, "\tkey_mgmt=WPA-PSK\n\tpsk=%s\n", psk)
	} else {
		b.WriteString("\tkey_mgmt=NONE\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func isPlainSSID(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\' {
			return false
		}
	}
	return true
}

// setCountry sets the wireless regulatory domain.
func setCountry(c *Context, country string) error {
	if err := c.EditCmdline(func(cl *Cmdline) { cl.Set("cfg80211.ieee80211_regdom", country) }); err != nil {
		return err
	}
	if Exists(c.Root, "/etc/default/crda") {
		if err := c.EditFile(c.Root, "/etc/default/crda", 0o644, func(old []byte, _ bool) ([]byte, error) {
			return []byte(setShellVar(string(old), "REGDOMAIN", country, false)), nil
		}); err != nil {
			return err
		}
	}
	if !c.Flavour.RaspberryPiOS {
		return nil
	}
	for _, dev := range piRfkillDevices {
		if err := c.WriteFile(c.Root, "/var/lib/systemd/rfkill/"+dev, "0\n", 0o644, 0, 0); err != nil {
			return err
		}
	}
	// Any other saved wlan state (another Pi model) is unblocked too.
	entries, _ := c.Root.ReadDir("/var/lib/systemd/rfkill")
	for _, e := range entries {
		if strings.HasSuffix(e.Name, ":wlan") && e.IsRegular() {
			if err := c.WriteFile(c.Root, "/var/lib/systemd/rfkill/"+e.Name, "0\n", 0o644, 0, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// setShellVar sets NAME=value in a shell-style KEY=value file (quoted
// when quote is true), replacing an existing assignment or appending.
func setShellVar(content, name, value string, quote bool) string {
	line := name + "=" + value
	if quote {
		line = name + "=\"" + value + "\""
	}
	lines := strings.Split(strings.TrimRight(content, "\n"), "\n")
	if content == "" {
		lines = nil
	}
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, name+"=") || strings.HasPrefix(t, "export "+name+"=") {
			lines[i] = line
			return strings.Join(lines, "\n") + "\n"
		}
	}
	return strings.Join(append(lines, line), "\n") + "\n"
}
