package demo

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	iofs "io/fs"
	"sort"
	"strings"
)

// entry is one thing to create in the demo root or boot filesystem.
type entry struct {
	path    string
	mode    iofs.FileMode // permissions; ModeDir / ModeSymlink for type
	uid     uint32
	gid     uint32
	content string // file content, or the link target for symlinks
}

func dir(p string) entry     { return entry{path: p, mode: iofs.ModeDir | 0o755} }
func file(p, c string) entry { return entry{path: p, mode: 0o644, content: c} }
func fileMode(p string, m iofs.FileMode, c string) entry {
	return entry{path: p, mode: m, content: c}
}
func link(p, target string) entry {
	return entry{path: p, mode: iofs.ModeSymlink | 0o777, content: target}
}
func owned(e entry, uid, gid uint32) entry {
	e.uid, e.gid = uid, gid
	return e
}

// Partition geometry of the demo image, as Raspberry Pi OS lays it out.
const (
	bootStart = 4 << 20
	bootSize  = 512 << 20
)

const osRelease = `PRETTY_NAME="Bakery Demo OS 12 (bookworm, Raspberry Pi OS-like)"
NAME="Bakery Demo OS"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
ID_LIKE=debian
HOME_URL="https://github.com/bakeryhq/bakery"
`

const passwd = `root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
bin:x:2:2:bin:/bin:/usr/sbin/nologin
sys:x:3:3:sys:/dev:/usr/sbin/nologin
sync:x:4:65534:sync:/bin:/bin/sync
games:x:5:60:games:/usr/games:/usr/sbin/nologin
man:x:6:12:man:/var/cache/man:/usr/sbin/nologin
lp:x:7:7:lp:/var/spool/lpd:/usr/sbin/nologin
mail:x:8:8:mail:/var/mail:/usr/sbin/nologin
news:x:9:9:news:/var/spool/news:/usr/sbin/nologin
proxy:x:13:13:proxy:/bin:/usr/sbin/nologin
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
backup:x:34:34:backup:/var/backups:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin
systemd-timesync:x:997:997:systemd Time Synchronization:/:/usr/sbin/nologin
messagebus:x:100:107::/nonexistent:/usr/sbin/nologin
sshd:x:101:65534::/run/sshd:/usr/sbin/nologin
pi:x:1000:1000:,,,:/home/pi:/bin/bash
`

// The demo user's password is locked ("!"), as on a fresh Pi OS image.
const shadow = `root:*:19800:0:99999:7:::
daemon:*:19800:0:99999:7:::
bin:*:19800:0:99999:7:::
sys:*:19800:0:99999:7:::
sync:*:19800:0:99999:7:::
games:*:19800:0:99999:7:::
man:*:19800:0:99999:7:::
lp:*:19800:0:99999:7:::
mail:*:19800:0:99999:7:::
news:*:19800:0:99999:7:::
proxy:*:19800:0:99999:7:::
www-data:*:19800:0:99999:7:::
backup:*:19800:0:99999:7:::
nobody:*:19800:0:99999:7:::
systemd-network:!*:19800::::::
systemd-timesync:!*:19800::::::
messagebus:!:19800::::::
sshd:!:19800::::::
pi:!:19800:0:99999:7:::
`

var groupNames = []struct {
	name string
	gid  int
	who  string
}{
	{"root", 0, ""}, {"daemon", 1, ""}, {"bin", 2, ""}, {"sys", 3, ""}, {"adm", 4, "pi"}, {"tty", 5, ""},
	{"disk", 6, ""}, {"lp", 7, ""}, {"mail", 8, ""}, {"news", 9, ""}, {"dialout", 20, "pi"}, {"cdrom", 24, "pi"},
	{"sudo", 27, "pi"}, {"audio", 29, "pi"}, {"www-data", 33, ""}, {"backup", 34, ""}, {"video", 44, "pi"},
	{"plugdev", 46, "pi"}, {"staff", 50, ""}, {"games", 60, "pi"}, {"users", 100, "pi"}, {"systemd-journal", 101, ""},
	{"input", 105, "pi"}, {"messagebus", 107, ""}, {"netdev", 108, "pi"}, {"ssh", 109, ""}, {"render", 110, "pi"},
	{"spi", 999, "pi"}, {"i2c", 998, "pi"}, {"gpio", 997, "pi"}, {"systemd-network", 996, ""},
	{"systemd-timesync", 995, ""}, {"nogroup", 65534, ""}, {"pi", 1000, ""},
}

