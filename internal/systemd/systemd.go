// Package systemd enables, disables and masks systemd units inside an
// image's root filesystem offline, creating and removing exactly the
// symlinks `systemctl --root=DIR enable|disable|mask|unmask` would: the
// links named by a unit's [Install] section (WantedBy=, RequiredBy=,
// UpheldBy=, Alias=, Also=, DefaultInstance=) in /etc/systemd/system.
//
// Unit files are looked up as systemd 252 (Debian bookworm) does for the
// system manager: /etc/systemd/system, /usr/local/lib/systemd/system,
// /lib/systemd/system, then /usr/lib/systemd/system. Links point at the
// unit's path in the first directory that holds it, as systemctl writes
// them ("/lib/systemd/system/ssh.service" on a merged-/usr image).
package systemd

import (
	"errors"
	"fmt"
	iofs "io/fs"
	"path"
	"sort"
	"strings"

	"github.com/bakeryhq/bakery/internal/fs"
)

// ConfigDir is where enablement symlinks live.
const ConfigDir = "/etc/systemd/system"

// maxUnitBytes bounds how much of a unit file is read from an image.
const maxUnitBytes = 1 << 20

// UnitPaths returns the unit search directories, highest priority first.
func UnitPaths() []string {
	return []string{ConfigDir, "/usr/local/lib/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"}
}

// Errors callers distinguish with errors.Is.
var (
	// ErrNotFound: no unit file of that name in any search directory.
	ErrNotFound = errors.New("unit does not exist in the image")
	// ErrNoInstall: the unit has no [Install] settings, so enabling it
	// means nothing (systemctl calls such units "static").
	ErrNoInstall = errors.New("unit has no [Install] section (it is static: pulled in by other units, not enabled)")
	// ErrMasked: the unit is masked, so it cannot be enabled.
	ErrMasked = errors.New("unit is masked")
	// ErrBadName: not a valid unit name.
	ErrBadName = errors.New("not a valid unit name")
)

// unitTypes are the suffixes systemd knows.
var unitTypes = []string{".service", ".socket", ".target", ".timer", ".path", ".mount", ".automount",
	".swap", ".slice", ".scope", ".device"}

// Name is a parsed unit name: prefix@instance.suffix.
type Name struct {
	Prefix   string // "getty"
	Instance string // "tty1"; empty for plain units and templates
	Template bool   // "getty@.service" or an instance of it
	Suffix   string // ".service"
}

// ParseName splits and validates a unit name.
func ParseName(n string) (Name, error) {
	if n == "" || len(n) > 255 || strings.ContainsAny(n, "/\x00") {
		return Name{}, fmt.Errorf("%q: %w", n, ErrBadName)
	}
	var out Name
	for _, s := range unitTypes {
		if strings.HasSuffix(n, s) && len(n) > len(s) {
			out.Suffix = s
			break
		}
	}
	if out.Suffix == "" {
		return Name{}, fmt.Errorf("%q: %w (want a suffix such as .service)", n, ErrBadName)
	}
	stem := strings.TrimSuffix(n, out.Suffix)
	if p, inst, ok := strings.Cut(stem, "@"); ok {
		if p == "" || strings.Contains(inst, "@") {
			return Name{}, fmt.Errorf("%q: %w", n, ErrBadName)
		}
		out.Prefix, out.Instance, out.Template = p, inst, true
	} else {
		out.Prefix = stem
	}
	return out, nil
}

// String renders the name back.
func (n Name) String() string {
	if n.Template {
		return n.Prefix + "@" + n.Instance + n.Suffix
	}
	return n.Prefix + n.Suffix
}

// TemplateName is "prefix@.suffix" for a template or instance.
func (n Name) TemplateName() string { return n.Prefix + "@" + n.Suffix }

// IsTemplate reports a template without instance ("getty@.service").
func (n Name) IsTemplate() bool { return n.Template && n.Instance == "" }

// IsInstance reports an instance of a template ("getty@tty1.service").
func (n Name) IsInstance() bool { return n.Template && n.Instance != "" }

