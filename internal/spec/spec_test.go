package spec

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// parseIn parses src as "spec.hcl" in a fresh directory holding base.img
// and the given extra files, and returns the spec and its diagnostics as
// lines, with the directory replaced by $DIR.
func parseIn(t *testing.T, src string, files map[string]string, in Inputs) (*Spec, []string) {
	t.Helper()
	dir := t.TempDir()
	files2 := map[string]string{"base.img": ""}
	for k, v := range files {
		files2[k] = v
	}
	for name, content := range files2 {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in.Dir = dir
	s, diags := Parse(context.Background(), "spec.hcl", []byte(src), in)
	return s, diagLines(diags, dir)
}

func diagLines(diags hcl.Diagnostics, dir string) []string {
	var lines []string
	for _, d := range diags {
		l := FormatDiagnostic(d)
		if dir != "" {
			l = strings.ReplaceAll(l, dir, "$DIR")
		}
		lines = append(lines, l)
	}
	return lines
}

const baseLine = `base { url = "base.img" }` + "\n"

// TestValidationRules checks each rule's message and exact position. Every
// spec starts with a valid base block on line 1.
func TestValidationRules(t *testing.T) {
	tests := []struct {
		name  string
		src   string // after the base line, so it starts on line 2
		files map[string]string
		in    Inputs
		want  []string
	}{
		{
			name: "unknown top-level attribute",
			src:  `hostnme = "node1"`,
			want: []string{`spec.hcl:2:1: Unsupported argument: An argument named "hostnme" is not expected here. Did you mean "hostname"?`},
		},
		{
			name: "unknown block",
			src:  `usr "bob" {}`,
			want: []string{`spec.hcl:2:1: Unsupported block type: Blocks of type "usr" are not expected here. Did you mean "user"?`},
		},
		{
			name: "misspelt variable block",
			src:  `varable "x" {}`,
			want: []string{`spec.hcl:2:1: Unsupported block type: Blocks of type "varable" are not expected here. Did you mean "variable"?`},
		},
		{
			name: "unknown nested attribute",
			src:  "user \"bob\" {\n  group = [\"sudo\"]\n}",
			want: []string{`spec.hcl:3:3: Unsupported argument: An argument named "group" is not expected here. Did you mean "groups"?`},
		},
		{
			name: "attribute written as a block",
			src:  "hostname {\n}",
			want: []string{`spec.hcl:2:1: Unsupported block type: Blocks of type "hostname" are not expected here. Did you mean to define argument "hostname"? If so, use the equals sign to assign it a value.`},
		},
		{
			name: "syntax error",
			src:  "hostname = \"a\"\nuser \"bob\" {\n  sudo = \n}\n",
			want: []string{`spec.hcl:4:10: Invalid expression: Expected the start of an expression, but found an invalid expression token.`},
		},
		{
			name: "type error",
			src:  `hostname = ["a"]`,
			want: []string{`spec.hcl:2:1: hostname: want a string, got tuple`},
		},
		{
			name: "list type error",
			src:  "user \"bob\" {\n  groups = \"sudo\"\n}",
			want: []string{`spec.hcl:3:3: user "bob": groups: want a list of strings, got string`},
		},
		{
			name: "missing required attribute",
			src:  "wifi {\n  ssid = \"farm\"\n}",
			want: []string{`spec.hcl:2:6: Missing required argument: The argument "country" is required, but no definition was found.`},
		},
		{
			name: "missing base",
			src:  "\n",
			want: []string{`spec.hcl:1:1: missing required block "base"`},
		},
		{
			name: "duplicate singleton block",
			src:  "wifi {\n  ssid = \"a\"\n  country = \"IE\"\n}\nwifi {\n  ssid = \"b\"\n  country = \"IE\"\n}",
			want: []string{`spec.hcl:6:1: duplicate wifi block; only one is allowed and the first is at spec.hcl:2:1`},
		},
		{
			name: "undeclared variable with suggestion",
			src:  "variable \"name\" {\n  default = \"n1\"\n}\nhostname = var.nme",
			want: []string{`spec.hcl:5:12: reference to undeclared variable var.nme; did you mean var.name?`},
		},
		{
			name: "undeclared variable",
			src:  `hostname = var.node_name`,
			want: []string{`spec.hcl:2:12: reference to undeclared variable var.node_name; declare it with a variable "node_name" block`},
		},
		{
			name: "undeclared local",
			src:  "locals {\n  name = \"n1\"\n}\nhostname = local.nmae",
			want: []string{`spec.hcl:5:12: reference to undeclared local value local.nmae; did you mean local.name?`},
		},
		{
			name: "unknown root name",
			src:  `hostname = vars.name`,
			want: []string{`spec.hcl:2:12: Unknown variable: There is no variable named "vars". Did you mean "var"?`},
		},
		{
			name: "local cycle",
			src:  "locals {\n  a = local.b\n  b = local.a\n}",
			want: []string{
				`spec.hcl:3:3: local value "a" depends on itself (through local.b)`,
				`spec.hcl:4:3: local value "b" depends on itself (through local.a)`,
			},
		},
		{
			name: "variable without value",
			src:  "variable \"token\" {\n  type = string\n}",
			want: []string{`spec.hcl:2:1: variable "token" has no value; set it with --var token=VALUE, in a --var-file, or with BAKERY_VAR_token`},
		},
		{
			name: "variable type mismatch from --var",
			src:  "variable \"n\" {\n  type = number\n}",
			in:   Inputs{Vars: map[string]string{"n": "many"}},
			want: []string{`spec.hcl:2:1: variable "n": the value from --var n is not a valid number`},
		},
		{
			name: "undeclared --var",
			src:  "variable \"wifi_psk\" {\n  default = \"x\"\n}",
			in:   Inputs{Vars: map[string]string{"wifi_pks": "secret123"}},
			want: []string{`--var wifi_pks: no variable "wifi_pks" is declared in spec.hcl; did you mean "wifi_psk"?`},
		},
		{
			name: "variable validation",
			src:  "variable \"site\" {\n  default = \"x\"\n  validation {\n    condition = length(var.site) > 2\n    error_message = \"site needs 3 letters.\"\n  }\n}",
			want: []string{`spec.hcl:3:3: variable "site": site needs 3 letters. (value from default)`},
		},
		{
			name: "env function refused",
			src:  `hostname = env("HOST")`,
			want: []string{`spec.hcl:2:12: Error in function call: Call to function "env" failed: env() is not available: a build depends on its environment only through variables; declare a variable and set it with BAKERY_VAR_NAME.`},
		},
		{
			name: "missing file() target",
			src:  "file \"/etc/x\" {\n  content = file(\"nope.txt\")\n}",
			want: []string{`spec.hcl:3:13: Error in function call: Call to function "file" failed: no file exists at "nope.txt" (resolved against the spec's directory: $DIR/nope.txt).`},
		},
		{
			name: "missing source",
			src:  "file \"/etc/x\" {\n  source = \"files/nope.txt\"\n}",
			want: []string{`spec.hcl:3:3: file "/etc/x": source file "files/nope.txt" does not exist (looked for $DIR/files/nope.txt)`},
		},
		{
			name: "content and source",
			src:  "file \"/etc/x\" {\n  content = \"a\"\n  source = \"base.img\"\n}",
			want: []string{`spec.hcl:2:1: file "/etc/x": give exactly one of content, content_base64 or source`},
		},
		{
			name: "neither content nor source",
			src:  "file \"/etc/x\" {\n  mode = \"0600\"\n}",
			want: []string{`spec.hcl:2:1: file "/etc/x": give exactly one of content, content_base64 or source`},
		},
		{
			name: "octal mode",
			src:  "file \"/etc/x\" {\n  content = \"\"\n  mode = \"0999\"\n}\ndirectory \"/d\" {\n  mode = \"rwx\"\n}",
			want: []string{
				`spec.hcl:4:3: file "/etc/x": mode: mode "0999": want octal permissions such as 0644 or 0755`,
				`spec.hcl:7:3: directory "/d": mode: mode "rwx": want octal permissions such as 0644 or 0755`,
			},
		},
		{
			name: "relative and climbing paths",
			src:  "file \"etc/x\" {\n  content = \"\"\n}\ndirectory \"/srv/../etc\" {}\nsymlink \"/\" {\n  target = \"x\"\n}",
			want: []string{
				`spec.hcl:2:1: file "etc/x": path "etc/x" must be absolute (start with /)`,
				`spec.hcl:5:1: directory "/srv/../etc": path "/srv/../etc" must not contain ".."`,
				`spec.hcl:6:1: symlink "/": path must name something below /`,
			},
		},
		{
			name: "duplicate files and path clash",
			src:  "file \"/etc/x\" {\n  content = \"\"\n}\nfile \"/etc/x\" {\n  content = \"\"\n}\ndirectory \"/etc//x/\" {}\nsymlink \"/etc/x/y\" {\n  target = \"z\"\n}",
			want: []string{
				`spec.hcl:5:1: duplicate file "/etc/x"; the first is at spec.hcl:2:1`,
				`spec.hcl:8:1: directory "/etc//x/": path /etc/x is also declared by file "/etc/x" at spec.hcl:2:1`,
				`spec.hcl:9:1: symlink "/etc/x/y": path /etc/x/y is below /etc/x, which file "/etc/x" declares as a file`,
			},
		},
		{
			name: "owner names",
			src:  "directory \"/d\" {\n  owner = \"Bad Owner\"\n  group = \"1000\"\n}",
			want: []string{`spec.hcl:3:3: directory "/d": owner "Bad Owner" is neither a user/group name nor a numeric id`},
		},
		{
			name: "duplicate users and bad names",
			src:  "user \"bob\" {}\nuser \"bob\" {}\nuser \"Bob\" {}\nuser \"al\" {\n  uid = 1001\n}\nuser \"cy\" {\n  uid = 1001\n}",
			want: []string{
				`spec.hcl:3:1: duplicate user "bob"; the first is at spec.hcl:2:1`,
				`spec.hcl:4:1: user "Bob": user name "Bob" is not valid: use lower-case letters, digits, '_' and '-', starting with a letter or '_', at most 32 characters`,
				`spec.hcl:9:3: user "cy": uid 1001 is also given to user "al"`,
			},
		},
		{
			name: "sudo enum and password",
			src:  "user \"bob\" {\n  sudo = \"nopass\"\n}\nuser \"al\" {\n  sudo = \"password\"\n}",
			want: []string{
				`spec.hcl:3:3: user "bob": sudo = "nopass" is not allowed; want "nopasswd", "password", "none" (did you mean "nopasswd"?)`,
				`spec.hcl:6:3: user "al": sudo = "password" needs a password_hash: without one the password is locked and sudo could never be used`,
			},
		},
		{
			name: "ssh keys and password hash",
			src:  "user \"bob\" {\n  ssh_authorized_keys = [\n    \"ssh-ed25519 notbase64 x\",\n  ]\n  password_hash = \"hunter2\"\n  groups = [\"sudo\", \"Wheel\", \"sudo\"]\n}",
			want: []string{
				`spec.hcl:4:5: user "bob": ssh_authorized_keys[0] is not an SSH public key; want a line such as "ssh-ed25519 AAAA... you@host"`,
				`spec.hcl:6:3: user "bob": password_hash is not a crypt(3) hash such as "$6$..." or "$y$..." (make one with: mkpasswd -m sha-512, or openssl passwd -6); plain passwords are not accepted`,
				`spec.hcl:7:21: user "bob": group name "Wheel" is not valid`,
				`spec.hcl:7:30: user "bob": group "sudo" is listed twice`,
			},
		},
		{
			name: "hostname",
			src:  `hostname = "node_1"`,
			want: []string{`spec.hcl:2:1: hostname "node_1" is not a valid RFC 1123 host name (letters, digits and inner hyphens, labels up to 63 characters); use "dhcp" to take the name from DHCP`},
		},
		{
			name: "timezone locale keyboard packages",
			src:  "timezone = \"Dublin\"\nlocale = \"english\"\nkeyboard = { layout = \"gb\", varient = \"x\" }\npackages = [\"htop\", \"Bad Pkg\"]",
			want: []string{
				`spec.hcl:2:1: timezone "Dublin" does not look like a tz database name such as "Europe/Dublin" or "UTC"`,
				`spec.hcl:3:1: locale "english" does not look like a locale name such as "en_GB.UTF-8" or "C.UTF-8"`,
				`spec.hcl:4:1: keyboard: unknown attribute "varient" (want layout, model, variant, options); did you mean "variant"?`,
				`spec.hcl:5:21: package "Bad Pkg" is not a Debian package name (optionally name=version)`,
			},
		},
		{
			name: "wifi values",
			src:  "wifi {\n  ssid = \"\"\n  psk = \"short\"\n  country = \"UK\"\n}",
			want: []string{
				`spec.hcl:3:3: wifi: ssid must be 1 to 32 bytes long (it is 0)`,
				`spec.hcl:4:3: wifi: psk must be a passphrase of 8 to 63 printable ASCII characters or 64 hex digits`,
				`spec.hcl:5:3: wifi: country "UK" is not an ISO 3166-1 alpha-2 code; the United Kingdom is "GB"`,
			},
		},
		{
			name: "wifi country case",
			src:  "wifi {\n  ssid = \"farm\"\n  country = \"ie\"\n}",
			want: []string{`spec.hcl:4:3: wifi: country "ie" is not an ISO 3166-1 alpha-2 code; did you mean "IE"?`},
		},
		{
			name: "network addresses",
			src:  "network {\n  interface \"eth0\" {\n    address = \"192.168.1.10\"\n    dns = [\"1.1.1\"]\n  }\n  interface \"eth1\" {\n    address = \"10.0.0.5/24\"\n    gateway = \"2001:db8::1\"\n  }\n  interface \"eth2\" {\n    dhcp4 = false\n    ipv6 = false\n  }\n}",
			want: []string{
				`spec.hcl:4:5: interface "eth0": address "192.168.1.10" must be an IP address with a prefix length, such as "192.168.1.10/24"`,
				`spec.hcl:5:12: interface "eth0": dns server "1.1.1" is not an IP address`,
				`spec.hcl:9:5: interface "eth1": gateway 2001:db8::1 and address 10.0.0.5/24 are not the same IP version`,
				`spec.hcl:11:3: interface "eth2": interface "eth2" would have no address: set address, dhcp4 = true or ipv6 = true`,
			},
		},
		{
			name: "empty network",
			src:  "network {}",
			want: []string{`spec.hcl:2:1: network: network needs at least one interface block, e.g. interface "eth0" { dhcp4 = true }`},
		},
		{
			name: "systemd units",
			src:  "systemd {\n  enable = [\"consul\", \"bad unit\"]\n  mask = [\"consul.service\"]\n}",
			want: []string{
				`spec.hcl:3:23: systemd: "bad unit" is not a systemd unit name`,
				`spec.hcl:4:11: systemd: unit consul.service is in both enable and mask`,
			},
		},
		{
			name: "cloud-init user data",
			src:  "cloud_init {\n  user_data = \"#!/bin/sh\\necho hi\\n\"\n}",
			want: []string{`spec.hcl:3:3: cloud_init: user_data must be #cloud-config YAML to be merged (found "#!/bin/sh"); run scripts with runcmd`},
		},
		{
			name: "layout sizes, enums and grow",
			src:  "layout {\n  table = \"dos\"\n  root_size = \"6XB\"\n  partition \"data\" {\n    size = \"4GiB\"\n    filesystem = \"btrfs\"\n  }\n  partition \"logs\" {\n    size = \"1GiB\"\n    mount = \"data\"\n  }\n  grow = \"dta\"\n}",
			want: []string{
				`spec.hcl:3:3: layout: table = "dos" is not allowed; want "keep", "mbr", "gpt"`,
				`spec.hcl:4:3: layout: root_size: size "6XB": want a number with an optional unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)`,
				`spec.hcl:7:5: partition "data": filesystem = "btrfs" is not allowed; want "ext4", "xfs-at-boot", "none"`,
				`spec.hcl:11:5: partition "logs": mount "data" must be an absolute path inside the image`,
				`spec.hcl:13:3: layout: grow = "dta" names no partition; want "root", "none" or a partition block's name (did you mean "data"?)`,
			},
		},
		{
			name: "grow must be last",
			src:  "layout {\n  partition \"data\" {\n    size = \"4GiB\"\n  }\n  partition \"logs\" {\n    size = 0\n  }\n  grow = \"data\"\n}",
			want: []string{
				`spec.hcl:7:5: partition "logs": size: size must be positive`,
				`spec.hcl:9:3: layout: grow = "data": only the last partition ("logs") can fill the rest of the card`,
			},
		},
		{
			name: "output formats",
			src:  "output {\n  name = \"a/b\"\n  formats = [\"img\", \"zip\", \"img\"]\n}",
			want: []string{
				`spec.hcl:3:3: output: name "a/b" must be a plain file name (letters, digits, '.', '_', '+', '-')`,
				`spec.hcl:4:21: output: format "zip" is not one of img, bmap, sha256, zst, xz, gz, qcow2 (did you mean "zst"?)`,
				`spec.hcl:4:28: output: format "img" is listed twice`,
			},
		},
		{
			name: "ssh values",
			src:  "ssh {\n  port = 70000\n  permit_root_login = \"without-password\"\n}",
			want: []string{
				`spec.hcl:3:3: ssh: port 70000 is out of range (1-65535)`,
				`spec.hcl:4:3: ssh: permit_root_login = "without-password" is not allowed; want "no", "prohibit-password", "yes"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := baseLine + tt.src
			if tt.name == "missing base" {
				src = tt.src
			}
			_, got := parseIn(t, src, tt.files, tt.in)
			if tt.want == nil {
				tt.want = []string{}
			}
			if got == nil {
				got = []string{}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("diagnostics:\n got: %s\nwant: %s", strings.Join(got, "\n      "), strings.Join(tt.want, "\n      "))
			}
		})
	}
}

func TestBaseURLs(t *testing.T) {
	const sum = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	tests := []struct {
		src  string
		want []string
	}{
		{`base { url = "base.img" }`, nil},
		{`base { url = "file:///nonexistent/x.img" }`, []string{`spec.hcl:1:8: warning: base: base image /nonexistent/x.img does not exist (yet)`}},
		{`base { url = "missing.img.xz" }`, []string{`spec.hcl:1:8: warning: base: base image $DIR/missing.img.xz does not exist (yet)`}},
		{`base { url = "https://example.org/x.img.xz" }`, []string{`spec.hcl:1:8: base: a checksum is required for a downloaded base: add checksum = "sha256:..." (published next to the image)`}},
		{"base {\n  url = \"https://example.org/x.img.xz\"\n  checksum = \"" + sum + "\"\n}", nil},
		{"base {\n  url = \"http://example.org/x.img\"\n  checksum = \"md5:abc\"\n}", []string{`spec.hcl:3:3: base: checksum must be "sha256:" followed by 64 hex digits or "sha512:" followed by 128`}},
		{"base {\n  url = \"ftp://example.org/x.img\"\n}", []string{`spec.hcl:2:3: base: unsupported URL scheme "ftp": want https://, http://, file:// or a plain path`}},
		{"base {\n  url = \"https:///x.img\"\n  checksum = \"" + sum + "\"\n}", []string{`spec.hcl:2:3: base: url "https:///x.img" is not a valid https URL`}},
		{"base {}", []string{`spec.hcl:1:6: Missing required argument: The argument "url" is required, but no definition was found.`}},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			_, got := parseIn(t, tt.src, nil, Inputs{})
			if !slices.Equal(got, tt.want) {
				t.Errorf("diagnostics:\n got: %q\nwant: %q", got, tt.want)
			}
		})
	}
}

// TestAllProblemsAtOnce checks that one bad spec reports every problem,
// in file order.
func TestAllProblemsAtOnce(t *testing.T) {
	_, diags := Load(context.Background(), "testdata/bad.hcl", Inputs{})
	abs, _ := filepath.Abs("testdata")
	got := diagLines(diags, abs)
	wantB, err := os.ReadFile("testdata/bad.golden")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Split(strings.TrimSpace(string(wantB)), "\n")
	if !slices.Equal(got, want) {
		t.Errorf("diagnostics differ from testdata/bad.golden:\n%s", strings.Join(got, "\n"))
	}
	if len(diags.Errs()) < 15 {
		t.Errorf("expected many errors at once, got %d", len(diags.Errs()))
	}
}

func TestFullSpec(t *testing.T) {
	s, diags := Load(context.Background(), "testdata/full.hcl", Inputs{Vars: map[string]string{"wifi_psk": "correct horse battery"}})
	if len(diags) > 0 {
		t.Fatalf("unexpected diagnostics:\n%s", strings.Join(diagLines(diags, ""), "\n"))
	}
	abs, _ := filepath.Abs("testdata")
	if s.Dir != abs {
		t.Errorf("Dir = %q, want %q", s.Dir, abs)
	}
	if s.Base.Checksum != "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("checksum not normalised: %q", s.Base.Checksum)
	}
	if p, ok := s.Base.LocalPath(s.Dir); !ok || p != filepath.Join(abs, "base.img") {
		t.Errorf("LocalPath = %q, %v", p, ok)
	}
	if len(s.Users) != 2 {
		t.Fatalf("users: %+v", s.Users)
	}
	ops, svc := s.Users[0], s.Users[1]
	if ops.Name != "ops" || !slices.Equal(ops.Groups, []string{"sudo", "adm"}) || ops.Sudo != SudoPassword || ops.Shell != "/bin/zsh" ||
		ops.UID == nil || *ops.UID != 1500 || ops.Home != "/home/ops" || ops.GECOS != "Operations" || len(ops.SSHAuthorizedKeys) != 1 {
		t.Errorf("user ops: %+v", ops)
	}
	if svc.Home != "/var/lib/svc" || svc.Shell != "/bin/bash" || svc.Sudo != SudoNone || svc.UID != nil {
		t.Errorf("user svc defaults: %+v", svc)
	}
	if !ops.IsSensitive("password_hash") {
		t.Error("password_hash should be sensitive")
	}
	if r := ops.Pos("groups"); r.Start.Line != 36 || r.Start.Column != 3 {
		t.Errorf("groups range = %s", FormatRange(r))
	}
	if r := ops.ElemPos("groups", 1); r.Start.Line != 36 || r.Start.Column != 34 {
		t.Errorf("groups[1] range = %s", FormatRange(r))
	}
	if err := ops.Errorf("groups[1]", "group %q does not exist in the base image", "adm"); err.Error() != `testdata/full.hcl:36:34: user "ops": group "adm" does not exist in the base image` {
		t.Errorf("Errorf = %q", err)
	}
	if s.SSH.Port != 2222 || s.SSH.PermitRootLogin != "prohibit-password" || !s.SSH.Enabled {
		t.Errorf("ssh: %+v", s.SSH)
	}
	if s.Wifi == nil || s.Wifi.PSK != "correct horse battery" || !s.Wifi.Hidden || s.Wifi.Country != "IE" || !s.Wifi.IsSensitive("psk") {
		t.Errorf("wifi: %+v", s.Wifi)
	}
	eth0 := s.Network.Interfaces[0]
	if eth0.DHCP4 || eth0.IPv6 || eth0.Prefix.String() != "192.168.1.10/24" || eth0.GatewayAddr.String() != "192.168.1.1" ||
		!slices.Equal(eth0.DNS, []string{"192.168.1.1", "1.1.1.1"}) || *eth0.RouteMetric != 100 || *eth0.MTU != 1500 {
		t.Errorf("eth0: %+v", eth0)
	}
	if wlan := s.Network.Interfaces[1]; !wlan.DHCP4 || !wlan.IPv6 || wlan.RouteMetric != nil {
		t.Errorf("wlan0 defaults: %+v", wlan)
	}
	if *s.Keyboard != (Keyboard{Layout: "de", Model: "pc105", Variant: "nodeadkeys", Options: "ctrl:nocaps"}) {
		t.Errorf("keyboard: %+v", s.Keyboard)
	}
	files := map[string]File{}
	for _, f := range s.Files {
		files[f.Path] = f
	}
	if f := files["/etc/motd"]; f.Content != "Welcome to LAB\n" || f.Mode.String() != "0644" || f.Owner != "root" {
		t.Errorf("motd: %+v", f)
	}
	if f := files["/etc/greeting"]; f.Content != "Hello node-lab.example.org, you run web db \n" || f.Mode != 0o600 || f.Group != "1000" {
		t.Errorf("greeting: %q %v", f.Content, f.Mode)
	}
	if f := files["/etc/hello"]; f.Source != filepath.Join(abs, "files/hello.txt") {
		t.Errorf("source not resolved: %q", f.Source)
	}
	if f := files["/etc/bin.dat"]; f.Content != "binary\n" {
		t.Errorf("content_base64 not decoded: %q", f.Content)
	}
	if f := files["/etc/site.yaml"]; f.Content != "dns:\n    - 192.168.1.1\n    - 1.1.1.1\nn: 3\nsite: lab\n" {
		t.Errorf("yamlencode: %q", f.Content)
	}
	if d := s.Directories[0]; d.Mode.Unix() != 0o2750 || d.Mode.String() != "2750" || d.Group != "root" {
		t.Errorf("directory: %+v", d)
	}
	if !slices.Equal(s.Systemd.Enable, []string{"consul.service", "nomad.service"}) {
		t.Errorf("systemd: %+v", s.Systemd)
	}
	if !strings.Contains(s.CloudInit.UserData, "runcmd:") {
		t.Errorf("cloud_init: %q", s.CloudInit.UserData)
	}
	l := s.Layout
	if l.Table != TableGPT || l.RootSize != 6<<30 || l.Grow != "scratch" || len(l.Partitions) != 2 {
		t.Fatalf("layout: %+v", l)
	}
	if p := l.Partitions[0]; p.Size != 4<<30 || p.Label != "data" || p.Filesystem != FSExt4 || p.Options != "defaults,noatime" {
		t.Errorf("partition data: %+v", p)
	}
	if p := l.Partitions[1]; p.Size != 1<<30 || p.Label != "scratch1" || p.Filesystem != FSXFSAtBoot || p.Options != "defaults" {
		t.Errorf("partition scratch: %+v", p)
	}
	if s.Golden.Logs || !s.Golden.MachineID || !s.Golden.SSHHostKeys || !s.Golden.ShellHistory || !s.Golden.CloudInitState {
		t.Errorf("golden: %+v", s.Golden)
	}
	if s.Output.Dir != "out" || s.Output.Name != "lab-node" || !s.Output.Has("qcow2") || s.Output.Has("xz") {
		t.Errorf("output: %+v", s.Output)
	}
	if got := s.Variables; len(got) != 3 || got[0].Name != "wifi_psk" || !got[0].Sensitive || got[0].Source != "--var" || got[1].Source != "default" || got[2].Type != "list(string)" {
		t.Errorf("variables: %+v", got)
	}
}