func groupFiles() (group, gshadow string) {
	var g, gs strings.Builder
	for _, e := range groupNames {
		fmt.Fprintf(&g, "%s:x:%d:%s\n", e.name, e.gid, e.who)
		fmt.Fprintf(&gs, "%s:*::%s\n", e.name, e.who)
	}
	return g.String(), gs.String()
}

const sshdConfig = `# Demo sshd_config (Debian defaults)
Include /etc/ssh/sshd_config.d/*.conf
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem	sftp	/usr/lib/openssh/sftp-server
`

const configTxt = `# For more options and information see
# http://rptl.io/configtxt
dtparam=audio=on
camera_auto_detect=1
display_auto_detect=1
auto_initramfs=1
dtoverlay=vc4-kms-v3d
max_framebuffers=2
disable_fw_kms_setup=1
arm_64bit=1
disable_overscan=1
arm_boost=1

[cm4]
otg_mode=1

[cm5]
dtoverlay=dwc2,dr_mode=host

[all]
`

func unit(description, execStart, wantedBy string, extra string) string {
	return fmt.Sprintf("[Unit]\nDescription=%s\n%s\n[Service]\nType=oneshot\nExecStart=%s\n\n[Install]\nWantedBy=%s\n",
		description, extra, execStart, wantedBy)
}

// hostKey derives a deterministic ed25519 key in OpenSSH armour: the demo
// image is reproducible, and the key looks exactly like what a real image
// carries, so golden cleanup and audit have something real to find.
func hostKey(name string) (private, public string) {
	seed := sha256.Sum256([]byte("bakery demo host key " + name))
	key := ed25519.NewKeyFromSeed(seed[:])
	pub := key.Public().(ed25519.PublicKey)
	wire := sshString([]byte("ssh-ed25519"), pub)
	public = "ssh-ed25519 " + base64.StdEncoding.EncodeToString(wire) + " root@raspberrypi\n"

	var blob []byte
	blob = append(blob, "openssh-key-v1\x00"...)
	blob = append(blob, sshString([]byte("none"), []byte("none"), []byte{})...)
	blob = binary.BigEndian.AppendUint32(blob, 1)
	blob = append(blob, sshString(wire)...)
	var priv []byte
	check := binary.BigEndian.Uint32(seed[:4])
	priv = binary.BigEndian.AppendUint32(priv, check)
	priv = binary.BigEndian.AppendUint32(priv, check)
	priv = append(priv, sshString([]byte("ssh-ed25519"), pub, key, []byte("root@raspberrypi"))...)
	for i := byte(1); len(priv)%8 != 0; i++ {
		priv = append(priv, i)
	}
	blob = append(blob, sshString(priv)...)
	enc := base64.StdEncoding.EncodeToString(blob)
	var b strings.Builder
	b.WriteString("-----BEGIN OPENSSH PRIVATE KEY-----\n")
	for len(enc) > 70 {
		b.WriteString(enc[:70] + "\n")
		enc = enc[70:]
	}
	b.WriteString(enc + "\n-----END OPENSSH PRIVATE KEY-----\n")
	return b.String(), public
}

func sshString(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = binary.BigEndian.AppendUint32(out, uint32(len(p)))
		out = append(out, p...)
	}
	return out
}

// fakeELF is the 64-byte ELF header of an aarch64 executable: enough for
// tools (and bakery's architecture detection) to identify the image's
// architecture without shipping real binaries.
func fakeELF() string {
	h := make([]byte, 64)
	copy(h, "\x7fELF")
	h[4], h[5], h[6] = 2, 1, 1                 // 64-bit, little endian, version 1
	binary.LittleEndian.PutUint16(h[16:], 3)   // ET_DYN
	binary.LittleEndian.PutUint16(h[18:], 183) // EM_AARCH64
	binary.LittleEndian.PutUint32(h[20:], 1)
	binary.LittleEndian.PutUint16(h[52:], 64)
	return string(h) + "\n# placeholder binary of the bakery demo image\n"
}

