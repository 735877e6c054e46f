package step

import (
	"context"
	"fmt"
	"strings"
)

// FirstBoot collects what can only happen on the running machine:
// packages from the network, commands such as locale-gen, and settings
// for cloud-init. Finalize writes it out through the base's mechanism:
// a cloud-init NoCloud seed when the base has cloud-init, else
// bakery-firstboot.service, which runs once and removes itself.
type FirstBoot struct {
	// Packages are installed with apt (cloud-init's packages: module, or
	// apt-get install in bakery-firstboot).
	Packages []string
	// Commands run in order after the network is up.
	Commands []Command
	// CloudConfig holds generated top-level cloud-config keys (only used
	// when the base has cloud-init).
	CloudConfig map[string]any
	// MetaData holds generated NoCloud meta-data keys.
	MetaData map[string]string
}

// Command is one first-boot command.
type Command struct {
	Why  string
	Argv []string
}

// Run queues a command.
func (fb *FirstBoot) Run(why string, argv ...string) {
	for _, c := range fb.Commands {
		if strings.Join(c.Argv, "\x00") == strings.Join(argv, "\x00") {
			return
		}
	}
	fb.Commands = append(fb.Commands, Command{Why: why, Argv: argv})
}

// Set sets a generated cloud-config key.
func (fb *FirstBoot) Set(key string, v any) {
	if fb.CloudConfig == nil {
		fb.CloudConfig = map[string]any{}
	}
	fb.CloudConfig[key] = v
}

// Empty reports whether nothing needs the first boot.
func (fb *FirstBoot) Empty() bool { return len(fb.Packages) == 0 && len(fb.Commands) == 0 }

// Packages queues the spec's packages for the first boot.
func Packages(_ context.Context, c *Context) error {
	c.FirstBoot.Packages = append(c.FirstBoot.Packages, c.Spec.Packages...)
	return nil
}

// Paths of bakery's own first-boot script and unit.
const (
	FirstbootScript = "/usr/local/lib/bakery/firstboot"
	FirstbootUnit   = "bakery-firstboot.service"
)

// Finalize writes the collected first-boot work: the cloud-init seed
// (always, on cloud-init bases, so the instance-id is the build's and
// cloud-init runs fresh) or bakery-firstboot.service (when there is
// work). It also removes a leftover rpi-imager firstrun.sh hook so that
// exactly one mechanism is active. It runs after Golden.
func Finalize(ctx context.Context, c *Context) error {
	if err := removeFirstrun(c); err != nil {
		return err
	}
	if c.Flavour.FirstBoot == MechCloudInit {
		return writeCloudInitSeed(c)
	}
	if ci := c.Spec.CloudInit; ci != nil && ci.Declared() {
		return ci.Errorf("", "the base image has no cloud-init (or it is disabled), so cloud_init.user_data would never run; bakery does the same work with its own first-boot unit: use packages, file and systemd blocks instead")
	}
	if c.FirstBoot.Empty() {
		return nil
	}
	return writeFirstbootUnit(c)
}

// removeFirstrun drops rpi-imager's firstrun.sh hook (systemd.run= on
// cmdline.txt) that an earlier customisation of the base may have left.
func removeFirstrun(c *Context) error {
	removed := false
	err := c.EditCmdline(func(cl *Cmdline) {
		if cl.Remove("systemd.run", nil) {
			removed = true
			cl.Remove("systemd.run_success_action", nil)
			cl.Remove("systemd.run_failure_action", nil)
			cl.Remove("systemd.unit", func(v string) bool { return v == "kernel-command-line.target" })
		}
	})
	if err != nil {
		return err
	}
	if removed {
		c.Warnf("removed a systemd.run= first-boot hook from cmdline.txt: bakery's %s does first-boot work", c.Flavour.FirstBoot)
		if c.Boot != nil && Exists(c.Boot, "/firstrun.sh") {
			if err := c.Boot.Remove("/firstrun.sh"); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeFirstbootUnit(c *Context) error {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# Written by bakery build: first-boot work that needs the running system.\n")
	b.WriteString("# bakery-firstboot.service runs this once; on success it disables and removes\n# itself, on failure (no network yet) it runs again at the next boot.\nset -eu\n")
	b.WriteString("export DEBIAN_FRONTEND=noninteractive\n")
	for _, cmd := range c.FirstBoot.Commands {
		fmt.Fprintf(&b, "\necho %s\n%s\n", shellQuote("bakery-firstboot: "+cmd.Why), shellJoin(cmd.Argv))
	}
	if len(c.FirstBoot.Packages) > 0 {
		pk := append([]string{"apt-get", "install", "-y", "--no-install-recommends"}, c.FirstBoot.Packages...)
		fmt.Fprintf(&b, "\necho %s\napt-get update\n%s\n", shellQuote("bakery-firstboot: install "+strings.Join(c.FirstBoot.Packages, " ")), shellJoin(pk))
	}
	fmt.Fprintf(&b, "\nsystemctl disable %s\nrm -f /etc/systemd/system/%s %s\n", FirstbootUnit, FirstbootUnit, FirstbootScript)
	if err := c.WriteFile(c.Root, FirstbootScript, b.String(), 0o755, 0, 0); err != nil {
		return err
	}
	unit := `[Unit]
Description=bakery first-boot setup (runs once, then removes itself)
Documentation=https://github.com/bakeryhq/bakery/blob/main/docs/build.md
Wants=network-online.target
After=network-online.target
ConditionPathExists=` + FirstbootScript + `

[Service]
Type=oneshot
ExecStart=` + FirstbootScript + `
TimeoutStartSec=1h
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
`
	if err := c.WriteUnit(FirstbootUnit, unit); err != nil {
		return err
	}
	return c.EnableUnit(FirstbootUnit)
}

// shellQuote quotes s for POSIX sh.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func shellJoin(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}
