package bundle

import (
	"fmt"
	iofs "io/fs"
	"slices"
	"strings"

	"github.com/bakeryhq/bakery/internal/fs"
)

// EntryKind says what an Entry creates.
type EntryKind int

// Entry kinds.
const (
	KindDir EntryKind = iota
	KindFile
)

// Entry is one directory or file of a bundle's layout (besides the
// binary).
type Entry struct {
	Path    string
	Kind    EntryKind
	Content []byte
	Mode    iofs.FileMode
	// Owner and Group are names resolved in the target root ("root" or
	// the bundle's system user).
	Owner, Group string
	// Config marks configuration files an administrator may edit (deb
	// conffiles, rpm %config(noreplace)).
	Config bool
}

// SystemUser is the account a bundle's service runs as.
type SystemUser struct {
	Name, Group string
	Home        string
	Comment     string
	// ExtraGroups the user is added to (supplementary).
	ExtraGroups []string
}

// Layout is everything one bundle puts on a system, independent of where
// it goes (an image root, a package).
type Layout struct {
	Product  Product
	Settings Settings
	// BinaryPath is where the executable goes (/usr/bin/NAME, 0755).
	BinaryPath string
	// User is created before anything is chowned (nil for none).
	User *SystemUser
	// Entries are created in order: directories first, then files.
	Entries []Entry
	// Unit is the systemd unit file's content; UnitPath where it goes.
	Unit     []byte
	UnitPath string
	// Tmpfiles holds a tmpfiles.d line set creating the bundle's /run
	// directories at every boot (empty for none); TmpfilesPath where.
	Tmpfiles     []byte
	TmpfilesPath string
	// RuntimeDirs are the /run directories Tmpfiles creates, for
	// maintainer scripts that must create them before the next boot.
	RuntimeDirs []Entry
}

// LayoutOptions say where units go.
type LayoutOptions struct {
	// UnitDir is /etc/systemd/system for images (an administrator's
	// unit) and /lib/systemd/system or /usr/lib/systemd/system for
	// packages.
	UnitDir string
	// TmpfilesDir is /etc/tmpfiles.d for images, /usr/lib/tmpfiles.d
	// for packages.
	TmpfilesDir string
}

// ImageLayoutOptions are the options for installing into an image.
var ImageLayoutOptions = LayoutOptions{UnitDir: "/etc/systemd/system", TmpfilesDir: "/etc/tmpfiles.d"}