// rootTree is the Debian/Raspberry Pi OS-like root filesystem.
func rootTree(bootPartUUID, rootPartUUID string) []entry {
	group, gshadow := groupFiles()
	e := []entry{
		link("/bin", "usr/bin"), link("/sbin", "usr/sbin"), link("/lib", "usr/lib"),
		dir("/usr"), dir("/usr/bin"), dir("/usr/sbin"), dir("/usr/lib"), dir("/usr/share"),
		dir("/boot"), dir("/boot/firmware"), dir("/dev"), dir("/proc"), dir("/sys"), dir("/run"),
		dir("/mnt"), dir("/media"), dir("/opt"), dir("/srv"),
		entry{path: "/tmp", mode: iofs.ModeDir | iofs.ModeSticky | 0o777},
		entry{path: "/root", mode: iofs.ModeDir | 0o700},
		dir("/home"), owned(entry{path: "/home/pi", mode: iofs.ModeDir | 0o755}, 1000, 1000),
		owned(fileMode("/home/pi/.bashrc", 0o644, "# ~/.bashrc\n[ -z \"$PS1\" ] && return\nHISTCONTROL=ignoreboth\n"), 1000, 1000),
		owned(fileMode("/home/pi/.profile", 0o644, "# ~/.profile\n. \"$HOME/.bashrc\"\n"), 1000, 1000),
		owned(fileMode("/home/pi/.bash_history", 0o600, "sudo apt update\nsudo raspi-config\n"), 1000, 1000),
		fileMode("/root/.bash_history", 0o600, "passwd pi\n"),
		fileMode("/root/.bashrc", 0o644, "# ~/.bashrc for root\n"),

		file("/usr/lib/os-release", osRelease),
		link("/etc/os-release", "../usr/lib/os-release"),
		fileMode("/usr/bin/dash", 0o755, fakeELF()),
		fileMode("/usr/bin/bash", 0o755, fakeELF()),
		link("/usr/bin/sh", "dash"),
		fileMode("/usr/bin/cloud-init", 0o755, "#!/usr/bin/python3\n# placeholder for cloud-init\n"),
		fileMode("/usr/sbin/sshd", 0o755, fakeELF()),
		fileMode("/usr/bin/ssh-keygen", 0o755, fakeELF()),
		fileMode("/usr/sbin/NetworkManager", 0o755, fakeELF()),
		fileMode("/usr/bin/raspi-config", 0o755, "#!/bin/sh\n# placeholder for raspi-config\n"),
		dir("/usr/lib/raspberrypi-sys-mods"),
		fileMode("/usr/lib/raspberrypi-sys-mods/firstboot", 0o755, "#!/bin/sh\n# Pi OS first boot: expands the root partition to fill the card, then reboots.\n"),
		fileMode("/usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys", 0o755, "#!/bin/sh\nssh-keygen -A\n"),
		dir("/usr/share/doc"),

		file("/etc/passwd", passwd),
		fileMode("/etc/shadow", 0o640, shadow),
		file("/etc/group", group),
		fileMode("/etc/gshadow", 0o640, gshadow),
		file("/etc/hostname", "raspberrypi\n"),
		file("/etc/hosts", "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\traspberrypi\n"),
		file("/etc/machine-id", "5f1b7a3c9d2e4f60a8b7c6d5e4f3a2b1\n"),
		file("/etc/timezone", "Europe/London\n"),
		link("/etc/localtime", "/usr/share/zoneinfo/Europe/London"),
		file("/etc/locale.gen", "en_GB.UTF-8 UTF-8\n"),
		file("/etc/default/locale", "LANG=en_GB.UTF-8\n"),
		file("/etc/default/keyboard", "XKBMODEL=\"pc105\"\nXKBLAYOUT=\"gb\"\nXKBVARIANT=\"\"\nXKBOPTIONS=\"\"\nBACKSPACE=\"guess\"\n"),
		file("/etc/fstab", fmt.Sprintf("proc            /proc           proc    defaults          0       0\nPARTUUID=%s  /boot/firmware  vfat    defaults          0       2\nPARTUUID=%s  /               ext4    defaults,noatime  0       1\n", bootPartUUID, rootPartUUID)),
		file("/etc/resolv.conf", "nameserver 192.168.1.1\n"),
		dir("/etc/skel"),
		file("/etc/skel/.bashrc", "# ~/.bashrc\n[ -z \"$PS1\" ] && return\nHISTCONTROL=ignoreboth\n"),
		file("/etc/skel/.profile", "# ~/.profile\n. \"$HOME/.bashrc\"\n"),
		file("/etc/skel/.bash_logout", "# ~/.bash_logout\n"),
		dir("/etc/sudoers.d"),
		fileMode("/etc/sudoers", 0o440, "Defaults\tenv_reset\nroot\tALL=(ALL:ALL) ALL\n%sudo\tALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n"),
		fileMode("/etc/sudoers.d/010_pi-nopasswd", 0o440, "pi ALL=(ALL) NOPASSWD: ALL\n"),

		dir("/etc/ssh"), dir("/etc/ssh/sshd_config.d"),
		file("/etc/ssh/sshd_config", sshdConfig),
		file("/etc/ssh/ssh_config", "Host *\n    SendEnv LANG LC_*\n    HashKnownHosts yes\n"),

		dir("/etc/NetworkManager"), dir("/etc/NetworkManager/conf.d"),
		entry{path: "/etc/NetworkManager/system-connections", mode: iofs.ModeDir | 0o700},
		file("/etc/NetworkManager/NetworkManager.conf", "[main]\nplugins=ifupdown,keyfile\n\n[ifupdown]\nmanaged=false\n"),
		dir("/etc/wpa_supplicant"),
		fileMode("/etc/wpa_supplicant/wpa_supplicant.conf", 0o600, "ctrl_interface=DIR=/var/run/wpa_supplicant GROUP=netdev\nupdate_config=1\n"),
		dir("/etc/network"),
		file("/etc/network/interfaces", "# interfaces(5) file used by ifup(8) and ifdown(8)\nsource /etc/network/interfaces.d/*\n"),
		dir("/etc/network/interfaces.d"),

		dir("/etc/cloud"), dir("/etc/cloud/cloud.cfg.d"), dir("/etc/cloud/templates"),
		file("/etc/cloud/cloud.cfg", "users:\n  - default\ndisable_root: true\ndatasource_list: [ NoCloud, None ]\ncloud_init_modules:\n  - seed_random\n  - write_files\n  - set_hostname\n  - update_hostname\n  - users_groups\n  - ssh\ncloud_config_modules:\n  - locale\n  - set_passwords\n  - timezone\n  - runcmd\ncloud_final_modules:\n  - scripts_user\n  - final_message\nsystem_info:\n  distro: debian\n  default_user:\n    name: pi\n    groups: [adm, dialout, sudo, audio, video, plugdev, users, input, netdev, gpio, i2c, spi]\n    sudo: [\"ALL=(ALL) NOPASSWD:ALL\"]\n    shell: /bin/bash\n"),
		file("/etc/cloud/cloud.cfg.d/99_raspberry-pi.cfg", "datasource:\n  NoCloud:\n    fs_label: bootfs\n"),
		dir("/var"), dir("/var/lib"), dir("/var/lib/cloud"), dir("/var/lib/cloud/instances"),
		dir("/var/lib/cloud/instances/demo-instance"),
		file("/var/lib/cloud/instances/demo-instance/boot-finished", "demo\n"),
		file("/var/lib/cloud/instances/demo-instance/user-data.txt", "#cloud-config\n{}\n"),
		link("/var/lib/cloud/instance", "/var/lib/cloud/instances/demo-instance"),
		dir("/var/lib/cloud/data"), file("/var/lib/cloud/data/instance-id", "demo-instance\n"),
		dir("/var/lib/dbus"), file("/var/lib/dbus/machine-id", "5f1b7a3c9d2e4f60a8b7c6d5e4f3a2b1\n"),
		dir("/var/lib/dpkg"), file("/var/lib/dpkg/status", dpkgStatus()), dir("/var/lib/dpkg/info"),
		dir("/var/log"), fileMode("/var/log/syslog", 0o640, "Nov 19 12:00:00 raspberrypi systemd[1]: Started demo.\n"),
		file("/var/log/dpkg.log", "2024-11-19 12:00:00 status installed demo:arm64 1.0\n"),
		dir("/var/log/journal"), dir("/var/cache"), dir("/var/tmp"), dir("/var/spool"),

		dir("/etc/systemd"), dir("/etc/systemd/system"), dir("/etc/systemd/network"),
		dir("/etc/systemd/system/multi-user.target.wants"), dir("/etc/systemd/system/sockets.target.wants"),
		dir("/etc/systemd/system/network-online.target.wants"),
		dir("/etc/systemd/system/cloud-init.target.wants"),
		dir("/usr/lib/systemd"), dir("/usr/lib/systemd/system"), dir("/usr/lib/systemd/network"),
		file("/usr/lib/systemd/system/ssh.service", "[Unit]\nDescription=OpenBSD Secure Shell server\nAfter=network.target auditd.service\n\n[Service]\nExecStartPre=/usr/sbin/sshd -t\nExecStart=/usr/sbin/sshd -D\nRestart=on-failure\n\n[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n"),
		file("/usr/lib/systemd/system/NetworkManager.service", "[Unit]\nDescription=Network Manager\n\n[Service]\nExecStart=/usr/sbin/NetworkManager --no-daemon\n\n[Install]\nWantedBy=multi-user.target\nAlias=dbus-org.freedesktop.NetworkManager.service\n"),
		file("/usr/lib/systemd/system/systemd-networkd.service", "[Unit]\nDescription=Network Configuration\n\n[Service]\nExecStart=/usr/lib/systemd/systemd-networkd\n\n[Install]\nWantedBy=multi-user.target\n"),
		file("/usr/lib/systemd/system/cloud-init.service", unit("Cloud-init: Network Stage", "/usr/bin/cloud-init init", "cloud-init.target", "")),
		file("/usr/lib/systemd/system/regenerate_ssh_host_keys.service", unit("Regenerate SSH host keys", "/usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys", "multi-user.target", "Before=ssh.service\nConditionFileIsExecutable=/usr/bin/ssh-keygen\n")),
		file("/usr/lib/systemd/system/userconfig.service", unit("User configuration dialog", "/usr/lib/userconf-pi/userconf-service", "multi-user.target", "Before=systemd-user-sessions.service\n")),
		file("/usr/lib/systemd/system/rpi-resize-swap-file.service", unit("Resize swap file", "/bin/true", "multi-user.target", "")),
		link("/etc/systemd/system/multi-user.target.wants/NetworkManager.service", "/usr/lib/systemd/system/NetworkManager.service"),
		link("/etc/systemd/system/multi-user.target.wants/regenerate_ssh_host_keys.service", "/usr/lib/systemd/system/regenerate_ssh_host_keys.service"),
		link("/etc/systemd/system/multi-user.target.wants/userconfig.service", "/usr/lib/systemd/system/userconfig.service"),
		link("/etc/systemd/system/cloud-init.target.wants/cloud-init.service", "/usr/lib/systemd/system/cloud-init.service"),
		link("/etc/systemd/system/dbus-org.freedesktop.NetworkManager.service", "/usr/lib/systemd/system/NetworkManager.service"),
		file("/etc/systemd/timesyncd.conf", "[Time]\n"),
		file("/etc/systemd/journald.conf", "[Journal]\n"),

		// Units a build enables or disables: consoles, networkd and
		// resolved, wpa_supplicant, and the pieces of a real first boot.
		file("/usr/lib/systemd/system/getty@.service", "[Unit]\nDescription=Getty on %I\nAfter=systemd-user-sessions.service\n\n[Service]\nExecStart=-/sbin/agetty -o '-p -- \\\\u' --noclear - $TERM\nType=idle\n\n[Install]\nWantedBy=getty.target\nDefaultInstance=tty1\n"),
		link("/usr/lib/systemd/system/autovt@.service", "getty@.service"),
		file("/usr/lib/systemd/system/getty.target", "[Unit]\nDescription=Login Prompts\n\n[Install]\nWantedBy=multi-user.target\n"),
		file("/usr/lib/systemd/system/systemd-resolved.service", "[Unit]\nDescription=Network Name Resolution\n\n[Service]\nExecStart=/usr/lib/systemd/systemd-resolved\n\n[Install]\nWantedBy=multi-user.target\nAlias=dbus-org.freedesktop.resolve1.service\n"),
		file("/usr/lib/systemd/system/wpa_supplicant.service", "[Unit]\nDescription=WPA supplicant\n\n[Service]\nType=dbus\nBusName=fi.w1.wpa_supplicant1\nExecStart=/sbin/wpa_supplicant -u -s -O /run/wpa_supplicant\n\n[Install]\nWantedBy=multi-user.target\nAlias=dbus-fi.w1.wpa_supplicant1.service\n"),
		file("/usr/lib/systemd/system/wpa_supplicant@.service", "[Unit]\nDescription=WPA supplicant daemon (interface-specific version)\nRequires=sys-subsystem-net-devices-%i.device\nAfter=sys-subsystem-net-devices-%i.device\n\n[Service]\nType=simple\nExecStart=/sbin/wpa_supplicant -c/etc/wpa_supplicant/wpa_supplicant-%I.conf -Dnl80211,wext -i%I\n\n[Install]\nWantedBy=multi-user.target\n"),
		file("/usr/lib/systemd/system/bluetooth.service", "[Unit]\nDescription=Bluetooth service\n\n[Service]\nExecStart=/usr/libexec/bluetooth/bluetoothd\n\n[Install]\nWantedBy=bluetooth.target\nAlias=dbus-org.bluez.service\n"),
		file("/usr/lib/systemd/system/apt-daily.timer", "[Unit]\nDescription=Daily apt download activities\n\n[Timer]\nOnCalendar=*-*-* 6,18:00\nRandomizedDelaySec=12h\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n"),
		link("/etc/systemd/system/bluetooth.target.wants/bluetooth.service", "/lib/systemd/system/bluetooth.service"),
		link("/etc/systemd/system/dbus-org.bluez.service", "/lib/systemd/system/bluetooth.service"),
		link("/etc/systemd/system/timers.target.wants/apt-daily.timer", "/lib/systemd/system/apt-daily.timer"),
		fileMode("/usr/sbin/wpa_supplicant", 0o755, fakeELF()),
		fileMode("/usr/bin/sudo", 0o4755, fakeELF()),
		fileMode("/usr/sbin/agetty", 0o755, fakeELF()),
		fileMode("/usr/bin/systemctl", 0o755, fakeELF()),
		file("/etc/login.defs", "# /etc/login.defs (Debian)\nMAIL_DIR        /var/mail\nUID_MIN\t\t\t 1000\nUID_MAX\t\t\t60000\nSYS_UID_MAX\t\t  999\nGID_MIN\t\t\t 1000\nGID_MAX\t\t\t60000\nSYS_GID_MAX\t\t  999\nENCRYPT_METHOD SHA512\n"),
		file("/etc/adduser.conf", "# /etc/adduser.conf (Debian 12)\nDSHELL=/bin/bash\nDHOME=/home\nSKEL=/etc/skel\nFIRST_UID=1000\nLAST_UID=59999\nUSERGROUPS=yes\nDIR_MODE=0700\n"),
		file("/usr/share/i18n/SUPPORTED", "C.UTF-8 UTF-8\nde_DE.UTF-8 UTF-8\nen_GB.UTF-8 UTF-8\nen_IE.UTF-8 UTF-8\nen_IE ISO-8859-1\nen_US.UTF-8 UTF-8\nfr_FR.UTF-8 UTF-8\n"),
		dir("/usr/lib/locale"), dir("/usr/lib/locale/C.utf8"), file("/usr/lib/locale/C.utf8/LC_CTYPE", "placeholder\n"),

		// Machine state a golden image must not carry.
		fileMode("/var/log/syslog.1", 0o640, "Nov 18 12:00:00 raspberrypi systemd[1]: Started demo.\n"),
		fileMode("/var/log/auth.log", 0o640, "Nov 19 12:00:00 raspberrypi sshd[42]: Accepted publickey for pi\n"),
		file("/var/log/auth.log.2.gz", "\x1f\x8b placeholder\n"),
		dir("/var/log/journal/5f1b7a3c9d2e4f60a8b7c6d5e4f3a2b1"),
		fileMode("/var/log/journal/5f1b7a3c9d2e4f60a8b7c6d5e4f3a2b1/system.journal", 0o640, "LPKSHHRH placeholder journal\n"),
		dir("/var/lib/systemd"), fileMode("/var/lib/systemd/random-seed", 0o600, "demo random seed: 0123456789abcdef0123456789abcdef\n"),
		dir("/var/lib/systemd/rfkill"), file("/var/lib/systemd/rfkill/platform-fe300000.mmcnr:wlan", "1\n"),
		dir("/var/lib/NetworkManager"), file("/var/lib/NetworkManager/internal-4f6c1c3a-eth0.lease", "ADDRESS=192.168.1.23\nSERVER_ADDRESS=192.168.1.1\n"),
		dir("/var/lib/dhcp"), file("/var/lib/dhcp/dhclient.eth0.leases", "lease {\n  interface \"eth0\";\n  fixed-address 192.168.1.23;\n}\n"),
		file("/tmp/demo-build.log", "left over from imaging\n"),
	}
	for _, zone := range []string{"UTC", "Etc/UTC", "Europe/London", "Europe/Dublin", "Europe/Berlin", "Europe/Paris", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "Australia/Sydney"} {
		e = append(e, file("/usr/share/zoneinfo/"+zone, "TZif2"+strings.Repeat("\x00", 15)+"placeholder zone "+zone+"\n"))
	}
	for _, typ := range []string{"ed25519", "ecdsa", "rsa"} {
		priv, pub := hostKey(typ)
		e = append(e,
			fileMode("/etc/ssh/ssh_host_"+typ+"_key", 0o600, priv),
			file("/etc/ssh/ssh_host_"+typ+"_key.pub", pub))
	}
	// A realistic /etc has hundreds of entries; enough that the kernel would
	// have hash-indexed it. Most of them are alternatives and config stubs.
	for i := 0; i < 400; i++ {
		e = append(e, file(fmt.Sprintf("/etc/demo-%03d.conf", i), fmt.Sprintf("# demo configuration %d\nsetting=%d\n", i, i)))
	}
	sort.SliceStable(e, func(i, j int) bool { return depth(e[i].path) < depth(e[j].path) })
	return e
}

