package bundle

import (
	"bytes"
	"context"
	"fmt"
	iofs "io/fs"
	"os"
	"strconv"
	"time"

	"github.com/bakeryhq/bakery/internal/accounts"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/systemd"
)

// NologinShell is the shell of service accounts.
const NologinShell = "/usr/sbin/nologin"

// InstallOptions tune Install.
type InstallOptions struct {
	// ModTime stamps everything written (zero: the filesystem default,
	// which the build sets from SOURCE_DATE_EPOCH).
	ModTime time.Time
}

// Installed reports what Install did for one bundle.
type Installed struct {
	Name    string
	Version string
	Binary  string
	Unit    string
	User    string
	UID     uint32
	GID     uint32
	Files   []string
}

// Install puts the normalized plan's bundles into root: binaries from
// artifacts (by bundle name), users and groups, directories, configuration,
// units (enabled), tmpfiles.d entries and, for netboot, the credential
// fetcher. Bundles are installed in start order.
func Install(ctx context.Context, root fs.Filesystem, plan *Plan, artifacts map[string]*Artifact, opts InstallOptions) ([]Installed, error) {
	layouts, err := plan.Layouts(ImageLayoutOptions)
	if err != nil {
		return nil, err
	}
	db, err := accounts.LoadDB(root)
	if err != nil {
		return nil, fmt.Errorf("install bundles: %w", err)
	}
	shell := NologinShell
	if _, err := root.Stat(NologinShell); err != nil {
		if _, err2 := root.Stat("/sbin/nologin"); err2 == nil {
			shell = "/sbin/nologin"
		}
	}
	var out []Installed
	for _, l := range layouts {
		if l.User == nil {
			continue
		}
		u, _, err := db.EnsureUser(accounts.NewUser{Name: l.User.Name, System: true, GECOS: l.User.Comment,
			Home: l.User.Home, Shell: shell, LastChange: opts.ModTime})
		if err != nil {
			return nil, fmt.Errorf("bundle %q: user %s: %w", l.Product.Name, l.User.Name, err)
		}
		_ = u
	}
	if err := db.Save(root, opts.ModTime); err != nil {
		return nil, err
	}
	ids := func(owner, group string) (uint32, uint32, error) {
		uid, gid := uint32(0), uint32(0)
		if owner != "root" {
			u, ok := db.LookupUser(owner)
			if !ok {
				return 0, 0, fmt.Errorf("no user %q", owner)
			}
			uid = u.UID
		}
		if group != "root" {
			g, ok := db.GroupID(group)
			if !ok {
				return 0, 0, fmt.Errorf("no group %q (is its bundle missing?)", group)
			}
			gid = g
		}
		return uid, gid, nil
	}
	for _, l := range layouts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		art := artifacts[l.Product.Name]
		if art == nil {
			return nil, fmt.Errorf("bundle %q: no verified release to install", l.Product.Name)
		}
		inst := Installed{Name: l.Product.Name, Version: l.Settings.Version, Binary: l.BinaryPath, Unit: l.Product.Unit}
		if l.User != nil {
			u, _ := db.LookupUser(l.User.Name)
			inst.User, inst.UID, inst.GID = u.Name, u.UID, u.GID
		}
		if err := installBinary(root, art.BinaryPath, l.BinaryPath, opts.ModTime); err != nil {
			return nil, fmt.Errorf("bundle %q: %w", l.Product.Name, err)
		}
		for _, e := range l.Entries {
			uid, gid, err := ids(e.Owner, e.Group)
			if err != nil {
				return nil, fmt.Errorf("bundle %q: %s: %w", l.Product.Name, e.Path, err)
			}
			attr := fs.Attr{Mode: e.Mode, UID: uid, GID: gid, ModTime: opts.ModTime}
			if err := writeEntry(root, e, attr); err != nil {
				return nil, fmt.Errorf("bundle %q: %w", l.Product.Name, err)
			}
			inst.Files = append(inst.Files, e.Path)
		}
		if err := mkParents(root, l.UnitPath, opts.ModTime); err != nil {
			return nil, err
		}
		if err := root.WriteFile(l.UnitPath, bytes.NewReader(l.Unit), fs.Attr{Mode: 0o644, ModTime: opts.ModTime}); err != nil {
			return nil, fmt.Errorf("bundle %q: write %s: %w", l.Product.Name, l.UnitPath, err)
		}
		if len(l.Tmpfiles) > 0 {
			if err := mkParents(root, l.TmpfilesPath, opts.ModTime); err != nil {
				return nil, err
			}
			if err := root.WriteFile(l.TmpfilesPath, bytes.NewReader(l.Tmpfiles), fs.Attr{Mode: 0o644, ModTime: opts.ModTime}); err != nil {
				return nil, fmt.Errorf("bundle %q: write %s: %w", l.Product.Name, l.TmpfilesPath, err)
			}
		}
		if _, err := systemd.Enable(root, l.Product.Unit); err != nil {
			return nil, fmt.Errorf("bundle %q: enable %s: %w", l.Product.Name, l.Product.Unit, err)
		}
		out = append(out, inst)
	}
	if plan.Netboot && plan.Has("vault-agent") {
		if err := installCredentialFetcher(root, plan, opts.ModTime); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func installBinary(root fs.Filesystem, src, dst string, mtime time.Time) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := mkParents(root, dst, mtime); err != nil {
		return err
	}
	if err := root.WriteFile(dst, f, fs.Attr{Mode: 0o755, ModTime: mtime}); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}

