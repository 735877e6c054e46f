package step

import (
	"context"
	"errors"
	iofs "io/fs"
	"regexp"
	"sort"
	"strings"

	"github.com/bakeryhq/bakery/internal/accounts"
	"github.com/bakeryhq/bakery/internal/fs"
)

// historyFiles are per-user history files removed from every home.
var historyFiles = []string{".bash_history", ".zsh_history", ".sh_history", ".ash_history", ".history",
	".python_history", ".mysql_history", ".psql_history", ".sqlite_history", ".lesshst", ".viminfo", ".wget-hsts",
	".node_repl_history", ".local/share/fish/fish_history"}

// rotatedLog matches logs logrotate has already rotated (syslog.1,
// auth.log.2.gz, dpkg.log.old).
var rotatedLog = regexp.MustCompile(`(\.[0-9]+(\.(gz|xz|bz2|zst))?|\.(gz|xz|bz2|zst|old))$`)

// GoldenReport counts what Golden removed, by setting.
type GoldenReport map[string]int

// Golden removes what must not be shared between the machines an image
// is flashed to (each part switchable in the golden block, all on by
// default), and relies on the first boot to regenerate it:
//
//   - machine_id: /etc/machine-id is emptied (the file stays: systemd then
//     generates an id on first boot and treats the boot as the first);
//     a regular /var/lib/dbus/machine-id goes (a link to /etc/machine-id
//     stays); systemd's credential.secret goes too;
//   - ssh_host_keys: /etc/ssh/ssh_host_* (bakery-ssh-keygen.service makes
//     new ones before sshd starts);
//   - cloud_init_state: /var/lib/cloud except seed/, as `cloud-init clean`;
//   - logs: files under /var/log are truncated (rotated ones removed),
//     directories kept; the persistent journal's machine directories go;
//   - shell_history: history files in every home and /root;
//   - random_seed, dhcp_leases, tmp (/tmp and /var/tmp contents).
//
// Paths the spec itself declares are never removed.
func Golden(ctx context.Context, c *Context) (GoldenReport, error) {
	g := c.Spec.Golden
	keep := map[string]bool{}
	for _, f := range c.Spec.Files {
		keep[f.Path] = true
	}
	for _, d := range c.Spec.Directories {
		keep[d.Path] = true
	}
	for _, s := range c.Spec.Symlinks {
		keep[s.Path] = true
	}
	r := &golden{c: c, keep: keep, report: GoldenReport{}}
	parts := []struct {
		on  bool
		run func() error
	}{
		{g.MachineID, r.machineID},
		{g.SSHHostKeys, r.sshHostKeys},
		{g.CloudInitState, r.cloudInit},
		{g.Logs, r.logs},
		{g.ShellHistory, r.history},
		{g.RandomSeed, r.randomSeed},
		{g.DHCPLeases, r.leases},
		{g.Tmp, r.tmp},
	}
	for _, p := range parts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if p.on {
			if err := p.run(); err != nil {
				return nil, err
			}
		}
	}
	return r.report, nil
}

type golden struct {
	c      *Context
	keep   map[string]bool
	report GoldenReport
}

func (g *golden) remove(what, p string) error {
	if g.keep[p] {
		return nil
	}
	fi, err := g.c.Root.Lstat(p)
	if err != nil {
		if fs.IsMissing(err) {
			return nil
		}
		return err
	}
	if fi.IsDir() {
		n, err := RemoveAll(g.c.Root, p, g.keep)
		g.report[what] += n
		return err
	}
	if err := g.c.Root.Remove(p); err != nil {
		return err
	}
	g.report[what]++
	return nil
}

