package step

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	iofs "io/fs"
	"strconv"
	"strings"

	"github.com/bakeryhq/bakery/internal/accounts"
	"github.com/bakeryhq/bakery/internal/spec"
	"github.com/bakeryhq/bakery/internal/systemd"
)

// Users creates or updates the spec's users: passwd, shadow, group and
// gshadow (next free UID per /etc/login.defs, a primary group of the same
// name, supplementary groups that must exist in the base), a home from
// /etc/skel, ~/.ssh/authorized_keys (0600 in a 0700 .ssh, owned by the
// user), a locked password unless password_hash is given, and a sudoers
// drop-in (0440). On Raspberry Pi OS it disables the first-boot "create a
// user" wizard and re-enables the tty1 login prompt the wizard replaces,
// as rpi-imager's userconf does.
func Users(_ context.Context, c *Context) error {
	db, err := accounts.LoadDB(c.Root)
	if err != nil {
		return err
	}
	// Every missing group is reported at once, each at its position.
	var missing []error
	for i := range c.Spec.Users {
		u := &c.Spec.Users[i]
		for j, g := range u.Groups {
			if !db.GroupExists(g) {
				missing = append(missing, u.Errorf(fmt.Sprintf("groups[%d]", j), "group %q does not exist in the base image", g))
			}
		}
	}
	if len(missing) > 0 {
		return errors.Join(missing...)
	}
	homeMode := adduserDirMode(c)
	for i := range c.Spec.Users {
		u := &c.Spec.Users[i]
		nu := accounts.NewUser{
			Name: u.Name, GECOS: u.GECOS, Home: u.Home, Shell: u.Shell, PasswordHash: u.PasswordHash,
			Groups: u.Groups, LastChange: c.Time,
			UpdateShell: u.IsSet("shell"), UpdateGECOS: u.IsSet("gecos"),
		}
		if u.UID != nil {
			id := uint32(*u.UID)
			nu.UID = &id
		}
		acct, created, err := db.EnsureUser(nu)
		if err != nil {
			return u.Errorf("", "%v", err)
		}
		if created {
			if _, err := accounts.CopySkel(c.Root, "/etc/skel", acct.Home, homeMode, acct.UID, acct.GID, c.Time); err != nil {
				return fmt.Errorf("user %q: create home %s: %w", u.Name, acct.Home, err)
			}
			c.Log.Info("user created", "user", u.Name, "uid", acct.UID, "home", acct.Home)
		} else if existingUIDMismatch(u, acct) {
			c.Warnf("user %q already exists in the base with uid %d; uid = %d is ignored", u.Name, acct.UID, *u.UID)
		}
		if len(u.SSHAuthorizedKeys) > 0 {
			if err := writeAuthorizedKeys(c, acct, u.SSHAuthorizedKeys); err != nil {
				return fmt.Errorf("user %q: %w", u.Name, err)
			}
		}
		if err := writeSudoers(c, u); err != nil {
			return err
		}
	}
	if err := db.Save(c.Root, c.Time); err != nil {
		return err
	}
	return disableUserWizard(c)
}

func existingUIDMismatch(u *spec.User, acct accounts.User) bool {
	return u.UID != nil && uint32(*u.UID) != acct.UID
}

// adduserDirMode is DIR_MODE from /etc/adduser.conf (Debian 12: 0700).
func adduserDirMode(c *Context) iofs.FileMode {
	mode := iofs.FileMode(0o700)
	b, _, _ := ReadFile(c.Root, "/etc/adduser.conf")
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if ok && strings.TrimSpace(k) == "DIR_MODE" {
			if n, err := strconv.ParseUint(strings.Trim(strings.TrimSpace(v), `"`), 8, 32); err == nil && n <= 0o777 {
				mode = iofs.FileMode(n)
			}
		}
	}
	return mode
}

func writeAuthorizedKeys(c *Context, acct accounts.User, keys []string) error {
	dir := acct.Home + "/.ssh"
	if err := c.MkdirAll(c.Root, acct.Home); err != nil {
		return err
	}
	if err := c.Root.MkdirAll(dir, c.Attr(0o700, acct.UID, acct.GID)); err != nil {
		return err
	}
	// MkdirAll keeps an existing directory's attributes; .ssh must be
	// private and the user's whatever the base had.
	if err := c.Root.Chmod(dir, 0o700); err != nil {
		return err
	}
	if err := c.Root.Chown(dir, acct.UID, acct.GID); err != nil {
		return err
	}
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(strings.TrimSpace(k))
		b.WriteByte('\n')
	}
	return c.WriteFile(c.Root, dir+"/authorized_keys", b.String(), 0o600, acct.UID, acct.GID)
}

// sudoersPath is the user's drop-in; sudo ignores names with a dot, so
// the user name (which has none) is safe in it.
func sudoersPath(user string) string { return "/etc/sudoers.d/90-bakery-" + user }

func writeSudoers(c *Context, u *spec.User) error {
	p := sudoersPath(u.Name)
	var rule string
	switch u.Sudo {
	case spec.SudoNopasswd:
		rule = u.Name + " ALL=(ALL:ALL) NOPASSWD: ALL\n"
	case spec.SudoPassword:
		rule = u.Name + " ALL=(ALL:ALL) ALL\n"
	default:
		if Exists(c.Root, p) {
			return c.Root.Remove(p)
		}
		return nil
	}
	if !anyExists(c.Root, "/usr/bin/sudo", "/bin/sudo") {
		c.Warnf("user %q: sudo = %q, but sudo is not installed in the base image; the rule takes effect once it is", u.Name, u.Sudo)
	}
	if main, ok, _ := ReadFile(c.Root, "/etc/sudoers"); ok && !bytes.Contains(main, []byte("includedir /etc/sudoers.d")) {
		c.Warnf("user %q: /etc/sudoers does not include /etc/sudoers.d, so %s is not read", u.Name, p)
	}
	return c.WriteFile(c.Root, p, "# Written by bakery build (user \""+u.Name+"\", sudo = \""+u.Sudo+"\").\n"+rule, 0o440, 0, 0)
}

// disableUserWizard turns off Pi OS's first-boot user wizard: the
// userconfig service (which holds tty1 until a user is created) goes,
// the tty1 getty it replaced comes back, and the ssh banner telling
// users to run the wizard is removed.
func disableUserWizard(c *Context) error {
	if !c.Flavour.UserConfig {
		return nil
	}
	if err := c.DisableUnit("userconfig.service"); err != nil {
		return err
	}
	if systemd.Exists(c.Root, "getty@.service") && !systemd.IsMasked(c.Root, "getty@tty1.service") {
		if err := c.EnableUnit("getty@tty1.service"); err != nil {
			return err
		}
	}
	if p := "/etc/ssh/sshd_config.d/rename_user.conf"; Exists(c.Root, p) {
		if err := c.Root.Remove(p); err != nil {
			return err
		}
	}
	c.Log.Info("disabled the Raspberry Pi OS first-boot user wizard (userconfig.service)")
	return nil
}
