package bundle_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/bundle/bundletest"
	"github.com/bakeryhq/bakery/internal/secretscan"
	"github.com/bakeryhq/bakery/internal/testimage"
)

const testCA = "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIUTEST\n-----END CERTIFICATE-----\n"

// clusterPlan is a client node with every bundle.
func clusterPlan(mirror *bundletest.Mirror) *bundle.Plan {
	common := func(s bundle.Settings) bundle.Settings {
		s.Mirror = mirror.Template()
		s.PGPKey = mirror.Key.Armored
		return s
	}
	return &bundle.Plan{Bundles: []bundle.Settings{
		common(bundle.Settings{Name: "nomad", Version: "1.9.3", Role: "client", Datacenter: "home", RetryJoin: []string{"nomad-1.home", "nomad-2.home"}}),
		common(bundle.Settings{Name: "consul", Version: "1.20.1", Role: "client", Datacenter: "home",
			RetryJoin: []string{"provider=mdns service=consul-server"}, CACert: []byte(testCA)}),
		common(bundle.Settings{Name: "vault-agent", Version: "1.18.2", VaultAddr: "https://vault.home:8200",
			RoleID: "6a1f7a3c-2b1d-4f0e-9c3b-1e2d3c4b5a69", CACert: []byte(testCA), ConsulPKIPath: "pki_int/issue/consul"}),
		common(bundle.Settings{Name: "consul-template", Version: "0.39.1"}),
		common(bundle.Settings{Name: "prometheus", Version: "3.0.1"}),
		common(bundle.Settings{Name: "node_exporter", Version: "1.8.2"}),
	}}
}

func publishAll(t *testing.T, m *bundletest.Mirror, arch bundle.Arch) {
	for _, r := range []struct{ name, version string }{
		{"consul", "1.20.1"}, {"nomad", "1.9.3"}, {"vault-agent", "1.18.2"}, {"consul-template", "0.39.1"},
		{"prometheus", "3.0.1"}, {"node_exporter", "1.8.2"},
	} {
		m.Release(t, r.name, r.version, []bundle.Arch{arch}, nil)
	}
}