// removeMatching removes the entries of dir whose name match accepts.
func (g *golden) removeMatching(what, dir string, match func(name string) bool) error {
	entries, err := g.c.Root.ReadDir(dir)
	if err != nil {
		if fs.IsMissing(err) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if match(e.Name) {
			if err := g.remove(what, fs.Join(dir, e.Name)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *golden) truncate(what, p string, fi fs.FileInfo) error {
	if g.keep[p] || fi.Size == 0 {
		return nil
	}
	attr := fi.Attr(g.c.Time)
	if err := g.c.Root.WriteFile(p, strings.NewReader(""), attr); err != nil {
		return err
	}
	g.report[what]++
	return nil
}

func (g *golden) machineID() error {
	root := g.c.Root
	fi, err := root.Lstat("/etc/machine-id")
	switch {
	case err != nil:
		// Debian's cloud images ship the empty file; systemd expects it.
		if err := g.c.WriteFile(root, "/etc/machine-id", "", 0o444, 0, 0); err != nil {
			return err
		}
		g.report["machine_id"]++
	case fi.Mode&iofs.ModeSymlink != 0 || !fi.IsRegular():
		if err := root.Remove("/etc/machine-id"); err != nil {
			return err
		}
		if err := g.c.WriteFile(root, "/etc/machine-id", "", 0o444, 0, 0); err != nil {
			return err
		}
		g.report["machine_id"]++
	default:
		if err := g.truncate("machine_id", "/etc/machine-id", fi); err != nil {
			return err
		}
	}
	if fi, err := root.Lstat("/var/lib/dbus/machine-id"); err == nil {
		target, _ := root.ReadLink("/var/lib/dbus/machine-id")
		if fi.Mode&iofs.ModeSymlink == 0 || !(target == "/etc/machine-id" || strings.HasSuffix(target, "../etc/machine-id")) {
			if err := g.remove("machine_id", "/var/lib/dbus/machine-id"); err != nil {
				return err
			}
		}
	}
	return g.remove("machine_id", "/var/lib/systemd/credential.secret")
}

func (g *golden) sshHostKeys() error {
	return g.removeMatching("ssh_host_keys", "/etc/ssh", func(n string) bool { return strings.HasPrefix(n, "ssh_host_") })
}

func (g *golden) cloudInit() error {
	return g.removeMatching("cloud_init_state", "/var/lib/cloud", func(n string) bool { return n != "seed" })
}

func (g *golden) logs() error {
	if err := g.walkLogs("/var/log", 0); err != nil {
		return err
	}
	// The persistent journal: one directory per machine-id.
	return g.removeMatching("logs", "/var/log/journal", func(string) bool { return true })
}

func (g *golden) walkLogs(dir string, depth int) error {
	if depth > 16 || dir == "/var/log/journal" {
		return nil
	}
	entries, err := g.c.Root.ReadDir(dir)
	if err != nil {
		if fs.IsMissing(err) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		p := fs.Join(dir, e.Name)
		switch {
		case e.IsDir():
			if err := g.walkLogs(p, depth+1); err != nil {
				return err
			}
		case e.IsRegular() && rotatedLog.MatchString(e.Name):
			if err := g.remove("logs", p); err != nil {
				return err
			}
		case e.IsRegular():
			if err := g.truncate("logs", p, e); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *golden) history() error {
	homes := map[string]bool{"/root": true}
	if db, err := accounts.LoadDB(g.c.Root); err == nil {
		for _, u := range db.Users() {
			if u.Home != "" && u.Home != "/" && strings.HasPrefix(u.Home, "/") && !strings.HasPrefix(u.Home, "/nonexistent") {
				homes[u.Home] = true
			}
		}
	}
	if entries, err := g.c.Root.ReadDir("/home"); err == nil {
		for _, e := range entries {
			if e.IsDir() {
				homes[fs.Join("/home", e.Name)] = true
			}
		}
	}
	list := make([]string, 0, len(homes))
	for h := range homes {
		list = append(list, h)
	}
	sort.Strings(list)
	for _, h := range list {
		clean, err := fs.Clean(h)
		if err != nil {
			continue
		}
		for _, f := range historyFiles {
			p := clean + "/" + f
			if fi, err := g.c.Root.Lstat(p); err == nil && !fi.IsDir() {
				if err := g.remove("shell_history", p); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (g *golden) randomSeed() error {
	for _, p := range []string{"/var/lib/systemd/random-seed", "/var/lib/urandom/random-seed"} {
		if err := g.remove("random_seed", p); err != nil {
			return err
		}
	}
	return nil
}

func (g *golden) leases() error {
	lease := func(n string) bool { return strings.Contains(n, "lease") }
	for _, d := range []string{"/var/lib/dhcp", "/var/lib/dhclient", "/var/lib/NetworkManager", "/var/lib/dhcpcd", "/var/lib/dhcpcd5"} {
		if err := g.removeMatching("dhcp_leases", d, lease); err != nil {
			return err
		}
	}
	// networkd's DHCP client keeps only runtime leases (/run); its
	// persistent state is per-link DUID/IAID-derived data we leave.
	return nil
}

func (g *golden) tmp() error {
	for _, d := range []string{"/tmp", "/var/tmp"} {
		if err := g.removeMatching("tmp", d, func(string) bool { return true }); err != nil {
			return err
		}
	}
	return nil
}

// RemoveAll removes p and everything below it, except paths in keep
// (and the directories holding them). It returns how many entries went.
func RemoveAll(f fs.Filesystem, p string, keep map[string]bool) (int, error) {
	return removeAll(f, p, keep, 0)
}

func removeAll(f fs.Filesystem, p string, keep map[string]bool, depth int) (int, error) {
	if keep[p] {
		return 0, nil
	}
	if depth > 64 {
		return 0, fs.PathErr("remove", p, errors.New("directory tree too deep"))
	}
	fi, err := f.Lstat(p)
	if err != nil {
		if errors.Is(err, iofs.ErrNotExist) {
			return 0, nil
		}
		return 0, err
	}
	n := 0
	if fi.IsDir() {
		entries, err := f.ReadDir(p)
		if err != nil {
			return 0, err
		}
		for _, e := range entries {
			m, err := removeAll(f, fs.Join(p, e.Name), keep, depth+1)
			n += m
			if err != nil {
				return n, err
			}
		}
		for k := range keep {
			if strings.HasPrefix(k, p+"/") {
				return n, nil // something kept lives below: keep the directory
			}
		}
	}
	if err := f.Remove(p); err != nil {
		return n, err
	}
	return n + 1, nil
}