// Install is a unit's [Install] section.
type Install struct {
	WantedBy        []string
	RequiredBy      []string
	UpheldBy        []string
	Alias           []string
	Also            []string
	DefaultInstance string
}

// Empty reports an [Install] section that enables nothing.
func (in Install) Empty() bool {
	return len(in.WantedBy) == 0 && len(in.RequiredBy) == 0 && len(in.UpheldBy) == 0 &&
		len(in.Alias) == 0 && len(in.Also) == 0 && in.DefaultInstance == ""
}

// ParseInstall reads the [Install] section of a unit file: repeated keys
// accumulate, values are space-separated lists, an empty assignment resets
// the list, lines may continue with a trailing backslash, and # or ;
// starts a comment line.
func ParseInstall(data []byte) (Install, error) {
	var in Install
	section := ""
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") || strings.HasPrefix(next, ";") {
				next = ""
			}
			line = strings.TrimSuffix(line, "\\") + " " + next
		}
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if line[0] == '[' {
			if !strings.HasSuffix(line, "]") {
				return in, fmt.Errorf("line %d: bad section header %q", i+1, line)
			}
			section = line[1 : len(line)-1]
			continue
		}
		if section != "Install" {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok {
			return in, fmt.Errorf("line %d: want KEY=VALUE in [Install], got %q", i+1, line)
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		var list *[]string
		switch key {
		case "WantedBy":
			list = &in.WantedBy
		case "RequiredBy":
			list = &in.RequiredBy
		case "UpheldBy":
			list = &in.UpheldBy
		case "Alias":
			list = &in.Alias
		case "Also":
			list = &in.Also
		case "DefaultInstance":
			in.DefaultInstance = val
			continue
		default:
			continue // unknown keys are ignored, as systemd does (with a warning)
		}
		if val == "" {
			*list = nil
			continue
		}
		*list = append(*list, strings.Fields(val)...)
	}
	return in, nil
}

// Unit is a unit file found in the image.
type Unit struct {
	// Name is the name asked for ("getty@tty1.service").
	Name Name
	// Path is where the unit file was found, in its search directory
	// ("/lib/systemd/system/getty@.service"): the symlink target.
	Path    string
	Install Install
}

// Find looks name up in the search directories, falling back from an
// instance to its template, and parses its [Install] section.
func Find(f fs.Filesystem, name string) (*Unit, error) {
	n, err := ParseName(name)
	if err != nil {
		return nil, err
	}
	candidates := []string{n.String()}
	if n.IsInstance() {
		candidates = append(candidates, n.TemplateName())
	}
	for _, cand := range candidates {
		for _, dir := range UnitPaths() {
			p := dir + "/" + cand
			fi, err := f.Lstat(p)
			if err != nil {
				if fs.IsMissing(err) {
					continue
				}
				return nil, fmt.Errorf("look up %s: %w", p, err)
			}
			if fi.Mode&iofs.ModeSymlink != 0 {
				target, _ := f.ReadLink(p)
				if target == "/dev/null" {
					return &Unit{Name: n, Path: p}, fmt.Errorf("%s: %w", name, ErrMasked)
				}
				if dir == ConfigDir || path.Base(target) != cand {
					// An alias or linked unit file: systemctl refuses these too.
					return nil, fmt.Errorf("%s is a symlink to %s: enable the unit it names instead", p, target)
				}
				if _, err := f.Stat(p); err != nil {
					continue // dangling
				}
			} else if !fi.IsRegular() {
				continue
			}
			data, err := fs.ReadLimited(f, p, maxUnitBytes)
			if err != nil {
				return nil, err
			}
			in, err := ParseInstall(data)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			return &Unit{Name: n, Path: p, Install: in}, nil
		}
	}
	return nil, fmt.Errorf("%s: %w (searched %s)", name, ErrNotFound, strings.Join(UnitPaths(), ", "))
}

// Change is one symlink created or removed.
type Change struct {
	Op     string // "symlink" or "unlink"
	Path   string
	Target string // for symlink
}