func mkParents(root fs.Filesystem, p string, mtime time.Time) error {
	if d := fs.Dir(p); d != "/" {
		if err := root.MkdirAll(d, fs.Attr{Mode: 0o755, ModTime: mtime}); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	return nil
}

// writeEntry creates a directory (or sets an existing one's owner and
// mode, so that reinstalling converges) or writes a file.
func writeEntry(root fs.Filesystem, e Entry, attr fs.Attr) error {
	if err := mkParents(root, e.Path, attr.ModTime); err != nil {
		return err
	}
	switch e.Kind {
	case KindDir:
		if err := root.MkdirAll(e.Path, attr); err != nil {
			return fmt.Errorf("create %s: %w", e.Path, err)
		}
		if err := root.Chown(e.Path, attr.UID, attr.GID); err != nil {
			return fmt.Errorf("chown %s: %w", e.Path, err)
		}
		if err := root.Chmod(e.Path, attr.Mode); err != nil {
			return fmt.Errorf("chmod %s: %w", e.Path, err)
		}
	case KindFile:
		if err := root.WriteFile(e.Path, bytes.NewReader(e.Content), attr); err != nil {
			return fmt.Errorf("write %s: %w", e.Path, err)
		}
	}
	return nil
}

// CredentialUnit is the unit that fetches a netbooted node's wrapped
// secret-id from bakery serve before Vault Agent starts.
const CredentialUnit = "bakery-credential.service"

// CredentialScript is where the fetcher script goes.
const CredentialScript = "/usr/libexec/bakery/fetch-credential"

func installCredentialFetcher(root fs.Filesystem, plan *Plan, mtime time.Time) error {
	va := plan.Get("vault-agent")
	files := []struct {
		path    string
		content []byte
		mode    iofs.FileMode
	}{
		{CredentialScript, credentialScript(va.SecretIDFile), 0o755},
		{"/etc/systemd/system/" + CredentialUnit, credentialUnit(), 0o644},
	}
	for _, f := range files {
		if err := mkParents(root, f.path, mtime); err != nil {
			return err
		}
		if err := root.WriteFile(f.path, bytes.NewReader(f.content), fs.Attr{Mode: f.mode, ModTime: mtime}); err != nil {
			return fmt.Errorf("write %s: %w", f.path, err)
		}
	}
	if _, err := systemd.Enable(root, CredentialUnit); err != nil {
		return fmt.Errorf("enable %s: %w", CredentialUnit, err)
	}
	return nil
}

func credentialUnit() []byte {
	return []byte(`# bakery-credential.service: written by bakery. A netbooted node asks
# bakery serve for a response-wrapped, single-use AppRole secret-id bound to
# its address; Vault Agent unwraps it. A failure here means the node gets
# no secrets, which the server's event log explains.
[Unit]
Description=Fetch this node's wrapped Vault credential from bakery serve
Wants=network-online.target
After=network-online.target
Before=vault-agent.service
ConditionKernelCommandLine=bakery.url

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=` + CredentialScript + `
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=/run/bakery
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
RuntimeDirectory=bakery
RuntimeDirectoryMode=0700
RuntimeDirectoryPreserve=yes

[Install]
WantedBy=multi-user.target
`)
}

func credentialScript(dest string) []byte {
	return []byte(`#!/bin/sh
# Written by bakery: fetch this node's wrapped secret-id from bakery serve.
# The server is named on the kernel command line (bakery.url=http://HOST:PORT);
# it checks our source address against our DHCP lease and answers once per
# boot with a wrapping token (60 s) for a secret-id (2 min, one use).
set -eu
url=""
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	bakery.url=*) url="${arg#bakery.url=}" ;;
	esac
done
[ -n "$url" ] || { echo "no bakery.url= on the kernel command line" >&2; exit 1; }
dest=` + strconv.Quote(dest) + `
umask 077
mkdir -p "$(dirname "$dest")"
tmp="$dest.tmp"
curl -fsS --retry 10 --retry-delay 2 --retry-connrefused --max-time 30 \
	-X POST -o "$tmp" "$url/boot/credential"
[ -s "$tmp" ] || { echo "empty credential" >&2; rm -f "$tmp"; exit 1; }
mv "$tmp" "$dest"
`)
}