// Layouts renders every bundle of a normalized plan.
func (p *Plan) Layouts(opts LayoutOptions) ([]*Layout, error) {
	var out []*Layout
	for _, s := range p.Bundles {
		l, err := p.Layout(s.Name, opts)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// Layout renders one bundle of a normalized plan.
func (p *Plan) Layout(name string, opts LayoutOptions) (*Layout, error) {
	s := p.Get(name)
	if s == nil {
		return nil, fmt.Errorf("bundle %q is not in the plan", name)
	}
	prod, err := Lookup(name)
	if err != nil {
		return nil, err
	}
	if opts.UnitDir == "" {
		opts = ImageLayoutOptions
	}
	l := &Layout{Product: prod, Settings: *s, BinaryPath: "/usr/bin/" + prod.Binary,
		UnitPath: opts.UnitDir + "/" + prod.Unit}
	if prod.User != "root" {
		l.User = &SystemUser{Name: prod.User, Group: prod.Group, Home: prod.DataDir, Comment: prod.Name + " service"}
	}
	dir := func(path string, mode iofs.FileMode, owner, group string) {
		l.Entries = append(l.Entries, Entry{Path: path, Kind: KindDir, Mode: mode, Owner: owner, Group: group})
	}
	file := func(path string, content []byte, mode iofs.FileMode, owner, group string, config bool) {
		l.Entries = append(l.Entries, Entry{Path: path, Kind: KindFile, Content: content, Mode: mode, Owner: owner, Group: group, Config: config})
	}
	user, group := prod.User, prod.Group
	// Configuration is root's and readable by the service's group: the
	// service cannot rewrite its own configuration.
	if prod.DataDir != "" {
		dir(prod.DataDir, 0o750, user, group)
		if user == "root" {
			l.Entries[len(l.Entries)-1].Mode = 0o700
		}
	}
	dir(prod.ConfigDir, 0o750, "root", group)

	var runDirs []Entry
	runDir := func(path string, mode iofs.FileMode, owner, group string) {
		runDirs = append(runDirs, Entry{Path: path, Kind: KindDir, Mode: mode, Owner: owner, Group: group})
	}
	unit := unitSpec{prod: prod, user: user, group: group}
	// tlsCA installs the cluster CA (public) where Consul's and Nomad's
	// configurations point, beside the certificates Vault Agent renders.
	tlsCA := func() {
		if len(s.CACert) > 0 {
			dir(prod.ConfigDir+"/tls", 0o750, "root", group)
			file(prod.ConfigDir+"/tls/ca.pem", s.CACert, 0o644, "root", "root", true)
		}
	}

	switch name {
	case "consul":
		cfg, req, err := p.consulConfig(s)
		if err != nil {
			return nil, err
		}
		tlsCA()
		file(prod.ConfigDir+"/consul.hcl", cfg, 0o640, "root", group, true)
		unit.exec = "/usr/bin/consul agent -config-dir=" + prod.ConfigDir
		unit.notify = true
		unit.reload = true
		unit.writable = []string{prod.DataDir}
		if s.Secrets != SecretsNone {
			// Vault Agent (root) renders into a setgid directory so the
			// files it creates belong to the consul group.
			runDir("/run/consul.d", 0o750|iofs.ModeSetgid, "root", group)
			runDir(consulFilesDir, 0o750|iofs.ModeSetgid, "root", group)
			unit.exec += " -config-dir=/run/consul.d"
			unit.waitFor = req
		}
		if p.Has("vault-agent") {
			unit.after = append(unit.after, "vault-agent.service")
		}
	case "nomad":
		cfg, req, err := p.nomadConfig(s)
		if err != nil {
			return nil, err
		}
		tlsCA()
		file(prod.ConfigDir+"/nomad.hcl", cfg, 0o640, "root", group, true)
		unit.exec = "/usr/bin/nomad agent -config=" + prod.ConfigDir
		unit.reload = true
		unit.writable = []string{prod.DataDir}
		if len(req) > 0 {
			runDir(nomadRunDir, 0o750|iofs.ModeSetgid, "root", group)
			if len(s.CACert) > 0 {
				runDir(nomadRunDir+"/tls", 0o750|iofs.ModeSetgid, "root", group)
			}
			unit.exec += " -config=/run/nomad.d"
			unit.waitFor = req
		}
		if s.Role == "client" {
			// Clients run tasks: they need root, cgroups and mounts.
			unit.user, unit.group = "root", "root"
			unit.nomadClient = true
			l.Entries[0].Owner, l.Entries[0].Group = "root", "root"
			l.Entries[0].Mode = 0o711
		}
		if p.Has("vault-agent") {
			unit.after = append(unit.after, "vault-agent.service")
		}
		if p.Has("consul") {
			unit.after = append(unit.after, "consul.service")
		}
	case "vault-agent":
		cfg, err := p.vaultAgentConfig(s)
		if err != nil {
			return nil, err
		}
		if len(s.CACert) > 0 {
			file(prod.ConfigDir+"/ca.pem", s.CACert, 0o644, "root", "root", true)
		}
		// The role_id is an identifier, not a credential; still, only
		// root needs it.
		file(prod.ConfigDir+"/role-id", []byte(s.RoleID+"\n"), 0o600, "root", "root", true)
		file(prod.ConfigDir+"/agent.hcl", cfg, 0o600, "root", "root", true)
		// Root: templates restart consul and nomad, and write into their
		// /run directories. The sandbox below limits what it may write.
		unit.user, unit.group = "root", "root"
		unit.exec = "/usr/bin/vault agent -config=" + prod.ConfigDir + "/agent.hcl"
		unit.reload = true
		runDir("/run/vault-agent", 0o700, "root", "root")
		unit.writable = []string{prod.DataDir, "/run/vault-agent", consulRunDir, nomadRunDir, prometheusRunDir, fs.Dir(s.SecretIDFile)}
		for _, t := range s.CustomTemplates {
			unit.writable = append(unit.writable, fs.Dir(t.Destination))
		}
		unit.vaultAgent = true
		unit.before = []string{"consul.service", "nomad.service"}
		if p.Netboot {
			unit.after = append(unit.after, "bakery-credential.service")
			unit.wants = append(unit.wants, "bakery-credential.service")
		}
		unit.secretIDFile = s.SecretIDFile
	case "consul-template":
		file(prod.ConfigDir+"/consul-template.hcl", p.consulTemplateConfig(s), 0o640, "root", group, true)
		runDir("/run/consul-template", 0o750, user, group)
		unit.exec = "/usr/bin/consul-template -config=" + prod.ConfigDir
		unit.reload = true
		unit.writable = []string{prod.DataDir, "/run/consul-template"}
		if p.Has("consul") {
			unit.after = append(unit.after, "consul.service")
		}
	case "prometheus":
		file(prod.ConfigDir+"/prometheus.yml", p.prometheusConfig(s), 0o640, "root", group, true)
		unit.exec = "/usr/bin/prometheus --config.file=" + prod.ConfigDir + "/prometheus.yml --storage.tsdb.path=" + prod.DataDir + " --web.listen-address=:9090"
		unit.reload = true
		unit.writable = []string{prod.DataDir}
		if p.hasTemplate(TplPrometheusConsulToken) {
			// Vault Agent (root) renders Prometheus' Consul token here;
			// setgid makes it group prometheus. Prometheus does not wait
			// for it: it scrapes itself meanwhile, and discovery retries.
			runDir(prometheusRunDir, 0o750|iofs.ModeSetgid, "root", group)
			unit.after = append(unit.after, "vault-agent.service")
		}
		if p.Has("consul") {
			unit.after = append(unit.after, "consul.service")
		}
	case "node_exporter":
		dir(prod.DataDir+"/textfile_collector", 0o755, user, group)
		unit.exec = "/usr/bin/node_exporter --collector.textfile.directory=" + prod.DataDir + "/textfile_collector"
		unit.writable = nil
		if p.Has("consul") {
			// Registered as a Consul service so Prometheus finds it. With
			// Consul's ACLs on, Consul registers it with the token of
			// acl.tokens.config_file_service_registration, which Vault
			// Agent renders into /run/consul.d/registration.hcl.
			file("/etc/consul.d/node-exporter.hcl", nodeExporterService(), 0o640, "root", "consul", true)
		}
	}
	if s.ExtraConfig != "" {
		if name == "prometheus" {
			return nil, fmt.Errorf("bundle %q: extra_config is HCL and Prometheus is configured in YAML", name)
		}
		if err := CheckHCLSyntax(prod.ConfigDir+"/extra.hcl", []byte(s.ExtraConfig)); err != nil {
			return nil, fmt.Errorf("bundle %q: extra_config: %w", name, err)
		}
		file(prod.ConfigDir+"/extra.hcl", []byte(s.ExtraConfig), 0o640, "root", group, true)
	}
	l.Unit = unit.render()
	if len(runDirs) > 0 {
		l.RuntimeDirs = runDirs
		l.TmpfilesPath = opts.TmpfilesDir + "/" + prod.Name + ".conf"
		l.Tmpfiles = tmpfiles(prod, runDirs)
	}
	return l, nil
}

func tmpfiles(prod Product, dirs []Entry) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s: runtime directories (tmpfs), created at every boot. Written by bakery.\n", prod.Name)
	for _, d := range dirs {
		fmt.Fprintf(&b, "d %s %04o %s %s -\n", d.Path, fs.UnixPerm(d.Mode), d.Owner, d.Group)
	}
	return []byte(b.String())
}

func nodeExporterService() []byte {
	f, b := newHCLFile()
	b.comment("node_exporter, registered in Consul so that Prometheus finds it (consul_sd_configs).")
	svc := b.block("service")
	svc.str("name", "node-exporter")
	svc.num("port", 9100)
	svc.strs("tags", []string{"metrics"})
	chk := svc.block("check")
	chk.str("id", "node-exporter-http")
	chk.str("http", "http://127.0.0.1:9100/metrics")
	chk.str("interval", "30s")
	chk.str("timeout", "5s")
	return hclBytes(f)
}

// templatesFor returns the built-in Vault Agent templates the plan needs.
func (p *Plan) templatesFor() []string {
	va := p.Get("vault-agent")
	if va == nil {
		return nil
	}
	if len(va.Templates) > 0 {
		return va.Templates
	}
	var t []string
	c := p.Get("consul")
	// Consul denies by default when it gets ACL tokens: then Nomad,
	// Prometheus and the services of Consul's configuration files need
	// tokens too.
	acls := c != nil && (c.Secrets == SecretsVaultAgent || c.Secrets == SecretsAutoConfig)
	if c != nil {
		switch {
		case c.Secrets == SecretsVaultAgent, c.Secrets == SecretsAutoConfig && c.Role == "server":
			t = append(t, TplConsulGossip, TplConsulToken)
			if va.ConsulPKIPath != "" {
				t = append(t, TplConsulTLS)
			}
			if c.Secrets == SecretsAutoConfig {
				t = append(t, TplConsulAuthorizer)
			}
		case c.Secrets == SecretsAutoConfig:
			t = append(t, TplConsulIntro)
		}
		if acls && p.Has("node_exporter") {
			t = append(t, TplConsulRegistration)
		}
	}
	if n := p.Get("nomad"); n != nil {
		if n.Role == "server" {
			t = append(t, TplNomadGossip)
		}
		if va.NomadPKIPath != "" {
			t = append(t, TplNomadTLS)
		}
		if acls {
			t = append(t, TplNomadConsulToken)
		}
	}
	if acls && p.Has("prometheus") {
		t = append(t, TplPrometheusConsulToken)
	}
	return t
}

func (p *Plan) hasTemplate(name string) bool { return slices.Contains(p.templatesFor(), name) }
