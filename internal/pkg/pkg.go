// Package pkg builds deb, rpm and apk packages of cluster bundles with
// nfpm, from the same verified release archives and the same layout
// (binary, unit, default configuration, users, directories) that bakery
// build puts into images. Packages are reproducible: every timestamp is
// SOURCE_DATE_EPOCH (or the binary's own date in the release archive).
package pkg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/apk" // registers the apk packager
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager

	"github.com/bakeryhq/bakery/internal/atomicfile"
	"github.com/bakeryhq/bakery/internal/bundle"
	bfs "github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/spec"
	"github.com/bakeryhq/bakery/internal/streams"
)

// Formats are the package formats bakery builds.
var Formats = []string{"deb", "rpm", "apk"}

// UnitDir is where packaged units go: /usr/lib/systemd/system is searched
// by systemd on every distribution (merged-/usr Debian included).
const UnitDir = "/usr/lib/systemd/system"

// Options configure Build.
type Options struct {
	// Plan holds the bundle to package and, for context, others (a
	// consul package whose secrets come from vault-agent needs the
	// vault-agent settings); Name picks the one to package.
	Plan *bundle.Plan
	Name string
	// Arches and Formats to build (default all formats).
	Arches  []bundle.Arch
	Formats []string
	// OutDir receives the packages (created if needed).
	OutDir string
	// Source fetches and verifies the release archives.
	Source *bundle.Source
	// MTime stamps every file and the archives (zero: the binary's date
	// in the release archive).
	MTime time.Time
	// Release is the package revision (default "1").
	Release string
	// Maintainer for the package metadata.
	Maintainer string
}

// Overrides are what `bakery pkg` flags change in a plan.
type Overrides struct {
	// Version replaces the packaged bundle's version.
	Version string
	// Mirror replaces every bundle's release URL template.
	Mirror string
	// PGPKey replaces the packaged bundle's release-signing key.
	PGPKey []byte
}

// PlanFor builds the plan for packaging bundle name: the given bundle
// blocks (none without a config file), plus name with default settings
// when they lack it, with the overrides applied.
func PlanFor(bundles []spec.Bundle, name string, o Overrides) (*bundle.Plan, error) {
	plan, err := bundle.PlanFromBundles(bundles)
	if err != nil {
		return nil, err
	}
	set := plan.Get(name)
	if set == nil {
		if _, err := bundle.Lookup(name); err != nil {
			return nil, err
		}
		plan.Bundles = append(plan.Bundles, bundle.Settings{Name: name})
		set = plan.Get(name)
	}
	if o.Version != "" {
		set.Version = o.Version
	}
	if set.Version == "" {
		return nil, fmt.Errorf("--version is required (e.g. --version 1.20.1)")
	}
	if o.Mirror != "" {
		if err := bundle.CheckMirror(o.Mirror); err != nil {
			return nil, err
		}
		for i := range plan.Bundles {
			plan.Bundles[i].Mirror = o.Mirror
		}
	}
	if o.PGPKey != nil {
		set.PGPKey = o.PGPKey
	}
	return plan, nil
}

