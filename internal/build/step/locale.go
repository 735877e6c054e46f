package step

import (
	"bufio"
	"bytes"
	"context"
	"strings"
)

// Locale sets the time zone (/etc/timezone and the /etc/localtime link,
// checked against the base's zoneinfo), the locale (/etc/default/locale,
// enabled in /etc/locale.gen, and compiled at first boot with locale-gen
// when the base does not have it compiled) and the keyboard
// (/etc/default/keyboard, read by console-setup and X).
func Locale(_ context.Context, c *Context) error {
	s := c.Spec
	if s.Timezone != "" {
		if err := setTimezone(c, s.Timezone); err != nil {
			return err
		}
	}
	if s.Locale != "" {
		if err := setLocale(c, s.Locale); err != nil {
			return err
		}
	}
	if k := s.Keyboard; k != nil {
		err := c.EditFile(c.Root, "/etc/default/keyboard", 0o644, func(old []byte, _ bool) ([]byte, error) {
			out := string(old)
			out = setShellVar(out, "XKBMODEL", k.Model, true)
			out = setShellVar(out, "XKBLAYOUT", k.Layout, true)
			out = setShellVar(out, "XKBVARIANT", k.Variant, true)
			out = setShellVar(out, "XKBOPTIONS", k.Options, true)
			if !strings.Contains(out, "BACKSPACE=") {
				out = setShellVar(out, "BACKSPACE", "guess", true)
			}
			return []byte(out), nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func setTimezone(c *Context, tz string) error {
	zone := "/usr/share/zoneinfo/" + tz
	if Exists(c.Root, "/usr/share/zoneinfo") {
		fi, err := c.Root.Stat(zone)
		if err != nil || !fi.IsRegular() {
			return c.Spec.Errorf("timezone", "timezone %q does not exist in the base image (no %s)", tz, zone)
		}
	} else {
		c.Warnf("the base has no /usr/share/zoneinfo (tzdata not installed); /etc/localtime will dangle until it is")
	}
	if err := c.WriteFile(c.Root, "/etc/timezone", tz+"\n", 0o644, 0, 0); err != nil {
		return err
	}
	if Exists(c.Root, "/etc/localtime") {
		if err := c.Root.Remove("/etc/localtime"); err != nil {
			return err
		}
	}
	return c.Root.Symlink(zone, "/etc/localtime", c.Attr(0o777, 0, 0))
}

// setLocale writes LANG and makes sure the locale will exist.
func setLocale(c *Context, loc string) error {
	if err := c.EditFile(c.Root, "/etc/default/locale", 0o644, func(old []byte, _ bool) ([]byte, error) {
		return []byte(setShellVar(string(old), "LANG", loc, false)), nil
	}); err != nil {
		return err
	}
	if builtinLocale(loc) {
		return nil
	}
	line := localeGenLine(c, loc)
	if err := c.EditFile(c.Root, "/etc/locale.gen", 0o644, func(old []byte, _ bool) ([]byte, error) {
		return []byte(enableLocaleGen(string(old), line)), nil
	}); err != nil {
		return err
	}
	if !localeCompiled(c, loc) {
		c.FirstBoot.Run("generate locale "+loc, "locale-gen")
	}
	return nil
}

// builtinLocale: glibc (2.35+) and Debian always have these.
func builtinLocale(l string) bool {
	switch strings.ToLower(strings.ReplaceAll(l, "-", "")) {
	case "c", "posix", "c.utf8":
		return true
	}
	return false
}

// localeGenLine is the /etc/locale.gen line for loc: from the base's list
// of supported locales when it has one, else "NAME CHARSET".
func localeGenLine(c *Context, loc string) string {
	if b, ok, _ := ReadFile(c.Root, "/usr/share/i18n/SUPPORTED"); ok {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == loc {
				return f[0] + " " + f[1]
			}
		}
	}
	charset := "ISO-8859-1"
	if _, cs, ok := strings.Cut(loc, "."); ok {
		charset, _, _ = strings.Cut(cs, "@")
	}
	return loc + " " + charset
}

// enableLocaleGen uncomments the locale's line or appends it.
func enableLocaleGen(old, line string) string {
	lines := strings.Split(strings.TrimRight(old, "\n"), "\n")
	if old == "" {
		lines = nil
	}
	name := strings.Fields(line)[0]
	for i, l := range lines {
		t := strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(l), "#"))
		if f := strings.Fields(t); len(f) == 2 && f[0] == name {
			lines[i] = t
			return strings.Join(lines, "\n") + "\n"
		}
	}
	return strings.Join(append(lines, line), "\n") + "\n"
}

// localeCompiled checks for a compiled locale directory
// (/usr/lib/locale/en_IE.utf8). Locales inside locale-archive cannot be
// told apart cheaply, so an archive with a fresh locale.gen entry still
// gets locale-gen at first boot: slower once, never wrong.
func localeCompiled(c *Context, loc string) bool {
	name := loc
	if base, cs, ok := strings.Cut(loc, "."); ok {
		cs, mod, _ := strings.Cut(cs, "@")
		norm := strings.ToLower(strings.ReplaceAll(cs, "-", ""))
		name = base + "." + norm
		if mod != "" {
			name += "@" + mod
		}
	}
	return Exists(c.Root, "/usr/lib/locale/"+name+"/LC_CTYPE")
}
