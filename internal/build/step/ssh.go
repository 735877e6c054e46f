package step

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
)

// SSHDropIn is bakery's sshd configuration drop-in.
const SSHDropIn = "/etc/ssh/sshd_config.d/50-bakery.conf"

// SSHKeygenUnit regenerates host keys before sshd first starts.
const SSHKeygenUnit = "bakery-ssh-keygen.service"

// sshKeygenUnit runs ssh-keygen -A when no host key exists, before sshd.
// Where the base regenerates keys itself (Pi OS's
// regenerate_ssh_host_keys, cloud-init's ssh module, Debian's
// sshd-keygen) whichever runs first wins and the others find keys; the
// condition makes this unit a no-op after the first boot.
const sshKeygenUnit = `[Unit]
Description=Generate SSH host keys on first boot (bakery)
Documentation=https://github.com/bakeryhq/bakery/blob/main/docs/build.md
Before=ssh.service sshd.service
ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
`

// SSH configures sshd with a drop-in (keys-only by default, no root
// login), enables or disables the server unit through its [Install]
// section, and installs bakery-ssh-keygen.service so that host keys
// (removed by golden cleanup) exist before sshd first starts.
func SSH(_ context.Context, c *Context) error {
	s := c.Spec.SSH
	unit := c.Flavour.SSHUnit
	if unit == "" {
		if s.Declared() && s.Enabled {
			return s.Errorf("enabled", "OpenSSH server is not installed in the base image (no ssh.service or sshd.service); add openssh-server to packages and enable it with a systemd block, or set enabled = false")
		}
		c.Log.Info("no OpenSSH server in the base; ssh settings skipped")
		return nil
	}
	yesNo := map[bool]string{true: "yes", false: "no"}
	conf := fmt.Sprintf(`# Written by bakery build from the spec's ssh block.
PasswordAuthentication %s
KbdInteractiveAuthentication %s
PermitRootLogin %s
Port %d
`, yesNo[s.PasswordAuthentication], yesNo[s.PasswordAuthentication], s.PermitRootLogin, s.Port)
	if err := c.WriteFile(c.Root, SSHDropIn, conf, 0o644, 0, 0); err != nil {
		return err
	}
	if err := ensureSSHInclude(c); err != nil {
		return err
	}
	warnEarlierDropIns(c)
	c.FirstBoot.Set("ssh_pwauth", s.PasswordAuthentication)

	if s.Enabled {
		if err := c.EnableUnit(unit); err != nil {
			return s.Errorf("enabled", "enable %s: %v", unit, err)
		}
		// Debian's ssh.service does not start while this file exists.
		if p := "/etc/ssh/sshd_not_to_be_run"; Exists(c.Root, p) {
			if err := c.Root.Remove(p); err != nil {
				return err
			}
		}
	} else if err := c.DisableUnit(unit); err != nil {
		return err
	}
	if !c.Spec.Golden.SSHHostKeys && !s.Enabled {
		return nil
	}
	if err := c.WriteUnit(SSHKeygenUnit, sshKeygenUnit); err != nil {
		return err
	}
	return c.EnableUnit(SSHKeygenUnit)
}

// ensureSSHInclude makes sshd_config read the drop-in directory, adding
// the Include line Debian has had since bullseye at the top when missing.
func ensureSSHInclude(c *Context) error {
	return c.EditFile(c.Root, "/etc/ssh/sshd_config", 0o644, func(old []byte, exists bool) ([]byte, error) {
		if !exists {
			return []byte("Include /etc/ssh/sshd_config.d/*.conf\n"), nil
		}
		for _, l := range strings.Split(string(old), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 && strings.EqualFold(f[0], "Include") && strings.Contains(l, "sshd_config.d") {
				return old, nil
			}
		}
		return append([]byte("Include /etc/ssh/sshd_config.d/*.conf\n"), old...), nil
	})
}

// warnEarlierDropIns warns about drop-ins read before ours that set the
// same options: sshd keeps the first value it reads.
func warnEarlierDropIns(c *Context) {
	entries, err := c.Root.ReadDir("/etc/ssh/sshd_config.d")
	if err != nil {
		return
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	ours := map[string]bool{"passwordauthentication": true, "kbdinteractiveauthentication": true, "permitrootlogin": true, "port": true}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name, ".conf") || e.Name >= "50-bakery.conf" {
			continue
		}
		b, ok, err := ReadFile(c.Root, "/etc/ssh/sshd_config.d/"+e.Name)
		if err != nil || !ok {
			continue
		}
		for _, l := range bytes.Split(b, []byte("\n")) {
			f := strings.Fields(string(l))
			if len(f) > 1 && ours[strings.ToLower(f[0])] {
				c.Warnf("/etc/ssh/sshd_config.d/%s sets %s and is read before %s, so its value wins", e.Name, f[0], SSHDropIn)
				break
			}
		}
	}
}
