package flash

import (
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/hostname"
)

func TestExpandAndValidHostname(t *testing.T) {
	for _, tc := range []struct {
		tmpl string
		card Card
		want string
		ok   bool
	}{
		{"node-{n}", Card{N: 3, Target: "/dev/sdb"}, "node-3", true},
		{"pi-{target}", Card{N: 1, Target: "/dev/mmcblk0"}, "pi-mmcblk0", true},
		{"pi-{target}", Card{N: 1, Target: "/tmp/Card_1.img"}, "pi-card-1-img", true},
		{"node-{n}.lan", Card{N: 12}, "node-12.lan", true},
		{"-bad", Card{N: 1}, "-bad", false},
		{"no_underscore", Card{N: 1}, "no_underscore", false},
		{strings.Repeat("a", 64), Card{N: 1}, strings.Repeat("a", 64), false},
		{"a..b", Card{N: 1}, "a..b", false},
		{"", Card{N: 1}, "", false},
	} {
		got := Expand(tc.tmpl, tc.card)
		if got != tc.want {
			t.Errorf("Expand(%q) = %q, want %q", tc.tmpl, got, tc.want)
		}
		if err := hostname.Valid(got); (err == nil) != tc.ok {
			t.Errorf("hostname.Valid(%q) = %v, want ok=%v", got, err, tc.ok)
		}
	}
	if _, err := Hostname("bad name {n}"); err == nil {
		t.Error("Hostname accepted a template with a space")
	}
}

func TestSetHostsLine(t *testing.T) {
	in := "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n\n127.0.1.1\t\traspberrypi\n127.0.1.1 old2\n"
	want := "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n\n127.0.1.1\tnode-1\n"
	if got := hostname.Hosts(in, "node-1"); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if got := hostname.Hosts("127.0.0.1 localhost\n", "a.b", "a"); got != "127.0.0.1 localhost\n127.0.1.1\ta.b a\n" {
		t.Errorf("append: got %q", got)
	}
}

func TestSetYAMLKey(t *testing.T) {
	in := "#cloud-config\n# keep me\nhostname: old\nusers:\n  - name: pi\n    hostname: nested-stays\n"
	got := setYAMLKey(in, "hostname", "node-1")
	want := "#cloud-config\n# keep me\nhostname: \"node-1\"\nusers:\n  - name: pi\n    hostname: nested-stays\n"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if got := setYAMLKey("instance-id: x", "local-hostname", "n"); got != "instance-id: x\nlocal-hostname: \"n\"\n" {
		t.Errorf("append: got %q", got)
	}
	if got := setYAMLKey("", "instance-id", "n"); got != "instance-id: \"n\"\n" {
		t.Errorf("empty: got %q", got)
	}
}

func TestParsePut(t *testing.T) {
	p, err := ParsePut("boot:/creds/token.json=./node-{n}.json", DefaultPutMode)
	if err != nil || p.Part != "boot" || p.Path != "/creds/token.json" || p.Local != "./node-{n}.json" || p.Mode != 0o600 {
		t.Fatalf("got %+v, %v", p, err)
	}
	if p, err := ParsePut("2:/etc/x=y", 0o644); err != nil || p.Part != "2" {
		t.Fatalf("partition number: %+v %v", p, err)
	}
	for _, bad := range []string{"boot/x=y", "boot:/x", "home:/x=y", "0:/x=y", "boot:relative=y", "boot:/=y", "boot:/../x=y", ":/x=y", "boot:/x="} {
		if _, err := ParsePut(bad, 0o600); err == nil {
			t.Errorf("ParsePut(%q) accepted", bad)
		}
	}
}
