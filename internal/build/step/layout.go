package step

import (
	"context"
	"fmt"
	"strings"

	"github.com/bakeryhq/bakery/internal/spec"
	"github.com/bakeryhq/bakery/internal/systemd"
)

// LayoutResult is what the pipeline did to the partition table before
// the filesystems were opened; the layout step writes the matching
// configuration inside the image.
type LayoutResult struct {
	// Table is the final table type ("mbr" or "gpt").
	Table string `json:"table"`
	// Converted is set when the table type changed.
	Converted bool `json:"converted,omitempty"`
	// PartUUIDs maps old PARTUUIDs (lower-case, as cmdline.txt and fstab
	// write them) to new ones when the table was converted.
	PartUUIDs map[string]string `json:"-"`
	// RootIndex is the root partition's number; RootGrown its new size
	// when root_size grew it (0 otherwise).
	RootIndex int   `json:"root_index"`
	RootGrown int64 `json:"root_grown_to,omitempty"`
	// Added are the spec's partitions, in order.
	Added []AddedPartition `json:"added,omitempty"`
	// Grow is the partition that fills the card at first boot (nil: none).
	Grow *GrowTarget `json:"grow,omitempty"`
	// ImageSize is the final image size.
	ImageSize int64 `json:"image_size"`
}

// AddedPartition is a partition the layout added after root.
type AddedPartition struct {
	Spec     *spec.Partition `json:"-"`
	Name     string          `json:"name"`
	Index    int             `json:"index"`
	Start    int64           `json:"start"`
	Size     int64           `json:"size"`
	PartUUID string          `json:"partuuid"`
	// FSUUID is the filesystem UUID: of the ext4 made at build time, or
	// the one mkfs.xfs is given at first boot; empty for "none".
	FSUUID string `json:"fs_uuid,omitempty"`
}

// GrowTarget names the partition bakery-grow.service enlarges.
type GrowTarget struct {
	Index int    `json:"index"`
	Name  string `json:"name"`
	// FS is "ext4", "xfs" or "none".
	FS    string `json:"fs"`
	Mount string `json:"mount,omitempty"`
}

// Bakery's first-boot growth.
const (
	GrowScript = "/usr/local/lib/bakery/grow"
	GrowUnit   = "bakery-grow.service"
	MkfsScript = "/usr/local/lib/bakery/mkfs-xfs"
)

// Layout writes what the new partition layout needs inside the image:
// PARTUUID references after a table conversion (cmdline.txt, fstab),
// fstab entries (by UUID, with nofail) and mount points for added
// partitions, first-boot mkfs units for xfs-at-boot partitions, and
// bakery-grow.service, which replaces Raspberry Pi OS's own root
// expansion (init=.../firstboot on cmdline.txt, resize2fs_once) and
// cloud-init's growpart.
func Layout(_ context.Context, c *Context) error {
	lr := c.Layout
	if lr == nil {
		return nil
	}
	if len(lr.PartUUIDs) > 0 {
		if err := c.EditCmdline(func(cl *Cmdline) {
			for i, t := range cl.Tokens {
				cl.Tokens[i] = replacePartUUIDs(t, lr.PartUUIDs)
			}
		}); err != nil {
			return err
		}
		if err := c.EditFile(c.Root, "/etc/fstab", 0o644, func(old []byte, exists bool) ([]byte, error) {
			if !exists {
				return nil, nil
			}
			return []byte(replacePartUUIDs(string(old), lr.PartUUIDs)), nil
		}); err != nil {
			return err
		}
	}
	if err := fstabEntries(c, lr); err != nil {
		return err
	}
	for _, a := range lr.Added {
		if a.Spec.Filesystem == spec.FSXFSAtBoot {
			if err := xfsAtBoot(c, a); err != nil {
				return err
			}
		}
	}
	if err := removePiExpand(c); err != nil {
		return err
	}
	if lr.Grow == nil {
		return nil
	}
	return installGrow(c, lr.Grow)
}

// replacePartUUIDs swaps PARTUUID=old for PARTUUID=new (case-insensitively).
func replacePartUUIDs(s string, m map[string]string) string {
	for old, nu := range m {
		for _, form := range []string{old, strings.ToUpper(old)} {
			s = strings.ReplaceAll(s, "PARTUUID="+form, "PARTUUID="+nu)
		}
	}
	return s
}

