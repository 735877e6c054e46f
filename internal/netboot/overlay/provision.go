package overlay

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/hostname"
)

// Adjustments are what a machine's fresh layer gets on top of the shared
// image, so that machines booting one image are still distinct machines.
type Adjustments struct {
	// Hostname goes into /etc/hostname (and the 127.0.1.1 line of
	// /etc/hosts); empty leaves /etc/hostname empty, so the name comes
	// from DHCP.
	Hostname string
	// NodeToken is written to /etc/bakery/node-token (mode 0600, root):
	// the machine's own API token (scope node:<id>), never on the image.
	NodeToken string
	// NodeEnv is written to /etc/bakery/node.env as KEY=value lines.
	NodeEnv map[string]string
}

// Units masked (by a link to /dev/null in /etc/systemd/system) because
// they grow or resize the root partition of an SD card the machine does
// not boot from.
var resizeUnitPrefixes = []string{"rpi-resize", "resize2fs_once", "bakery-grow"}

const maxConfigFile = 1 << 20

// Provision applies the adjustments to a layer and returns what it did, one
// line per change. It reads and writes only a few small files, so it costs
// the same for any image size.
func (r *Root) Provision(adj Adjustments) ([]string, error) {
	var done []string
	note := func(format string, args ...any) { done = append(done, fmt.Sprintf(format, args...)) }
	exists := func(p string) bool { _, err := r.Stat(p, false); return err == nil }

	if err := r.MkdirAll("/etc", 0o755); err != nil {
		return done, err
	}
	host := ""
	if adj.Hostname != "" {
		host = adj.Hostname + "\n"
	}
	if err := r.WriteFile("/etc/hostname", []byte(host), 0o644, 0, 0); err != nil {
		return done, err
	}
	if adj.Hostname != "" {
		note("/etc/hostname: %s", adj.Hostname)
		if b, err := r.ReadFile("/etc/hosts", maxConfigFile); err == nil {
			if err := r.WriteFile("/etc/hosts", []byte(hostname.Hosts(string(b), adj.Hostname)), 0o644, 0, 0); err != nil {
				return done, err
			}
			note("/etc/hosts: 127.0.1.1 %s", adj.Hostname)
		}
	} else {
		note("/etc/hostname: empty (the name comes from DHCP)")
	}

	if a, err := r.Stat("/etc/machine-id", false); err == nil && a.IsRegular() {
		if err := r.WriteFile("/etc/machine-id", nil, 0o444, 0, 0); err != nil {
			return done, err
		}
		note("/etc/machine-id: emptied (systemd makes a new one at first boot)")
	}
	if a, err := r.Stat("/var/lib/dbus/machine-id", false); err == nil && a.IsRegular() {
		if err := r.RemovePath("/var/lib/dbus/machine-id"); err != nil {
			return done, err
		}
		note("/var/lib/dbus/machine-id: removed")
	}

	if ents, err := r.ReadDirPath("/etc/ssh"); err == nil {
		var keys []string
		for _, e := range ents {
			if strings.HasPrefix(e.Name, "ssh_host_") {
				if err := r.RemovePath("/etc/ssh/" + e.Name); err != nil {
					return done, err
				}
				keys = append(keys, e.Name)
			}
		}
		if len(keys) > 0 {
			note("/etc/ssh: removed host keys %s", strings.Join(keys, ", "))
		}
		if exists("/usr/bin/ssh-keygen") {
			if err := r.installKeygen(); err != nil {
				return done, err
			}
			note("bakery-ssh-keygen.service: generates the host keys at first boot")
		}
	}

	if b, err := r.ReadFile("/etc/fstab", maxConfigFile); err == nil {
		out, dropped := FstabWithoutSD(b)
		if len(dropped) > 0 {
			if err := r.WriteFile("/etc/fstab", out, 0o644, 0, 0); err != nil {
				return done, err
			}
			for _, l := range dropped {
				note("/etc/fstab: commented out %q", l)
			}
		}
	}

	units, err := r.resizeUnits()
	if err != nil {
		return done, err
	}
	if len(units) > 0 {
		if err := r.MkdirAll("/etc/systemd/system", 0o755); err != nil {
			return done, err
		}
		for _, u := range units {
			if err := r.SymlinkPath("/dev/null", "/etc/systemd/system/"+u); err != nil {
				return done, err
			}
			note("%s: masked", u)
		}
	}

	if a, err := r.Stat("/etc/cloud", true); err == nil && a.IsDir() {
		if err := r.MkdirAll("/etc/cloud/cloud.cfg.d", 0o755); err != nil {
			return done, err
		}
		cfg := "# Written by bakery serve: the root is a per-machine NFS layer,\n# there is no partition to grow.\ngrowpart:\n  mode: \"off\"\nresize_rootfs: false\n"
		if err := r.WriteFile("/etc/cloud/cloud.cfg.d/99-bakery-nfsroot.cfg", []byte(cfg), 0o644, 0, 0); err != nil {
			return done, err
		}
		note("cloud-init: growpart and resize_rootfs off")
	}

	if adj.NodeToken != "" || len(adj.NodeEnv) > 0 {
		if err := r.MkdirAll("/etc/bakery", 0o755); err != nil {
			return done, err
		}
	}
	if adj.NodeToken != "" {
		if err := r.WriteFile("/etc/bakery/node-token", []byte(adj.NodeToken+"\n"), 0o600, 0, 0); err != nil {
			return done, err
		}
		if err := r.chmodPath("/etc/bakery/node-token", 0o600); err != nil {
			return done, err
		}
		note("/etc/bakery/node-token: this machine's API token (mode 0600)")
	}
	if len(adj.NodeEnv) > 0 {
		keys := make([]string, 0, len(adj.NodeEnv))
		for k := range adj.NodeEnv {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		b.WriteString("# Written by bakery serve for this machine.\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%s\n", k, adj.NodeEnv[k])
		}
		if err := r.WriteFile("/etc/bakery/node.env", []byte(b.String()), 0o644, 0, 0); err != nil {
			return done, err
		}
		note("/etc/bakery/node.env: %s", strings.Join(keys, ", "))
	}
	return done, nil
}