func TestDefaults(t *testing.T) {
	s, diags := parseIn(t, baseLine+"layout {\n  partition \"data\" {\n    size = \"1GiB\"\n  }\n}\n", nil, Inputs{})
	if len(diags) > 0 {
		t.Fatal(diags)
	}
	if s.Hostname != HostnameDHCP || !s.SSH.Enabled || s.SSH.PasswordAuthentication || s.SSH.Declared() || s.SSH.Port != 22 {
		t.Errorf("defaults: hostname %q ssh %+v", s.Hostname, s.SSH)
	}
	if !s.Golden.MachineID || !s.Golden.SSHHostKeys || !s.Golden.CloudInitState || !s.Golden.Logs || !s.Golden.ShellHistory || !s.Golden.RandomSeed {
		t.Errorf("golden defaults: %+v", s.Golden)
	}
	if s.Output.Dir != "output" || s.Output.Name != "node" || !slices.Equal(s.Output.Formats, []string{"img", "bmap", "sha256"}) {
		t.Errorf("output defaults: %+v", s.Output)
	}
	if s.Wifi != nil || s.Network != nil || s.CloudInit != nil || s.Keyboard != nil {
		t.Error("optional blocks should be nil when absent")
	}
	if s.Layout.Table != TableKeep || s.Layout.Grow != "data" {
		t.Errorf("layout defaults: %+v", s.Layout)
	}
	s, _ = parseIn(t, baseLine+"layout {\n  root_size = \"4GiB\"\n}\n", nil, Inputs{})
	if s.Layout.Grow != "root" {
		t.Errorf("grow default without partitions = %q", s.Layout.Grow)
	}
}