const fstabMarker = "# bakery: partition "

func fstabEntries(c *Context, lr *LayoutResult) error {
	var lines []string
	for _, a := range lr.Added {
		p := a.Spec
		if p.Mount == "" || p.Filesystem == spec.FSNone {
			continue
		}
		if err := c.MkdirAll(c.Root, p.Mount); err != nil {
			return err
		}
		opts := p.Options
		if !strings.Contains(","+opts+",", ",nofail,") {
			opts += ",nofail"
		}
		fstype, pass := "ext4", "2"
		if p.Filesystem == spec.FSXFSAtBoot {
			fstype, pass = "xfs", "0"
			opts += ",x-systemd.requires=" + mkfsUnit(a)
		}
		lines = append(lines, fmt.Sprintf("%s%s\nUUID=%s  %s  %s  %s  0  %s", fstabMarker, a.Name, a.FSUUID, p.Mount, fstype, opts, pass))
	}
	if len(lines) == 0 {
		return nil
	}
	return c.EditFile(c.Root, "/etc/fstab", 0o644, func(old []byte, _ bool) ([]byte, error) {
		out := strings.TrimRight(string(old), "\n")
		if out != "" {
			out += "\n"
		}
		return []byte(out + strings.Join(lines, "\n") + "\n"), nil
	})
}

func mkfsUnit(a AddedPartition) string { return "bakery-mkfs-" + a.Name + ".service" }

// escapePath is `systemd-escape --path`.
func escapePath(p string) string {
	p = strings.Trim(p, "/")
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		ch := p[i]
		switch {
		case ch == '/':
			b.WriteByte('-')
		case ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '_' || ch == '.' && i > 0:
			b.WriteByte(ch)
		default:
			fmt.Fprintf(&b, `\x%02x`, ch)
		}
	}
	return b.String()
}

const mkfsXFSScript = `#!/bin/sh
# Written by bakery build: make an XFS filesystem on first boot, once.
# Usage: mkfs-xfs DEVICE LABEL UUID
set -eu
dev=$1 label=$2 uuid=$3
if [ -n "$(blkid -p -o value -s TYPE "$dev" 2>/dev/null || true)" ]; then
	exit 0 # already has a filesystem
fi
if ! command -v mkfs.xfs >/dev/null 2>&1; then
	echo "mkfs-xfs: installing xfsprogs" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends xfsprogs ||
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends xfsprogs; }
fi
mkfs.xfs -q -L "$label" -m uuid="$uuid" "$dev"
`

// xfsAtBoot writes the unit that formats an xfs-at-boot partition. When
// the base has mkfs.xfs it runs early, before local mounts; otherwise it
// installs xfsprogs once the network is up, and the (nofail) mount waits
// for it through x-systemd.requires.
func xfsAtBoot(c *Context, a AddedPartition) error {
	if err := c.WriteFile(c.Root, MkfsScript, mkfsXFSScript, 0o755, 0, 0); err != nil {
		return err
	}
	dev := "/dev/disk/by-partuuid/" + a.PartUUID
	devUnit := escapePath(dev) + ".device"
	haveXFS := anyExists(c.Root, "/sbin/mkfs.xfs", "/usr/sbin/mkfs.xfs")
	deps := "DefaultDependencies=no\nAfter=" + GrowUnit + " systemd-remount-fs.service\nBefore=shutdown.target\nConflicts=shutdown.target\n"
	if !haveXFS {
		deps = "After=" + GrowUnit + " network-online.target\nWants=network-online.target\n"
		c.Warnf("partition %q: the base has no mkfs.xfs; the first boot installs xfsprogs from the network before formatting, so %s is mounted late on that boot", a.Name, a.Spec.Mount)
	}
	unit := fmt.Sprintf(`[Unit]
Description=Make the XFS filesystem of partition %q on first boot (bakery)
Documentation=https://github.com/bakeryhq/bakery/blob/main/docs/build.md
%sRequires=%s
After=%s

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=%s %s %s %s

[Install]
WantedBy=multi-user.target
`, a.Name, deps, devUnit, devUnit, MkfsScript, dev, a.Spec.Label, a.FSUUID)
	if err := c.WriteUnit(mkfsUnit(a), unit); err != nil {
		return err
	}
	return c.EnableUnit(mkfsUnit(a))
}