func depth(p string) int { return strings.Count(p, "/") }

func dpkgStatus() string {
	var b strings.Builder
	for _, pkg := range []string{"base-files", "bash", "dash", "openssh-server", "network-manager", "cloud-init", "raspberrypi-sys-mods"} {
		fmt.Fprintf(&b, "Package: %s\nStatus: install ok installed\nPriority: optional\nArchitecture: arm64\nVersion: 1.0-demo\nDescription: demo placeholder for %s\n\n", pkg, pkg)
	}
	return b.String()
}

// bootTree is the Raspberry Pi firmware partition.
func bootTree(rootPartUUID string) []entry {
	placeholder := func(name string, size int) string {
		// Deterministic filler so TFTP and flash benchmarks move real bytes.
		var b strings.Builder
		line := fmt.Sprintf("bakery demo placeholder for %s\n", name)
		for b.Len() < size {
			b.WriteString(line)
		}
		return b.String()[:size]
	}
	e := []entry{
		file("/config.txt", configTxt),
		file("/cmdline.txt", fmt.Sprintf("console=serial0,115200 console=tty1 root=PARTUUID=%s rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n", rootPartUUID)),
		file("/issue.txt", "Bakery Demo OS 2024-11-19\nGenerated offline by `bakery demo-base`; not bootable.\n"),
		file("/LICENCE.broadcom", "Placeholder for the Raspberry Pi firmware licence.\n"),
		dir("/overlays"),
		file("/overlays/README", "Device tree overlays.\n"),
	}
	for _, f := range []struct {
		name string
		size int
	}{
		{"bootcode.bin", 52 << 10}, {"start.elf", 2900 << 10}, {"fixup.dat", 7 << 10},
		{"start4.elf", 2200 << 10}, {"fixup4.dat", 5 << 10},
		{"kernel8.img", 9 << 20}, {"kernel_2712.img", 9 << 20}, {"initramfs8", 11 << 20},
		{"bcm2710-rpi-3-b.dtb", 34 << 10}, {"bcm2711-rpi-4-b.dtb", 54 << 10}, {"bcm2712-rpi-5-b.dtb", 78 << 10},
		{"overlays/vc4-kms-v3d.dtbo", 4 << 10}, {"overlays/dwc2.dtbo", 1 << 10}, {"overlays/disable-bt.dtbo", 1 << 10},
	} {
		e = append(e, file("/"+f.name, placeholder(f.name, f.size)))
	}
	return e
}