func TestVariablePrecedence(t *testing.T) {
	src := `variable "a" {
  default = "default"
}
variable "b" {
  default = "default"
}
variable "c" {
  default = "default"
}
variable "d" {
  default = "default"
}
variable "n" {
  type    = number
  default = 1
}
variable "dns" {
  type    = list(string)
  default = []
}
` + baseLine + `file "/etc/vars" {
  content = "${var.a} ${var.b} ${var.c} ${var.d} ${var.n} ${join(",", var.dns)}"
}
`
	env := map[string]string{
		"BAKERY_VAR_b":   "env",
		"BAKERY_VAR_c":   "env",
		"BAKERY_VAR_d":   "env",
		"BAKERY_VAR_n":   "7",
		"BAKERY_VAR_dns": `["9.9.9.9"]`,
		"BAKERY_VAR_zz":  "ignored: undeclared variables in the environment are not an error",
	}
	in := Inputs{
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		VarFiles:  []string{"one.hcl", "two.json"},
		Vars:      map[string]string{"d": "cli"},
	}
	files := map[string]string{
		"one.hcl":  "c = \"file1\"\nd = \"file1\"\n",
		"two.json": `{"c": "file2", "n": 42}`,
	}
	dir := t.TempDir()
	for name, content := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "base.img"), nil, 0o644)
	for i := range in.VarFiles {
		in.VarFiles[i] = filepath.Join(dir, in.VarFiles[i])
	}
	in.Dir = dir
	s, diags := Parse(context.Background(), "spec.hcl", []byte(src), in)
	if len(diags) > 0 {
		t.Fatal(diagLines(diags, dir))
	}
	if got, want := s.Files[0].Content, "default env file2 cli 42 9.9.9.9"; got != want {
		t.Errorf("content = %q, want %q (default < env < var-file < --var)", got, want)
	}
	sources := map[string]string{}
	for _, v := range s.Variables {
		sources[v.Name] = v.Source
	}
	if sources["a"] != "default" || sources["b"] != "env" || sources["c"] != "var-file "+filepath.Join(dir, "two.json") || sources["d"] != "--var" {
		t.Errorf("sources: %v", sources)
	}
}