// Result is one built package.
type Result struct {
	Path   string `json:"path"`
	Format string `json:"format"`
	Arch   string `json:"arch"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// PackageName is the package's name: the bundle name, with "_" (not
// allowed in Debian package names) as "-".
func PackageName(bundleName string) string { return strings.ReplaceAll(bundleName, "_", "-") }

// Build fetches, verifies and packages.
func Build(ctx context.Context, o Options) ([]Result, error) {
	if o.Plan == nil || !o.Plan.Has(o.Name) {
		return nil, fmt.Errorf("bundle %q is not configured", o.Name)
	}
	if err := o.Plan.Normalize(); err != nil {
		return nil, err
	}
	if len(o.Formats) == 0 {
		o.Formats = Formats
	}
	for _, f := range o.Formats {
		if !slices.Contains(Formats, f) {
			return nil, fmt.Errorf("format %q: want deb, rpm or apk", f)
		}
	}
	if len(o.Arches) == 0 {
		return nil, fmt.Errorf("no architecture given")
	}
	if o.Release == "" {
		o.Release = "1"
	}
	if o.Maintainer == "" {
		o.Maintainer = "bakery <bakery@localhost>"
	}
	if o.Source == nil {
		o.Source = &bundle.Source{}
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, err
	}
	layout, err := o.Plan.Layout(o.Name, bundle.LayoutOptions{UnitDir: UnitDir, TmpfilesDir: "/usr/lib/tmpfiles.d"})
	if err != nil {
		return nil, err
	}
	// Fetch and verify every architecture before writing anything, and
	// publish the packages only when all are built: a failure leaves no
	// package of a partial set behind.
	arts := make([]*bundle.Artifact, len(o.Arches))
	for i, a := range o.Arches {
		art, err := o.Source.Fetch(ctx, *o.Plan.Get(o.Name), a)
		if err != nil {
			var ae *bundle.ArchError
			if errors.As(err, &ae) {
				ae.Target = "--arch"
			}
			return nil, err
		}
		arts[i] = art
	}
	var out []Result
	var pending []*atomicfile.File
	defer func() {
		for _, f := range pending {
			f.Abort() // a no-op once committed
		}
	}()
	byPath := map[string]string{}
	for i, art := range arts {
		a := o.Arches[i]
		mtime := o.MTime
		if mtime.IsZero() {
			if fi, err := os.Stat(art.BinaryPath); err == nil {
				mtime = binaryDate(art, fi.ModTime())
			}
		}
		for _, format := range o.Formats {
			r, f, err := buildOne(ctx, o, layout, art, format, mtime)
			if err != nil {
				return nil, fmt.Errorf("%s %s %s: %w", o.Name, a, format, err)
			}
			pending = append(pending, f)
			what := fmt.Sprintf("%s %s", a, format)
			if prev, dup := byPath[r.Path]; dup {
				return nil, fmt.Errorf("%s and %s would both be written to %s: give only one of them", prev, what, r.Path)
			}
			byPath[r.Path] = what
			out = append(out, r)
		}
	}
	for i, f := range pending {
		if err := f.Commit(); err != nil {
			for _, done := range pending[:i] {
				os.Remove(done.FinalPath())
			}
			return nil, err
		}
	}
	return out, nil
}

// binaryDate is the binary's modification time in the release archive,
// a stable date when SOURCE_DATE_EPOCH is not set.
func binaryDate(art *bundle.Artifact, fallback time.Time) time.Time {
	if t, err := bundle.BinaryModTime(art.ArchivePath, art.Product.Binary); err == nil && !t.IsZero() {
		return t.UTC()
	}
	return fallback.UTC()
}

// buildOne writes one package under a temporary name in o.OutDir; the
// caller commits (publishes) or aborts the returned file.
func buildOne(ctx context.Context, o Options, l *bundle.Layout, art *bundle.Artifact, format string, mtime time.Time) (Result, *atomicfile.File, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, nil, err
	}
	stage, err := os.MkdirTemp("", "bakery-pkg-")
	if err != nil {
		return Result{}, nil, err
	}
	defer os.RemoveAll(stage)
	n := 0
	stageFile := func(content []byte) (string, error) {
		n++
		p := filepath.Join(stage, fmt.Sprintf("f%03d", n))
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return "", err
		}
		// apk records the staged scripts' own mtime.
		return p, os.Chtimes(p, mtime, mtime)
	}
	fi := func(mode iofs.FileMode, owner, group string) *files.ContentFileInfo {
		return &files.ContentFileInfo{Mode: mode, Owner: owner, Group: group, MTime: mtime}
	}
	var contents files.Contents
	contents = append(contents, &files.Content{Source: art.BinaryPath, Destination: l.BinaryPath, FileInfo: fi(0o755, "root", "root")})
	for _, e := range l.Entries {
		switch e.Kind {
		case bundle.KindDir:
			contents = append(contents, &files.Content{Destination: e.Path, Type: files.TypeDir, FileInfo: fi(e.Mode.Perm()|setgid(e.Mode), e.Owner, e.Group)})
		case bundle.KindFile:
			src, err := stageFile(e.Content)
			if err != nil {
				return Result{}, nil, err
			}
			typ := files.TypeFile
			if e.Config {
				typ = files.TypeConfigNoReplace
			}
			contents = append(contents, &files.Content{Source: src, Destination: e.Path, Type: typ, FileInfo: fi(e.Mode, e.Owner, e.Group)})
		}
	}
	unitSrc, err := stageFile(l.Unit)
	if err != nil {
		return Result{}, nil, err
	}
	contents = append(contents, &files.Content{Source: unitSrc, Destination: l.UnitPath, FileInfo: fi(0o644, "root", "root")})
	if len(l.Tmpfiles) > 0 {
		src, err := stageFile(l.Tmpfiles)
		if err != nil {
			return Result{}, nil, err
		}
		contents = append(contents, &files.Content{Source: src, Destination: l.TmpfilesPath, FileInfo: fi(0o644, "root", "root")})
	}
	sort.SliceStable(contents, func(i, j int) bool { return contents[i].Destination < contents[j].Destination })

	scripts := Scripts(l)
	scriptPath := func(s string) (string, error) {
		if s == "" {
			return "", nil
		}
		return stageFile([]byte(s))
	}
	var sc nfpm.Scripts
	for _, x := range []struct {
		dst *string
		src string
	}{{&sc.PreInstall, scripts.PreInstall}, {&sc.PostInstall, scripts.PostInstall}, {&sc.PreRemove, scripts.PreRemove}, {&sc.PostRemove, scripts.PostRemove}} {
		if *x.dst, err = scriptPath(x.src); err != nil {
			return Result{}, nil, err
		}
	}

	arch := nfpmArch(art.Arch)
	info := &nfpm.Info{
		Name:          PackageName(l.Product.Name),
		Arch:          arch,
		Platform:      "linux",
		Version:       art.Version,
		VersionSchema: "none",
		Release:       o.Release,
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    o.Maintainer,
		Description:   l.Product.Description + "\nPackaged by bakery from the verified upstream release " + art.Files.Archive + " (sha256 " + art.SHA256 + ").",
		Vendor:        "bakery",
		Homepage:      l.Product.Homepage,
		License:       l.Product.License,
		MTime:         mtime,
		Overridables: nfpm.Overridables{
			Contents: contents,
			Scripts:  sc,
			Umask:    0o022,
		},
	}
	if format == "deb" {
		info.Deb.Compression = "xz"
	}
	info = nfpm.WithDefaults(info)
	packager, err := nfpm.Get(format)
	if err != nil {
		return Result{}, nil, err
	}
	name := packager.ConventionalFileName(info)
	dst := filepath.Join(o.OutDir, name)
	f, err := atomicfile.Create(dst, 0o644)
	if err != nil {
		return Result{}, nil, err
	}
	h := sha256.New()
	cw := &streams.CountingWriter{W: io.MultiWriter(f, h)}
	if err := packager.Package(info, cw); err != nil {
		f.Abort()
		return Result{}, nil, err
	}
	return Result{Path: dst, Format: format, Arch: art.Arch.Debian(), SHA256: hex.EncodeToString(h.Sum(nil)), Size: cw.N}, f, nil
}

func setgid(m iofs.FileMode) iofs.FileMode {
	return m & (iofs.ModeSetgid | iofs.ModeSetuid | iofs.ModeSticky)
}

// nfpmArch is nfpm's (GOARCH-style) name, which it maps per format:
// arm7 is armhf (deb), armv7hl (rpm), armv7 (apk); arm6 is armhf,
// armv6hl, armhf.
func nfpmArch(a bundle.Arch) string {
	if a.Name == "armhf" {
		if a.ARM >= 7 {
			return "arm7"
		}
		return "arm6"
	}
	return a.Name
}

// MaintainerScripts are the package's scripts (POSIX sh, idempotent,
// for dpkg, rpm and apk alike).
type MaintainerScripts struct {
	PreInstall, PostInstall, PreRemove, PostRemove string
}

// Scripts renders the maintainer scripts for a layout: the system user
// and group are created before the files are unpacked (so their owners
// resolve), directories are (re)owned after, the unit is enabled, and a
// purge removes the user, its data and configuration.
func Scripts(l *bundle.Layout) MaintainerScripts {
	var s MaintainerScripts
	unit := l.Product.Unit
	account := ""
	if u := l.User; u != nil {
		account = fmt.Sprintf(`if ! getent group %[1]s >/dev/null 2>&1; then
	if command -v groupadd >/dev/null 2>&1; then groupadd --system %[1]s; else addgroup -S %[1]s; fi
fi
if ! getent passwd %[2]s >/dev/null 2>&1; then
	nologin=/usr/sbin/nologin
	[ -x "$nologin" ] || nologin=/sbin/nologin
	if command -v useradd >/dev/null 2>&1; then
		useradd --system --gid %[1]s --home-dir %[3]s --no-create-home --shell "$nologin" --comment %[4]q %[2]s
	else
		adduser -S -D -H -h %[3]s -s "$nologin" -G %[1]s -g %[4]q %[2]s
	fi
fi
`, u.Group, u.Name, u.Home, u.Comment)
	}
	s.PreInstall = "#!/bin/sh\n# Written by bakery: create the service account before files are unpacked.\nset -e\n" + account + "exit 0\n"

	var post bytes.Buffer
	// The account is created here too: a package unpacked by bakery
	// build (deb blocks) never ran its preinst, and gets configured by
	// dpkg --configure -a at first boot.
	post.WriteString("#!/bin/sh\n# Written by bakery: ensure the service account, own the directories and files,\n# create /run directories, enable the unit.\nset -e\n")
	post.WriteString(account)
	for _, e := range l.Entries {
		switch {
		case e.Kind == bundle.KindDir:
			fmt.Fprintf(&post, "install -d -m %04o -o %s -g %s %s\n", bfs.UnixPerm(e.Mode), e.Owner, e.Group, e.Path)
		case e.Owner != "root" || e.Group != "root":
			fmt.Fprintf(&post, "if [ -e %[1]s ]; then chown %[2]s:%[3]s %[1]s; chmod %04[4]o %[1]s; fi\n", e.Path, e.Owner, e.Group, bfs.UnixPerm(e.Mode))
		}
	}
	if len(l.Tmpfiles) > 0 {
		fmt.Fprintf(&post, "if command -v systemd-tmpfiles >/dev/null 2>&1; then systemd-tmpfiles --create %s || true; fi\n", l.TmpfilesPath)
	}
	fmt.Fprintf(&post, `if command -v systemctl >/dev/null 2>&1; then
	if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
	systemctl enable %s >/dev/null 2>&1 || true
fi
exit 0
`, unit)
	s.PostInstall = post.String()

	s.PreRemove = fmt.Sprintf(`#!/bin/sh
# Written by bakery: stop and disable the unit when the package is removed
# (not on upgrade: dpkg passes "upgrade", rpm a count of 1).
set -e
case "${1:-remove}" in
remove|0|deinstall)
	if command -v systemctl >/dev/null 2>&1; then
		if [ -d /run/systemd/system ]; then systemctl stop %[1]s >/dev/null 2>&1 || true; fi
		systemctl disable %[1]s >/dev/null 2>&1 || true
	fi
	;;
esac
exit 0
`, unit)

	var postrm bytes.Buffer
	postrm.WriteString("#!/bin/sh\n# Written by bakery: on purge, remove data, configuration and the service account.\nset -e\n")
	postrm.WriteString("if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then systemctl daemon-reload || true; fi\n")
	postrm.WriteString("if [ \"${1:-}\" = purge ]; then\n")
	for i := len(l.Entries) - 1; i >= 0; i-- {
		if e := l.Entries[i]; e.Kind == bundle.KindDir {
			fmt.Fprintf(&postrm, "\trm -rf %s\n", e.Path)
		}
	}
	if u := l.User; u != nil {
		fmt.Fprintf(&postrm, "\tif getent passwd %[1]s >/dev/null 2>&1; then userdel %[1]s 2>/dev/null || deluser %[1]s 2>/dev/null || true; fi\n", u.Name)
		fmt.Fprintf(&postrm, "\tif getent group %[1]s >/dev/null 2>&1; then groupdel %[1]s 2>/dev/null || delgroup %[1]s 2>/dev/null || true; fi\n", u.Group)
	}
	postrm.WriteString("fi\nexit 0\n")
	s.PostRemove = postrm.String()
	return s
}