// removePiExpand drops Raspberry Pi OS's own first-boot expansion.
func removePiExpand(c *Context) error {
	removed := false
	if err := c.EditCmdline(func(cl *Cmdline) {
		out := cl.Tokens[:0:0]
		for _, t := range cl.Tokens {
			if IsPiKernelArg(t) {
				removed = true
				continue
			}
			out = append(out, t)
		}
		cl.Tokens = out
	}); err != nil {
		return err
	}
	if removed {
		c.Log.Info("removed Raspberry Pi OS's first-boot root expansion (init= on cmdline.txt); bakery-grow.service replaces it")
	}
	// Older releases: the resize2fs_once init script and rpi-resize unit.
	for _, u := range []string{"resize2fs_once.service", "rpi-resize.service"} {
		if systemd.Exists(c.Root, u) || Exists(c.Root, "/etc/init.d/"+strings.TrimSuffix(u, ".service")) {
			if _, err := systemd.Mask(c.Root, u); err != nil {
				return err
			}
		}
	}
	// cloud-init must not grow root on its own.
	c.FirstBoot.Set("growpart", map[string]any{"mode": "off"})
	c.FirstBoot.Set("resize_rootfs", false)
	return nil
}

// GrowScriptSource (installed as GrowScript) enlarges partition N to the end of the disk holding the
// root filesystem, then its filesystem; for GPT it first moves the backup
// header to the real end of the card (sfdisk --relocate), as growpart
// does. Tests run it against loop devices (BAKERY_GROW_DISK).
const GrowScriptSource = `#!/bin/sh
# Written by bakery build: grow a partition to the end of the card on
# first boot, then its filesystem. Works with MBR and GPT.
# Usage: grow PARTNUM ext4|xfs|none [MOUNTPOINT]
set -eu
num=$1 fstype=$2 mnt=${3:-}
disk=${BAKERY_GROW_DISK:-}
if [ -z "$disk" ]; then
	src=$(findmnt -no SOURCE /)
	disk=/dev/$(lsblk -no PKNAME "$src" | head -n 1)
fi
case $disk in
*[0-9]) part=${disk}p$num ;;
*) part=$disk$num ;;
esac
[ -b "$disk" ] || { echo "grow: $disk is not a block device" >&2; exit 1; }

if sfdisk --dump "$disk" | grep -q '^label: gpt'; then
	sfdisk --relocate gpt-bak-std "$disk"
fi
echo ', +' | sfdisk --no-reread --no-tell-kernel -N "$num" "$disk"
partx -u -n "$num" "$disk" 2>/dev/null || blockdev --rereadpt "$disk" 2>/dev/null || true
udevadm settle 2>/dev/null || true

mounted() { awk -v p="$1" '$1 == p { found = 1 } END { exit !found }' /proc/mounts; }
case $fstype in
ext4)
	if ! mounted "$part"; then
		e2fsck -f -p "$part" || [ $? -le 1 ]
	fi
	resize2fs "$part"
	;;
xfs)
	if [ -n "$mnt" ] && mounted "$part"; then
		xfs_growfs "$mnt"
	fi
	# An unformatted xfs-at-boot partition is formatted to its full size.
	;;
none) ;;
*) echo "grow: unknown filesystem $fstype" >&2; exit 1 ;;
esac
echo "grow: partition $num of $disk now fills the disk"
`

func installGrow(c *Context, g *GrowTarget) error {
	if err := c.WriteFile(c.Root, GrowScript, GrowScriptSource, 0o755, 0, 0); err != nil {
		return err
	}
	args := fmt.Sprintf("%d %s", g.Index, g.FS)
	if g.Mount != "" {
		args += " " + g.Mount
	}
	unit := fmt.Sprintf(`[Unit]
Description=Grow partition %d (%s) to fill the card on first boot (bakery)
Documentation=https://github.com/bakeryhq/bakery/blob/main/docs/build.md
DefaultDependencies=no
After=systemd-remount-fs.service
Before=local-fs-pre.target shutdown.target
Wants=local-fs-pre.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=%s %s
ExecStartPost=/bin/systemctl --no-reload disable %s

[Install]
WantedBy=sysinit.target
`, g.Index, g.Name, GrowScript, args, GrowUnit)
	if err := c.WriteUnit(GrowUnit, unit); err != nil {
		return err
	}
	return c.EnableUnit(GrowUnit)
}