func TestVarFileProblems(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "vars.hcl"), []byte("wifi_pks = \"x\"\ncount = \"many\"\n"), 0o644)
	src := "variable \"wifi_psk\" {\n  default = \"\"\n}\nvariable \"count\" {\n  type = number\n  default = 1\n}\n" + baseLine
	_, got := parseIn(t, src, nil, Inputs{VarFiles: []string{filepath.Join(dir, "vars.hcl"), filepath.Join(dir, "nope.hcl")}})
	got2 := strings.Join(got, "\n")
	got2 = strings.ReplaceAll(got2, dir, "$VF")
	want := strings.Join([]string{
		`--var-file $VF/nope.hcl: stat $VF/nope.hcl: no such file or directory`,
		`$VF/vars.hcl:1:1: warning: $VF/vars.hcl sets "wifi_pks", which the spec does not declare; did you mean "wifi_psk"?`,
		`$VF/vars.hcl:2:1: variable "count": the value from var-file $VF/vars.hcl is not a valid number: a number is required`,
	}, "\n")
	if got2 != want {
		t.Errorf("got:\n%s\nwant:\n%s", got2, want)
	}
}

func TestFunctions(t *testing.T) {
	src := baseLine + `locals {
  j = jsondecode("{\"a\": [1, 2]}")
}
file "/a" {
  content = "${base64decode(base64encode("héllo"))} ${jsonencode(local.j)} ${sha256("")} ${format("%03d", 7)} ${lower("AB")} ${join("-", split(",", "x,y"))} ${trimspace("  t ")}"
}
file "/b" {
  content = templatefile("t.tftpl", { items = ["a", "b"] })
}
file "/c" {
  content = base64decode("/w==")
}
file "/d" {
  content = templatefile("bad.tftpl", {})
}
file "/e" {
  content = templatefile("loop.tftpl", {})
}
`
	files := map[string]string{
		"t.tftpl":    "%{ for i in items }[${upper(i)}]%{ endfor }",
		"bad.tftpl":  "line one\n${missing}\n",
		"loop.tftpl": "${templatefile(\"loop.tftpl\", {})}",
	}
	s, got := parseIn(t, src, files, Inputs{})
	want := []string{
		`spec.hcl:12:13: Error in function call: Call to function "base64decode" failed: the decoded bytes are not valid UTF-8 text; for binary files use content_base64 or source.`,
		`spec.hcl:15:13: Error in function call: Call to function "templatefile" failed: $DIR/bad.tftpl:2:3: Unknown variable: There is no variable named "missing".`,
		`spec.hcl:18:13: Error in function call: Call to function "templatefile" failed: $DIR/loop.tftpl:1:3: Call to unknown function: There is no function named "templatefile".`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("diagnostics:\n got: %q\nwant: %q", got, want)
	}
	if c := s.Files[0].Content; c != `héllo {"a":[1,2]} e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 007 ab x-y t` {
		t.Errorf("content = %q", c)
	}
	if c := s.Files[1].Content; c != "[A][B]" {
		t.Errorf("template = %q", c)
	}
}

func TestExamplesValidate(t *testing.T) {
	paths, _ := filepath.Glob("../../examples/*.hcl")
	if len(paths) < 3 {
		t.Fatalf("examples: %v", paths)
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			s, diags := Load(context.Background(), p, Inputs{})
			if diags.HasErrors() {
				t.Fatalf("%s does not validate:\n%s", p, strings.Join(diagLines(diags, ""), "\n"))
			}
			if s.Base == nil || s.Base.URL == "" {
				t.Errorf("%s: no base", p)
			}
			if s.Base.IsRemote() && s.Base.Checksum == "" {
				t.Errorf("%s: remote base without checksum", p)
			}
		})
	}
}
