package step

import (
	"bytes"
	"encoding/binary"
	"strings"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/image"
	"github.com/bakeryhq/bakery/internal/systemd"
)

// Network stacks a base may use.
const (
	StackNetworkManager = "networkmanager"
	StackNetworkd       = "networkd"
	StackDhcpcd         = "dhcpcd"
	StackIfupdown       = "ifupdown"
)

// First-boot mechanisms.
const (
	// MechCloudInit: cloud-init reads a NoCloud seed bakery writes.
	MechCloudInit = "cloud-init"
	// MechSystemd: bakery-firstboot.service runs once and removes itself.
	MechSystemd = "bakery-firstboot"
)

// Flavour is what the build learned about the base image: which
// mechanisms it uses, so each step writes what the base actually reads.
type Flavour struct {
	// OSRelease is /etc/os-release.
	OSRelease map[string]string `json:"os_release,omitempty"`
	// RaspberryPiOS: raspberrypi-sys-mods is installed, or the boot
	// partition holds config.txt.
	RaspberryPiOS bool `json:"raspberry_pi_os"`
	// Arch is the Debian architecture of /bin/sh (arm64, armhf, amd64,
	// i386, riscv64), "" when unknown.
	Arch string `json:"arch,omitempty"`
	// CloudInit: cloud-init is installed (and not disabled).
	CloudInit bool `json:"cloud_init"`
	// FirstBoot is MechCloudInit or MechSystemd.
	FirstBoot string `json:"first_boot"`
	// Seed is where the NoCloud seed goes: "boot" (the boot partition's
	// root, with ds=nocloud on cmdline.txt) or "/var/lib/cloud/seed/nocloud".
	Seed string `json:"seed,omitempty"`
	// Network is the network stack (Stack*), "" when none was found.
	Network string `json:"network,omitempty"`
	// WPASupplicant is installed.
	WPASupplicant bool `json:"wpa_supplicant"`
	// Resolved: systemd-resolved is installed.
	Resolved bool `json:"resolved"`
	// SSHUnit is the OpenSSH server unit ("ssh.service" on Debian,
	// "sshd.service" elsewhere), "" when sshd is not installed.
	SSHUnit string `json:"ssh_unit,omitempty"`
	// UserConfig: Pi OS's first-boot user wizard (userconfig.service).
	UserConfig bool `json:"userconfig"`
}

// SeedBoot is Flavour.Seed for a seed on the boot partition.
const SeedBoot = "boot"

// SeedRootDir is the NoCloud seed directory in the root filesystem.
const SeedRootDir = "/var/lib/cloud/seed/nocloud"

// DetectFlavour inspects the root (and boot) filesystems.
func DetectFlavour(im *image.Image, root, boot fs.Filesystem) *Flavour {
	fl := &Flavour{}
	if im != nil {
		fl.OSRelease, _ = im.OSRelease()
	}
	fl.RaspberryPiOS = Exists(root, "/usr/lib/raspberrypi-sys-mods") || Exists(root, "/lib/raspberrypi-sys-mods") ||
		(boot != nil && Exists(boot, "/config.txt"))
	fl.Arch = detectArch(root)

	// cloud-init counts when installed and not disabled by
	// /etc/cloud/cloud-init.disabled (or masked).
	if anyExists(root, "/usr/bin/cloud-init", "/bin/cloud-init") && systemd.Exists(root, "cloud-init.service") &&
		!Exists(root, "/etc/cloud/cloud-init.disabled") && !systemd.IsMasked(root, "cloud-init.service") {
		fl.CloudInit = true
		fl.FirstBoot = MechCloudInit
		fl.Seed = SeedRootDir
		if fl.RaspberryPiOS && boot != nil {
			fl.Seed = SeedBoot
		}
	} else {
		fl.FirstBoot = MechSystemd
	}

	enabled := func(unit string) bool {
		ok, _ := systemd.IsEnabled(root, unit)
		return ok
	}
	switch {
	case enabled("NetworkManager.service"):
		fl.Network = StackNetworkManager
	case enabled("systemd-networkd.service"):
		fl.Network = StackNetworkd
	case enabled("dhcpcd.service"):
		fl.Network = StackDhcpcd
	case anyExists(root, "/sbin/ifup", "/usr/sbin/ifup") && Exists(root, "/etc/network/interfaces") && enabled("networking.service"):
		fl.Network = StackIfupdown
	case anyExists(root, "/usr/sbin/NetworkManager", "/sbin/NetworkManager"):
		fl.Network = StackNetworkManager
	case systemd.Exists(root, "systemd-networkd.service"):
		fl.Network = StackNetworkd
	}
	fl.WPASupplicant = anyExists(root, "/sbin/wpa_supplicant", "/usr/sbin/wpa_supplicant") || systemd.Exists(root, "wpa_supplicant.service")
	fl.Resolved = systemd.Exists(root, "systemd-resolved.service")
	for _, u := range []string{"ssh.service", "sshd.service"} {
		if systemd.Exists(root, u) {
			fl.SSHUnit = u
			break
		}
	}
	fl.UserConfig = systemd.Exists(root, "userconfig.service")
	return fl
}

func anyExists(f fs.Filesystem, paths ...string) bool {
	for _, p := range paths {
		if _, err := f.Stat(p); err == nil {
			return true
		}
	}
	return false
}

// detectArch reads the ELF header of /bin/sh (following links).
func detectArch(root fs.Filesystem) string {
	for _, p := range []string{"/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/dash"} {
		fh, err := root.Open(p)
		if err != nil {
			continue
		}
		h := make([]byte, 20)
		_, err = fh.ReadAt(h, 0)
		fh.Close()
		if err != nil || !bytes.Equal(h[:4], []byte("\x7fELF")) {
			continue
		}
		var order binary.ByteOrder = binary.LittleEndian
		if h[5] == 2 {
			order = binary.BigEndian
		}
		switch order.Uint16(h[18:]) {
		case 183:
			return "arm64"
		case 40:
			return "armhf"
		case 62:
			return "amd64"
		case 3:
			return "i386"
		case 243:
			return "riscv64"
		}
	}
	return ""
}

// IsPiKernelArg reports cmdline tokens that belong to Pi OS's own first
// boot (resize, firstrun.sh).
func IsPiKernelArg(tok string) bool {
	return strings.HasPrefix(tok, "init=/usr/lib/raspberrypi-sys-mods/firstboot") ||
		strings.HasPrefix(tok, "init=/usr/lib/raspi-config/init_resize.sh")
}
