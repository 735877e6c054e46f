package build

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bakeryhq/bakery/internal/demo"
	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fetch"
	"github.com/bakeryhq/bakery/internal/spec"
	"github.com/bakeryhq/bakery/internal/testimage"
)

// testDir holds what the package's tests share: demo bases and the
// fetch cache (so each base is hashed once per test binary).
var (
	testDir   string
	baseMu    sync.Mutex
	baseCache = map[string]string{}
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "bakery-build-test-")
	if err != nil {
		panic(err)
	}
	testDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// demoBase returns a demo base image (640 MiB, made once per table type).
func demoBase(t testing.TB, table string) string {
	t.Helper()
	baseMu.Lock()
	defer baseMu.Unlock()
	if p, ok := baseCache[table]; ok {
		return p
	}
	p := filepath.Join(testDir, "demo-"+table+".img")
	if err := demo.Build(context.Background(), p, demo.Options{Size: 640 << 20, Table: table}); err != nil {
		t.Fatal(err)
	}
	baseCache[table] = p
	return p
}

// loadSpec writes an HCL spec into a new directory and loads it; %BASE%
// is replaced by the base path.
func loadSpec(t testing.TB, base, src string, files map[string]string) *spec.Spec {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "spec.hcl")
	src = strings.ReplaceAll(src, "%BASE%", base)
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	s, diags := spec.Load(context.Background(), path, spec.Inputs{})
	if diags.HasErrors() {
		t.Fatalf("spec: %v", diags)
	}
	return s
}

// logBuffer captures a build's log, redacted as the CLI does.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runBuild builds s into a new output directory with the shared cache.
func runBuild(t testing.TB, s *spec.Spec, mod ...func(*Options)) (*Result, string, *logBuffer, error) {
	t.Helper()
	out := t.TempDir()
	logs := &logBuffer{}
	h := slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})
	epoch := int64(1732017600) // 2024-11-19 12:00 UTC
	opts := Options{OutDir: out, CacheDir: filepath.Join(testDir, "cache"), Logger: slog.New(s.Redactor().Handler(h)),
		SourceDateEpoch: &epoch, Fetcher: &fetch.Fetcher{MaxAttempts: 1}}
	for _, m := range mod {
		m(&opts)
	}
	res, err := Run(context.Background(), s, opts)
	return res, out, logs, err
}

func mustBuild(t testing.TB, s *spec.Spec, mod ...func(*Options)) (*Result, string) {
	t.Helper()
	res, out, logs, err := runBuild(t, s, mod...)
	if err != nil {
		t.Fatalf("build: %v\nlog:\n%s", err, logs)
	}
	return res, out
}

// parts extracts the partitions of a built image for the oracles.
type parts struct {
	img   string
	table *disk.Table
	root  string // ext4 image file
	boot  string // FAT image file ("" when none)
}

func extract(t testing.TB, img string, rootIndex int) *parts {
	t.Helper()
	d, err := disk.Open(img, disk.OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := d.ReadTable()
	d.Close()
	if err != nil {
		t.Fatal(err)
	}
	p := &parts{img: img, table: tbl}
	for _, part := range tbl.Partitions {
		switch {
		case part.Index == rootIndex:
			p.root = testimage.Extract(t, img, part.Start, part.Size)
		case part.Index == 1 && rootIndex != 1:
			p.boot = testimage.Extract(t, img, part.Start, part.Size)
		}
	}
	return p
}

// cat reads a file from the root filesystem with debugfs.
func (p *parts) cat(t testing.TB, path string) string {
	t.Helper()
	return testimage.Debugfs(t, p.root, "cat "+path)
}

// stat returns debugfs's stat output for a path.
func (p *parts) stat(t testing.TB, path string) string {
	t.Helper()
	return testimage.Debugfs(t, p.root, "stat "+path)
}

// exists asks debugfs whether a path exists (without following links).
func (p *parts) exists(t testing.TB, path string) bool {
	t.Helper()
	out, _ := exec.Command("debugfs", "-R", "stat "+path, p.root).CombinedOutput()
	return !strings.Contains(string(out), "File not found")
}

// readlink returns a symlink's target via debugfs.
func (p *parts) readlink(t testing.TB, path string) string {
	t.Helper()
	out := p.stat(t, path)
	i := strings.Index(out, "Fast link dest: ")
	if i < 0 {
		t.Fatalf("%s is not a fast symlink:\n%s", path, out)
	}
	rest := out[i+len("Fast link dest: "):]
	rest, _, _ = strings.Cut(rest, "\n")
	return strings.Trim(rest, `"`)
}

// rdump copies a directory of the root filesystem to the host.
func (p *parts) rdump(t testing.TB, path string) string {
	t.Helper()
	dst := t.TempDir()
	testimage.Run(t, "debugfs", "-R", fmt.Sprintf("rdump %s %s", path, dst), p.root)
	return filepath.Join(dst, filepath.Base(path))
}

func need(t testing.TB, tools ...string) { testimage.Need(t, tools...) }

// demoSpec is a spec exercising every block on the demo base.
const demoSpec = `
variable "psk" {
  type      = string
  default   = "correct horse battery staple"
  sensitive = true
}
base { url = "%BASE%" }
hostname = "dhcp"
user "ops" {
  groups              = ["sudo", "adm"]
  ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBCXaPwpZnwpU5R9XKILX5TrmmS3Jp9mmgCIFsKZWYOG ops@example"]
  sudo                = "nopasswd"
}
user "dev" {
  password_hash = "$6$rounds=5000$saltsalt$Y3EVHgwe7v3H9wX0w.Xb2z0t7yZb0mP0aYxqZ4y2l0g4k3z9QpV3m1yJ4m7QbUq5zR8s1c2d3e4f5g6h7i8j9k0"
  sudo          = "password"
  shell         = "/bin/sh"
}
ssh {
  password_authentication = false
  port                    = 2222
}
wifi {
  ssid    = "farm net"
  psk     = var.psk
  country = "IE"
  hidden  = true
}
network {
  interface "eth0" {
    address      = "192.168.1.10/24"
    gateway      = "192.168.1.1"
    dns          = ["192.168.1.1", "2001:db8::53"]
    search       = ["lab.example"]
    route_metric = 100
    ipv6         = false
  }
}
timezone = "Europe/Dublin"
locale   = "en_IE.UTF-8"
keyboard = { layout = "de", variant = "nodeadkeys", options = "ctrl:nocaps" }
file "/etc/motd" {
  content = "hello\n"
}
file "/opt/app/bin/tool" {
  source = "tool.bin"
  mode   = "0755"
  owner  = "ops"
  group  = "adm"
}
directory "/srv/data" {
  mode  = "0750"
  owner = "ops"
}
symlink "/srv/current" {
  target = "/srv/data"
}
systemd {
  enable  = ["systemd-resolved"]
  disable = ["bluetooth", "not-there.service"]
  mask    = ["apt-daily.timer"]
}
packages = ["htop", "jq=1.6-2.1"]
cloud_init {
  user_data = <<-EOT
    #cloud-config
    runcmd:
      - [touch, /var/lib/first-boot-done]
    write_files:
      - path: /etc/bakery-note
        content: hi
  EOT
}
output {
  name    = "node"
  formats = ["img", "bmap", "sha256"]
}
`

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
