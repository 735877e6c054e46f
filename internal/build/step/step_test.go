package step

import (
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

func TestCmdline(t *testing.T) {
	cl := ParseCmdline("console=tty1 root=PARTUUID=abc-02 quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\nignored second line\n")
	cl.Set("cfg80211.ieee80211_regdom", "IE")
	cl.Set("root", "PARTUUID=def-02")
	cl.Remove("init", nil)
	if got := cl.String(); got != "console=tty1 root=PARTUUID=def-02 quiet cfg80211.ieee80211_regdom=IE\n" {
		t.Errorf("got %q", got)
	}
	if v, ok := cl.Get("quiet"); !ok || v != "" {
		t.Error("flag token not found")
	}
}

func TestEditHosts(t *testing.T) {
	base := "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\traspberrypi\n"
	if got := editHosts(base, "dhcp", "dhcp"); got != "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n" {
		t.Errorf("dhcp: %q", got)
	}
	if got := editHosts(base, "n1.lab", "n1"); got != "127.0.0.1\tlocalhost\n127.0.1.1\tn1.lab n1\n::1\t\tlocalhost ip6-localhost ip6-loopback\n" {
		t.Errorf("fixed: %q", got)
	}
}

func TestWPAPSK(t *testing.T) {
	// IEEE 802.11i-2004 annex H.4 test vectors.
	for _, v := range []struct{ ssid, pass, want string }{
		{"IEEE", "password", "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"},
		{"ThisIsASSID", "ThisIsAPassword", "0dc0d6eb90555ed6419756b9a15ec3e3209b63df707dd508d14581f8982721af"},
	} {
		if got := wpaPSK(v.ssid, v.pass); got != v.want {
			t.Errorf("%s: %s", v.ssid, got)
		}
	}
	hex := strings.Repeat("AB", 32)
	if got := wpaPSK("x", hex); got != strings.ToLower(hex) {
		t.Errorf("hex key changed: %s", got)
	}
}

func TestNMSSID(t *testing.T) {
	for in, want := range map[string]string{"farm": "farm", "farm net": "farm net", "a;b": "97;59;98;", " x": "32;120;", "1234": "49;50;51;52;"} {
		if got := nmSSID(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestEscapePathMatchesSystemdEscape(t *testing.T) {
	if _, err := exec.LookPath("systemd-escape"); err != nil {
		t.Skip("systemd-escape not installed")
	}
	for _, p := range []string{"/dev/disk/by-partuuid/df59616a-03", "/dev/disk/by-partuuid/0FC63DAF-8483-4772-8E79-3D69D8477DE4", "/data/.hidden dir/x_y"} {
		out, err := exec.Command("systemd-escape", "--path", p).Output()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := escapePath(p), strings.TrimSpace(string(out)); got != want {
			t.Errorf("%s: %s, want %s", p, got, want)
		}
	}
}

func TestMergeCloudConfig(t *testing.T) {
	gen := map[string]any{"runcmd": []any{[]any{"locale-gen"}}, "growpart": map[string]any{"mode": "off"}, "ssh_pwauth": false}
	user := map[string]any{"runcmd": []any{"echo hi"}, "growpart": map[string]any{"devices": []any{"/"}}, "ssh_pwauth": true}
	got := mergeCloudConfig(gen, user)
	want := map[string]any{
		"runcmd":     []any{[]any{"locale-gen"}, "echo hi"},
		"growpart":   map[string]any{"mode": "off", "devices": []any{"/"}},
		"ssh_pwauth": true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v", got)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"htop": "htop", "jq=1.6-2.1": "jq=1.6-2.1", "a b": "'a b'", "it's": `'it'\''s'`, "": "''"} {
		if got := shellQuote(in); got != want {
			t.Errorf("%q: %s", in, got)
		}
	}
}

func TestLocaleGen(t *testing.T) {
	old := "# en_GB.UTF-8 UTF-8\n# en_IE.UTF-8 UTF-8\nde_DE.UTF-8 UTF-8\n"
	if got := enableLocaleGen(old, "en_IE.UTF-8 UTF-8"); got != "# en_GB.UTF-8 UTF-8\nen_IE.UTF-8 UTF-8\nde_DE.UTF-8 UTF-8\n" {
		t.Errorf("uncomment: %q", got)
	}
	if got := enableLocaleGen("", "fr_FR.UTF-8 UTF-8"); got != "fr_FR.UTF-8 UTF-8\n" {
		t.Errorf("append: %q", got)
	}
}

func TestReplaceMarkedBlock(t *testing.T) {
	old := "hostname\n\n# bakery: interface eth0\ninterface eth0\nstatic ip_address=1.2.3.4/24\n\nslaac private\n"
	got := replaceMarkedBlock(old, "# bakery: interface eth0", "# bakery: interface eth0\ninterface eth0\nstatic ip_address=5.6.7.8/24\n")
	if got != "hostname\n\n# bakery: interface eth0\ninterface eth0\nstatic ip_address=5.6.7.8/24\n\nslaac private\n" {
		t.Errorf("%q", got)
	}
}

func TestIDs(t *testing.T) {
	a := NewIDs([32]byte{1}, "base")
	b := NewIDs([32]byte{1}, "base")
	c := NewIDs([32]byte{2}, "base")
	if a.UUIDString("x") != b.UUIDString("x") || a.UUIDString("x") == c.UUIDString("x") || a.UUIDString("x") == a.UUIDString("y") {
		t.Error("ids are not a function of their inputs")
	}
	s1 := a.WithSources(map[string][32]byte{"f": {1}})
	s2 := a.WithSources(map[string][32]byte{"f": {2}})
	if s1.Hex("i", 16) == s2.Hex("i", 16) || a.WithSources(nil).Hex("i", 16) == s1.Hex("i", 16) {
		t.Error("source contents do not change the ids")
	}
	if u := a.UUIDString("x"); u[14] != '4' || !strings.ContainsAny(u[19:20], "89ab") {
		t.Errorf("not a version 4 layout: %s", u)
	}
}