func (c Change) String() string {
	if c.Op == "symlink" {
		return fmt.Sprintf("created symlink %s -> %s", c.Path, c.Target)
	}
	return "removed " + c.Path
}

// expand resolves the specifiers systemd allows in [Install] values for
// the unit named n.
func expand(s string, n Name) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", fmt.Errorf("%q ends in a lone %%", s)
		}
		i++
		switch s[i] {
		case '%':
			b.WriteByte('%')
		case 'n':
			b.WriteString(n.String())
		case 'N':
			b.WriteString(strings.TrimSuffix(n.String(), n.Suffix))
		case 'p', 'P':
			b.WriteString(n.Prefix)
		case 'i', 'I':
			b.WriteString(n.Instance)
		case 'j', 'J':
			p := n.Prefix
			if k := strings.LastIndexByte(p, '-'); k >= 0 {
				p = p[k+1:]
			}
			b.WriteString(p)
		default:
			return "", fmt.Errorf("%q: specifier %%%c is not supported offline", s, s[i])
		}
	}
	return b.String(), nil
}

// instanceName applies a template's instance to a target name given as a
// template ("foo@.service" wanted by an instance gets the same instance).
func withInstance(target string, n Name) string {
	if n.Instance == "" {
		return target
	}
	t, err := ParseName(target)
	if err != nil || !t.IsTemplate() {
		return target
	}
	t.Instance = n.Instance
	return t.String()
}

// Enable creates the [Install] symlinks of name (and of its Also= units),
// as `systemctl enable` does.
func Enable(f fs.Filesystem, name string) ([]Change, error) {
	return enable(f, name, map[string]bool{})
}

func enable(f fs.Filesystem, name string, seen map[string]bool) ([]Change, error) {
	if seen[name] {
		return nil, nil
	}
	seen[name] = true
	u, err := Find(f, name)
	if err != nil {
		return nil, err
	}
	in := u.Install
	if in.Empty() {
		return nil, fmt.Errorf("%s: %w", name, ErrNoInstall)
	}
	n := u.Name
	if n.IsTemplate() {
		if in.DefaultInstance == "" && (len(in.WantedBy) > 0 || len(in.RequiredBy) > 0 || len(in.UpheldBy) > 0) {
			return nil, fmt.Errorf("%s is a template without DefaultInstance=: enable an instance such as %s", name, n.Prefix+"@NAME"+n.Suffix)
		}
		if in.DefaultInstance != "" {
			n.Instance = in.DefaultInstance
		}
	}
	var changes []Change
	link := func(dir, linkName string) error {
		p := ConfigDir + "/" + linkName
		if dir != "" {
			p = ConfigDir + "/" + dir + "/" + linkName
		}
		c, err := ensureLink(f, p, u.Path)
		if c != nil {
			changes = append(changes, *c)
		}
		return err
	}
	for _, dep := range []struct {
		suffix string
		list   []string
	}{{".wants", in.WantedBy}, {".requires", in.RequiredBy}, {".upholds", in.UpheldBy}} {
		for _, t := range dep.list {
			t, err := expand(t, n)
			if err != nil {
				return changes, fmt.Errorf("%s: %w", u.Path, err)
			}
			t = withInstance(t, n)
			if _, err := ParseName(t); err != nil {
				return changes, fmt.Errorf("%s: [Install] names %w", u.Path, err)
			}
			if err := link(t+dep.suffix, n.String()); err != nil {
				return changes, err
			}
		}
	}
	for _, a := range in.Alias {
		a, err := expand(a, n)
		if err != nil {
			return changes, fmt.Errorf("%s: %w", u.Path, err)
		}
		an, err := ParseName(a)
		if err != nil || an.Suffix != n.Suffix {
			return changes, fmt.Errorf("%s: Alias=%s is not a unit name of the same type", u.Path, a)
		}
		if a == path.Base(u.Path) && path.Dir(u.Path) == ConfigDir {
			continue
		}
		if err := link("", withInstance(a, n)); err != nil {
			return changes, err
		}
	}
	for _, also := range in.Also {
		also, err := expand(also, n)
		if err != nil {
			return changes, fmt.Errorf("%s: %w", u.Path, err)
		}
		c, err := enable(f, also, seen)
		changes = append(changes, c...)
		if err != nil && !errors.Is(err, ErrNoInstall) {
			return changes, fmt.Errorf("%s: Also=%s: %w", name, also, err)
		}
	}
	return changes, nil
}

