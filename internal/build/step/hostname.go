package step

import (
	"context"
	"strings"

	"github.com/bakeryhq/bakery/internal/spec"
)

// Hostname sets the host name, or, for "dhcp" (the default), makes sure
// none is baked in:
//
//   - /etc/hostname is emptied (kept, 0 bytes). systemd then has no static
//     host name and uses its fallback ("localhost") until the network
//     stack sets the transient name from DHCP: NetworkManager does so
//     when no static name is set, systemd-networkd does by default
//     (UseHostname=yes), and Debian's dhclient-script replaces a
//     "localhost" name.
//   - the 127.0.1.1 line Debian adds for the old name goes from /etc/hosts.
//   - on cloud-init bases, preserve_hostname keeps cloud-init from
//     setting a name (NoCloud would invent one from the instance-id).
//
// A fixed name goes into /etc/hostname, /etc/hosts (127.0.1.1) and the
// NoCloud meta-data (local-hostname), consistently.
func Hostname(_ context.Context, c *Context) error {
	name := c.Spec.Hostname
	if name == "" {
		name = spec.HostnameDHCP
	}
	short := name
	if i := strings.IndexByte(name, '.'); i > 0 {
		short = name[:i]
	}
	content := name + "\n"
	if name == spec.HostnameDHCP {
		content = ""
	} else {
		c.FirstBoot.MetaData = setMeta(c.FirstBoot.MetaData, "local-hostname", name)
	}
	c.FirstBoot.Set("preserve_hostname", true)
	if err := c.EditFile(c.Root, "/etc/hostname", 0o644, func([]byte, bool) ([]byte, error) {
		return []byte(content), nil
	}); err != nil {
		return err
	}
	return c.EditFile(c.Root, "/etc/hosts", 0o644, func(old []byte, exists bool) ([]byte, error) {
		return []byte(editHosts(string(old), name, short)), nil
	})
}

func setMeta(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}

// editHosts drops the 127.0.1.1 line(s) and, for a fixed name, adds
// "127.0.1.1 NAME [SHORT]" after the localhost line, as Debian's
// installer writes it.
func editHosts(old, name, short string) string {
	var lines []string
	if old == "" {
		lines = []string{"127.0.0.1\tlocalhost", "::1\t\tlocalhost ip6-localhost ip6-loopback"}
	} else {
		lines = strings.Split(strings.TrimRight(old, "\n"), "\n")
	}
	out := make([]string, 0, len(lines)+1)
	inserted := false
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == "127.0.1.1" {
			continue
		}
		out = append(out, l)
		if !inserted && name != spec.HostnameDHCP && len(f) > 1 && f[0] == "127.0.0.1" {
			out = append(out, hostsLine(name, short))
			inserted = true
		}
	}
	if !inserted && name != spec.HostnameDHCP {
		out = append([]string{hostsLine(name, short)}, out...)
	}
	return strings.Join(out, "\n") + "\n"
}

func hostsLine(name, short string) string {
	if short != name {
		return "127.0.1.1\t" + name + " " + short
	}
	return "127.0.1.1\t" + name
}