// SetNodeToken replaces the node token file (a new token was minted).
func (r *Root) SetNodeToken(token string) error {
	if err := r.MkdirAll("/etc/bakery", 0o755); err != nil {
		return err
	}
	if err := r.WriteFile("/etc/bakery/node-token", []byte(token+"\n"), 0o600, 0, 0); err != nil {
		return err
	}
	return r.chmodPath("/etc/bakery/node-token", 0o600)
}

// SetHostname rewrites /etc/hostname and /etc/hosts (the name changed).
func (r *Root) SetHostname(name string) error {
	host := ""
	if name != "" {
		host = name + "\n"
	}
	if err := r.WriteFile("/etc/hostname", []byte(host), 0o644, 0, 0); err != nil {
		return err
	}
	if name == "" {
		return nil
	}
	b, err := r.ReadFile("/etc/hosts", maxConfigFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return r.WriteFile("/etc/hosts", []byte(hostname.Hosts(string(b), name)), 0o644, 0, 0)
}

func (r *Root) chmodPath(p string, perm uint32) error {
	id, err := r.Resolve(nil, p, false)
	if err != nil {
		return err
	}
	_, err = r.Setattr(nil, id, SetAttr{Mode: &perm})
	return err
}

const keygenUnit = `# Written by bakery serve: this machine's root is a per-machine layer over a
# shared image, whose SSH host keys were removed so that each machine has its own.
[Unit]
Description=Generate this machine's SSH host keys (bakery NFS root)
Before=ssh.service sshd.service ssh.socket
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
`

func (r *Root) installKeygen() error {
	if err := r.MkdirAll("/etc/systemd/system/multi-user.target.wants", 0o755); err != nil {
		return err
	}
	if err := r.WriteFile("/etc/systemd/system/bakery-ssh-keygen.service", []byte(keygenUnit), 0o644, 0, 0); err != nil {
		return err
	}
	return r.SymlinkPath("/etc/systemd/system/bakery-ssh-keygen.service", "/etc/systemd/system/multi-user.target.wants/bakery-ssh-keygen.service")
}

// resizeUnits finds the units that would resize the SD card's root.
func (r *Root) resizeUnits() ([]string, error) {
	seen := map[string]bool{}
	for _, dir := range []string{"/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system"} {
		ents, err := r.ReadDirPath(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			for _, p := range resizeUnitPrefixes {
				if strings.HasPrefix(e.Name, p) && strings.Contains(e.Name, ".") && !strings.HasSuffix(e.Name, ".wants") && !strings.HasSuffix(e.Name, ".d") {
					seen[e.Name] = true
				}
			}
		}
	}
	if _, err := r.Stat("/etc/init.d/resize2fs_once", false); err == nil {
		seen["resize2fs_once.service"] = true
	}
	var out []string
	for u := range seen {
		if a, err := r.Stat("/etc/systemd/system/"+u, false); err == nil && a.Type() == TypeLink && a.Target == "/dev/null" {
			continue // already masked
		}
		out = append(out, u)
	}
	sort.Strings(out)
	return out, nil
}

// FstabWithoutSD comments out the fstab lines that mount the SD card (or
// any local disk by PARTUUID, UUID or LABEL) at / or /boot*, and any
// /dev/mmcblk device: with an NFS root they would fail or mount the wrong
// disk. It returns the new file and the lines it commented out.
func FstabWithoutSD(b []byte) ([]byte, []string) {
	lines := strings.SplitAfter(string(b), "\n")
	var dropped []string
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		dev, mnt := f[0], f[1]
		local := strings.HasPrefix(dev, "PARTUUID=") || strings.HasPrefix(dev, "UUID=") || strings.HasPrefix(dev, "LABEL=") ||
			strings.HasPrefix(dev, "PARTLABEL=") || strings.HasPrefix(dev, "/dev/")
		if strings.HasPrefix(dev, "/dev/mmcblk") || local && (mnt == "/" || mnt == "/boot" || strings.HasPrefix(mnt, "/boot/")) {
			dropped = append(dropped, strings.TrimRight(l, "\r\n"))
			lines[i] = "# bakery: NFS root, no SD card: " + l
			if !strings.HasSuffix(lines[i], "\n") {
				lines[i] += "\n"
			}
		}
	}
	return []byte(strings.Join(lines, "")), dropped
}
