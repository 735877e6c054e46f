package spec

import (
	"fmt"
	"strings"
)

// Wifi configures the wireless network, in whatever the base uses
// (NetworkManager keyfile, wpa_supplicant, or systemd-networkd with
// wpa_supplicant), and sets the regulatory country:
//
//	wifi {
//	  ssid    = "farm"
//	  psk     = var.wifi_psk
//	  country = "IE"
//	}
type Wifi struct {
	Block
	// SSID is 1-32 bytes.
	SSID string `hcl:"ssid,required" json:"ssid"`
	// PSK is the WPA passphrase (8-63 printable ASCII characters) or the
	// 64-hex-digit key; empty for an open network. Always treated as
	// secret.
	PSK string `hcl:"psk,sensitive" json:"psk,omitempty"`
	// Country is the ISO 3166-1 alpha-2 regulatory domain ("IE", "GB", "US").
	Country string `hcl:"country,required" json:"country"`
	// Hidden makes the client probe for an SSID that is not broadcast.
	Hidden bool `hcl:"hidden" json:"hidden"`
}

func (w *Wifi) check(c *checks) {
	b := &w.Block
	if b.Known("ssid") && (len(w.SSID) == 0 || len(w.SSID) > 32) {
		c.errorf(b, "ssid", "ssid must be 1 to 32 bytes long (it is %d)", len(w.SSID))
	}
	if b.Known("psk") && w.PSK != "" && !validPSK(w.PSK) {
		// Never quote the PSK: it is secret.
		c.errorf(b, "psk", "psk must be a passphrase of 8 to 63 printable ASCII characters or 64 hex digits")
	}
	if b.Known("country") && !isCountry(w.Country) {
		msg := fmt.Sprintf("country %q is not an ISO 3166-1 alpha-2 code", w.Country)
		switch up := strings.ToUpper(w.Country); {
		case up == "UK":
			msg += `; the United Kingdom is "GB"`
		case isCountry(up):
			msg += fmt.Sprintf("; did you mean %q?", up)
		}
		c.errorf(b, "country", "%s", msg)
	}
}

func validPSK(p string) bool {
	if len(p) == 64 {
		for _, r := range p {
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return false
			}
		}
		return true
	}
	if len(p) < 8 || len(p) > 63 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] > 0x7e {
			return false
		}
	}
	return true
}

func isCountry(s string) bool {
	if len(s) != 2 || s[0] < 'A' || s[0] > 'Z' || s[1] < 'A' || s[1] > 'Z' {
		return false
	}
	return strings.Contains(iso3166, s+" ")
}

// iso3166 lists the ISO 3166-1 alpha-2 codes (from tzdata's iso3166.tab),
// each followed by a space.
const iso3166 = "" +
	"AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS " +
	"BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE " +
	"EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM " +
	"HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC " +
	"LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA " +
	"NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW " +
	"SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO " +
	"TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW " +
	""