func TestInstallIntoExt4(t *testing.T) {
	testimage.Need(t, "systemd-analyze")
	m := bundletest.NewMirror(t)
	publishAll(t, m, bundle.ArchARM64)
	root, img := ext4Root(t, debianTree(t, bundle.ArchARM64))
	arch, err := bundle.DetectArch(root)
	if err != nil {
		t.Fatal(err)
	}
	plan := clusterPlan(m)
	if err := plan.Normalize(); err != nil {
		t.Fatal(err)
	}
	src := newSource(t)
	arts := map[string]*bundle.Artifact{}
	for _, s := range plan.Bundles {
		a, err := src.Fetch(context.Background(), s, arch)
		if err != nil {
			t.Fatal(err)
		}
		arts[s.Name] = a
	}
	mtime := time.Unix(1700000000, 0).UTC()
	inst, err := bundle.Install(context.Background(), root, plan, arts, bundle.InstallOptions{ModTime: mtime})
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{inst[0].Name, inst[1].Name}; got[0] != "vault-agent" || got[1] != "consul" {
		t.Errorf("install order %v, want vault-agent first, then consul", got)
	}
	if err := root.Close(); err != nil {
		t.Fatal(err)
	}
	testimage.E2fsck(t, img)

	ds := func(req string) string { return testimage.Debugfs(t, img, req) }
	// Binaries: 0755 root.
	for _, b := range []string{"consul", "nomad", "vault", "consul-template", "prometheus", "node_exporter"} {
		st := ds("stat /usr/bin/" + b)
		if !strings.Contains(st, "Mode:  0755") || !strings.Contains(st, "User:     0") {
			t.Errorf("/usr/bin/%s:\n%s", b, st)
		}
	}
	// Users: system ids, nologin, locked.
	passwd := ds("cat /etc/passwd")
	uidOf := map[string]string{}
	for _, u := range []string{"consul", "nomad", "consul-template", "prometheus", "node_exporter"} {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(u) + `:x:(\d+):(\d+):[^:]*:([^:]*):/usr/sbin/nologin$`)
		mm := re.FindStringSubmatch(passwd)
		if mm == nil {
			t.Fatalf("no system user %s in /etc/passwd:\n%s", u, passwd)
		}
		if len(mm[1]) > 3 {
			t.Errorf("%s has uid %s, outside the system range", u, mm[1])
		}
		uidOf[u] = mm[1]
	}
	if strings.Contains(passwd, "vault:") {
		t.Error("vault-agent runs as root and needs no account")
	}
	if !strings.Contains(ds("cat /etc/shadow"), "consul:!:") {
		t.Error("consul's password is not locked in /etc/shadow")
	}
	if !regexp.MustCompile(`(?m)^consul:x:\d+:$`).MatchString(ds("cat /etc/group")) {
		t.Error("no consul group")
	}
	// Owners and modes of data and config directories.
	st := ds("stat /var/lib/consul")
	if !strings.Contains(st, "User:   "+uidOf["consul"]) || !strings.Contains(st, "Mode:  0750") {
		t.Errorf("/var/lib/consul:\n%s", st)
	}
	st = ds("stat /etc/consul.d/consul.hcl")
	if !strings.Contains(st, "User:     0") || !strings.Contains(st, "Mode:  0640") {
		t.Errorf("/etc/consul.d/consul.hcl:\n%s", st)
	}
	if st := ds("stat /etc/vault-agent.d/agent.hcl"); !strings.Contains(st, "Mode:  0600") {
		t.Errorf("agent.hcl:\n%s", st)
	}
	// Enablement symlinks.
	wants := ds("ls -l /etc/systemd/system/multi-user.target.wants")
	for _, u := range []string{"consul.service", "nomad.service", "vault-agent.service", "consul-template.service", "prometheus.service", "node_exporter.service"} {
		if !strings.Contains(wants, u) {
			t.Errorf("%s is not enabled:\n%s", u, wants)
		}
	}
	if tgt := ds("stat /etc/systemd/system/multi-user.target.wants/consul.service"); !strings.Contains(tgt, `Fast link dest: "/etc/systemd/system/consul.service"`) {
		t.Errorf("enablement link:\n%s", tgt)
	}
	tmpf := ds("cat /etc/tmpfiles.d/consul.conf")
	if !strings.Contains(tmpf, "d /run/consul.d 2750 root consul -") {
		t.Errorf("tmpfiles:\n%s", tmpf)
	}
	for conf, want := range map[string]string{"nomad": "d /run/nomad.d 2750 root nomad -", "prometheus": "d /run/prometheus 2750 root prometheus -"} {
		if tf := ds("cat /etc/tmpfiles.d/" + conf + ".conf"); !strings.Contains(tf, want) {
			t.Errorf("%s tmpfiles:\n%s", conf, tf)
		}
	}

	// systemd-analyze verify on the extracted units, inside the extracted
	// root so that ExecStart binaries resolve.
	tree := t.TempDir()
	for _, d := range []string{"/etc", "/usr", "/var"} {
		out := rdump(t, img, d)
		if err := os.Rename(filepath.Join(out, filepath.Base(d)), filepath.Join(tree, filepath.Base(d))); err != nil {
			t.Fatal(err)
		}
	}
	// No secret went into the image: bakery audit's scanner over every
	// text file of /etc, /usr and /var.
	scanned := 0
	filepath.WalkDir(tree, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil || secretscan.IsBinary(b) {
			return err
		}
		scanned++
		for _, f := range secretscan.Text(string(b)) {
			t.Errorf("%s holds %s (%s)", strings.TrimPrefix(p, tree), f.Describe(), f.Excerpt)
		}
		return nil
	})
	if scanned < 10 {
		t.Errorf("only %d text files scanned for secrets", scanned)
	}
	hostSystemd(t, tree)
	for _, u := range []string{"consul.service", "nomad.service", "vault-agent.service", "consul-template.service", "prometheus.service", "node_exporter.service"} {
		cmd := exec.Command("systemd-analyze", "verify", "--root="+tree, "--man=no", filepath.Join(tree, "etc/systemd/system", u))
		out, err := cmd.CombinedOutput()
		// Units we order against but that are not in this tiny root
		// (network-online.target) are reported as missing; nothing else
		// may be.
		var bad []string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line == "" || strings.Contains(line, "network-online.target") || strings.Contains(line, "multi-user.target") ||
				strings.Contains(line, "bakery-credential.service") || strings.Contains(line, "Failed to prepare filename") ||
				strings.Contains(line, "ancestor") {
				continue
			}
			bad = append(bad, line)
		}
		if len(bad) > 0 {
			t.Errorf("systemd-analyze verify %s (%v):\n%s", u, err, strings.Join(bad, "\n"))
		}
	}
}

// hostSystemd gives an extracted root the host's systemd units and the
// few host tools our units call, so that systemd-analyze verify --root
// can resolve the targets and commands they refer to.
func hostSystemd(t *testing.T, tree string) {
	t.Helper()
	dst := filepath.Join(tree, "usr/lib/systemd/system")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	testimage.Run(t, "cp", "-a", "/usr/lib/systemd/system/.", dst)
	for _, tool := range []string{"/usr/bin/test", "/bin/kill", "/usr/bin/systemctl", "/usr/bin/curl"} {
		real, err := filepath.EvalSymlinks(tool)
		if err != nil {
			continue
		}
		p := filepath.Join(tree, tool)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		testimage.Run(t, "cp", real, p)
	}
}