// ensureLink makes p a symlink to target, creating parent directories
// (0755) and replacing a different symlink. A regular file in the way is
// an error, as in systemctl without --force.
func ensureLink(f fs.Filesystem, p, target string) (*Change, error) {
	if fi, err := f.Lstat(p); err == nil {
		if fi.Mode&iofs.ModeSymlink == 0 {
			return nil, fmt.Errorf("cannot link %s: a file that is not a symlink is in the way", p)
		}
		old, _ := f.ReadLink(p)
		if old == target {
			return nil, nil
		}
		if old == "/dev/null" {
			return nil, fmt.Errorf("%s: %w", path.Base(p), ErrMasked)
		}
		// A link through another search directory to the same file
		// (/usr/lib/... for /lib/...) is kept, as systemctl keeps it.
		if a, err := f.Stat(p); err == nil {
			if b, err := f.Stat(target); err == nil && a.Ino == b.Ino {
				return nil, nil
			}
		}
		if err := f.Remove(p); err != nil {
			return nil, err
		}
	}
	if err := f.MkdirAll(path.Dir(p), fs.Attr{Mode: 0o755}); err != nil {
		return nil, err
	}
	if err := f.Symlink(target, p, fs.Attr{Mode: 0o777}); err != nil {
		return nil, err
	}
	return &Change{Op: "symlink", Path: p, Target: target}, nil
}

// Disable removes the symlinks in /etc/systemd/system that enable name:
// those named after it (or after one of its aliases) and those pointing
// at its unit file; for a template, those of every instance. Its Also=
// units are disabled too. A masked unit stays masked.
func Disable(f fs.Filesystem, name string) ([]Change, error) {
	n, err := ParseName(name)
	if err != nil {
		return nil, err
	}
	names := map[string]bool{}
	targets := map[string]bool{}
	templates := map[string]bool{}
	var visit func(string) error
	visit = func(nm string) error {
		if names[nm] {
			return nil
		}
		names[nm] = true
		un, err := ParseName(nm)
		if err != nil {
			return err
		}
		if un.IsTemplate() {
			templates[un.TemplateName()] = true
		}
		u, err := Find(f, nm)
		if err != nil {
			return err
		}
		if !un.IsInstance() {
			targets[u.Path] = true
		}
		for _, a := range u.Install.Alias {
			if a, err := expand(a, un); err == nil {
				names[withInstance(a, un)] = true
			}
		}
		for _, also := range u.Install.Also {
			also, err := expand(also, un)
			if err != nil {
				continue
			}
			if err := visit(also); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrMasked) {
				return err
			}
		}
		return nil
	}
	if err := visit(n.String()); err != nil {
		if errors.Is(err, ErrMasked) {
			return nil, nil // systemctl: "Unit ... is masked, ignoring."
		}
		return nil, err
	}
	var changes []Change
	err = walkLinks(f, ConfigDir, 2, func(p, target string) error {
		base := path.Base(p)
		match := names[base] || targets[target]
		if !match && len(templates) > 0 {
			if bn, err := ParseName(base); err == nil && bn.Template && templates[bn.TemplateName()] {
				match = true
			}
		}
		if !match || target == "/dev/null" {
			return nil
		}
		if err := f.Remove(p); err != nil {
			return err
		}
		changes = append(changes, Change{Op: "unlink", Path: p})
		return nil
	})
	return changes, err
}

// walkLinks calls fn for every symlink under dir, descending depth levels.
// Entries are visited in name order so results are deterministic.
func walkLinks(f fs.Filesystem, dir string, depth int, fn func(p, target string) error) error {
	entries, err := f.ReadDir(dir)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return nil
		}
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	for _, e := range entries {
		p := dir + "/" + e.Name
		switch {
		case e.Mode&iofs.ModeSymlink != 0:
			t, err := f.ReadLink(p)
			if err != nil {
				return err
			}
			if err := fn(p, t); err != nil {
				return err
			}
		case e.IsDir() && depth > 1:
			if err := walkLinks(f, p, depth-1, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// Mask links /etc/systemd/system/NAME to /dev/null. A unit file of that
// name in /etc/systemd/system itself is an error, as in systemctl.
func Mask(f fs.Filesystem, name string) ([]Change, error) {
	if _, err := ParseName(name); err != nil {
		return nil, err
	}
	p := ConfigDir + "/" + name
	if fi, err := f.Lstat(p); err == nil && fi.Mode&iofs.ModeSymlink == 0 {
		return nil, fmt.Errorf("cannot mask %s: %s is a unit file, not a symlink (remove it or use a drop-in)", name, p)
	}
	if fi, err := f.Lstat(p); err == nil && fi.Mode&iofs.ModeSymlink != 0 {
		if t, _ := f.ReadLink(p); t == "/dev/null" {
			return nil, nil
		}
		if err := f.Remove(p); err != nil {
			return nil, err
		}
	}
	if err := f.MkdirAll(ConfigDir, fs.Attr{Mode: 0o755}); err != nil {
		return nil, err
	}
	if err := f.Symlink("/dev/null", p, fs.Attr{Mode: 0o777}); err != nil {
		return nil, err
	}
	return []Change{{Op: "symlink", Path: p, Target: "/dev/null"}}, nil
}

// Unmask removes a /dev/null mask link.
func Unmask(f fs.Filesystem, name string) ([]Change, error) {
	if _, err := ParseName(name); err != nil {
		return nil, err
	}
	p := ConfigDir + "/" + name
	fi, err := f.Lstat(p)
	if err != nil || fi.Mode&iofs.ModeSymlink == 0 {
		return nil, nil
	}
	if t, _ := f.ReadLink(p); t != "/dev/null" {
		return nil, nil
	}
	if err := f.Remove(p); err != nil {
		return nil, err
	}
	return []Change{{Op: "unlink", Path: p}}, nil
}

// IsMasked reports whether name is masked in /etc/systemd/system.
func IsMasked(f fs.Filesystem, name string) bool {
	t, err := f.ReadLink(ConfigDir + "/" + name)
	return err == nil && t == "/dev/null"
}

// IsEnabled reports whether a symlink under /etc/systemd/system (in a
// .wants/.requires/.upholds directory) is named name or, for a plain
// unit, points to a file of that name.
func IsEnabled(f fs.Filesystem, name string) (bool, error) {
	found := false
	err := walkLinks(f, ConfigDir, 2, func(p, target string) error {
		dir := path.Base(path.Dir(p))
		if !(strings.HasSuffix(dir, ".wants") || strings.HasSuffix(dir, ".requires") || strings.HasSuffix(dir, ".upholds")) {
			return nil
		}
		if path.Base(p) == name || path.Base(target) == name {
			found = true
		}
		return nil
	})
	return found, err
}

// Exists reports whether a unit file (or its template) is in the image.
func Exists(f fs.Filesystem, name string) bool {
	_, err := Find(f, name)
	return err == nil || errors.Is(err, ErrMasked)
}

// WriteUnit writes a unit file into /etc/systemd/system (mode 0644).
func WriteUnit(f fs.Filesystem, name, content string, attr fs.Attr) error {
	if _, err := ParseName(name); err != nil {
		return err
	}
	if err := f.MkdirAll(ConfigDir, fs.Attr{Mode: 0o755, ModTime: attr.ModTime}); err != nil {
		return err
	}
	attr.Mode = 0o644
	return f.WriteFile(ConfigDir+"/"+name, strings.NewReader(content), attr)
}
