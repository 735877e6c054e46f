//go:build linux || darwin

// Package overlaytest builds the Raspberry Pi OS-like test image the NFS
// root tests share: a FAT boot partition with Pi boot files and an ext4 root
// made by mkfs.ext4 -d from a tree with varied owners, modes (setuid,
// setgid, sticky), symlinks, hard links, device nodes, a FIFO, a socket, a
// sparse file and the files provisioning adjusts.
package overlaytest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/bakeryhq/bakery/internal/testimage"
	"golang.org/x/sys/unix"
)

// File is one entry of the root tree.
type File struct {
	Path    string
	Mode    uint32 // st_mode type and permission bits
	UID     uint32
	GID     uint32
	Content string
	Target  string // symlinks and hard links (the existing path)
	Rdev    uint64
}

// Tree is the root filesystem's content, in creation order.
var Tree = []File{
	{Path: "/etc", Mode: unix.S_IFDIR | 0o755},
	{Path: "/etc/os-release", Mode: unix.S_IFREG | 0o644, Content: "PRETTY_NAME=\"Test OS\"\nID=debian\n"},
	{Path: "/etc/hostname", Mode: unix.S_IFREG | 0o644, Content: "raspberrypi\n"},
	{Path: "/etc/hosts", Mode: unix.S_IFREG | 0o644, Content: "127.0.0.1\tlocalhost\n127.0.1.1\traspberrypi\n"},
	{Path: "/etc/machine-id", Mode: unix.S_IFREG | 0o444, Content: "0123456789abcdef0123456789abcdef\n"},
	{Path: "/etc/fstab", Mode: unix.S_IFREG | 0o644, Content: "proc            /proc           proc    defaults          0       0\n" +
		"PARTUUID=5452574f-01  /boot/firmware  vfat    defaults          0       2\n" +
		"PARTUUID=5452574f-02  /               ext4    defaults,noatime  0       1\n" +
		"# a comment\ntmpfs /tmp tmpfs defaults 0 0\n"},
	{Path: "/etc/shadow", Mode: unix.S_IFREG | 0o640, GID: 42, Content: "root:*:19000:0:99999:7:::\n"},
	{Path: "/etc/ssh", Mode: unix.S_IFDIR | 0o755},
	{Path: "/etc/ssh/sshd_config", Mode: unix.S_IFREG | 0o644, Content: "PermitRootLogin no\n"},
	{Path: "/etc/ssh/ssh_host_ed25519_key", Mode: unix.S_IFREG | 0o600, Content: "PRIVATE KEY OF THE IMAGE\n"},
	{Path: "/etc/ssh/ssh_host_ed25519_key.pub", Mode: unix.S_IFREG | 0o644, Content: "ssh-ed25519 AAAA image\n"},
	{Path: "/etc/init.d", Mode: unix.S_IFDIR | 0o755},
	{Path: "/etc/init.d/resize2fs_once", Mode: unix.S_IFREG | 0o755, Content: "#!/bin/sh\n"},
	{Path: "/etc/localtime", Mode: unix.S_IFLNK | 0o777, Target: "/usr/share/zoneinfo/Etc/UTC"},
	{Path: "/usr", Mode: unix.S_IFDIR | 0o755},
	{Path: "/usr/bin", Mode: unix.S_IFDIR | 0o755},
	{Path: "/usr/bin/sudo", Mode: unix.S_IFREG | 0o4755, Content: "sudo binary\n"},
	{Path: "/usr/bin/crontab", Mode: unix.S_IFREG | 0o2755, GID: 107, Content: "crontab binary\n"},
	{Path: "/usr/bin/ssh-keygen", Mode: unix.S_IFREG | 0o755, Content: "ssh-keygen binary\n"},
	{Path: "/usr/bin/perl", Mode: unix.S_IFREG | 0o755, Content: "perl binary\n"},
	{Path: "/usr/bin/perl5.36.0", Mode: unix.S_IFREG, Target: "/usr/bin/perl"}, // hard link
	{Path: "/usr/lib", Mode: unix.S_IFDIR | 0o755},
	{Path: "/usr/lib/systemd", Mode: unix.S_IFDIR | 0o755},
	{Path: "/usr/lib/systemd/system", Mode: unix.S_IFDIR | 0o755},
	{Path: "/usr/lib/systemd/system/rpi-resize.service", Mode: unix.S_IFREG | 0o644, Content: "[Service]\nExecStart=/bin/true\n"},
	{Path: "/usr/lib/systemd/system/ssh.service", Mode: unix.S_IFREG | 0o644, Content: "[Service]\nExecStart=/usr/sbin/sshd -D\n"},
	{Path: "/usr/share", Mode: unix.S_IFDIR | 0o755},
	{Path: "/usr/share/doc", Mode: unix.S_IFDIR | 0o755},
	{Path: "/usr/share/doc/readme.txt", Mode: unix.S_IFREG | 0o644, Content: "read me\n"},
	{Path: "/lib", Mode: unix.S_IFLNK | 0o777, Target: "usr/lib"},
	{Path: "/bin", Mode: unix.S_IFLNK | 0o777, Target: "usr/bin"},
	{Path: "/dev", Mode: unix.S_IFDIR | 0o755},
	{Path: "/dev/null", Mode: unix.S_IFCHR | 0o666, Rdev: unix.Mkdev(1, 3)},
	{Path: "/dev/sda", Mode: unix.S_IFBLK | 0o660, GID: 6, Rdev: unix.Mkdev(8, 0)},
	{Path: "/dev/initctl", Mode: unix.S_IFIFO | 0o600},
	{Path: "/run", Mode: unix.S_IFDIR | 0o755},
	{Path: "/run/sock", Mode: unix.S_IFSOCK | 0o777},
	{Path: "/tmp", Mode: unix.S_IFDIR | 0o1777},
	{Path: "/home", Mode: unix.S_IFDIR | 0o755},
	{Path: "/home/pi", Mode: unix.S_IFDIR | 0o750, UID: 1000, GID: 1000},
	{Path: "/home/pi/notes.txt", Mode: unix.S_IFREG | 0o640, UID: 1000, GID: 1000, Content: "pi's notes\n"},
	{Path: "/home/pi/shared", Mode: unix.S_IFDIR | 0o2775, UID: 1000, GID: 1000},
	{Path: "/var", Mode: unix.S_IFDIR | 0o755},
	{Path: "/var/lib", Mode: unix.S_IFDIR | 0o755},
	{Path: "/var/lib/dbus", Mode: unix.S_IFDIR | 0o755},
	{Path: "/var/lib/dbus/machine-id", Mode: unix.S_IFREG | 0o444, Content: "0123456789abcdef0123456789abcdef\n"},
	{Path: "/var/lib/sparse.img", Mode: unix.S_IFREG | 0o644}, // 8 MiB with one data block, made below
}

// Sparse file layout.
const (
	SparsePath   = "/var/lib/sparse.img"
	SparseSize   = 8 << 20
	SparseOffset = 4 << 20
	SparseData   = "data in the middle"
)

// BootTree are the boot partition's files.
var BootTree = map[string]string{
	"start4.elf": "start4 firmware", "fixup4.dat": "fixup", "bcm2711-rpi-4-b.dtb": "dtb", "kernel8.img": "kernel image",
	"config.txt":  "[all]\narm_64bit=1\n",
	"cmdline.txt": "console=serial0,115200 console=tty1 root=PARTUUID=5452574f-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n",
}

// Image builds the test image (needs root for the owners and device nodes)
// and returns its path. rootMiB sizes the root partition (0: 64).
func Image(t testing.TB, rootMiB int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("building the NFS root test image needs root (owners, device nodes)")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	if err := WriteTree(root, Tree); err != nil {
		t.Fatal(err)
	}
	boot := filepath.Join(dir, "boot")
	os.MkdirAll(boot, 0o755)
	for name, content := range BootTree {
		if err := os.WriteFile(filepath.Join(boot, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if rootMiB == 0 {
		rootMiB = 64
	}
	return testimage.PiImage(t, testimage.Layout{RootMiB: rootMiB, BootTree: boot, RootTree: root})
}

// WriteTree creates the tree under dir with exact owners and modes.
func WriteTree(dir string, tree []File) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range tree {
		p := filepath.Join(dir, f.Path)
		var err error
		switch f.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			err = os.Mkdir(p, 0o700)
		case unix.S_IFLNK:
			err = os.Symlink(f.Target, p)
		case unix.S_IFREG:
			if f.Target != "" {
				err = os.Link(filepath.Join(dir, f.Target), p)
				if err != nil {
					return err
				}
				continue
			}
			err = os.WriteFile(p, []byte(f.Content), 0o600)
			if err == nil && f.Path == SparsePath {
				err = makeSparse(p)
			}
		default:
			err = unix.Mknod(p, f.Mode, int(f.Rdev))
		}
		if err != nil {
			return err
		}
		if err := os.Lchown(p, int(f.UID), int(f.GID)); err != nil {
			return err
		}
		if f.Mode&unix.S_IFMT != unix.S_IFLNK {
			if err := unix.Chmod(p, f.Mode&0o7777); err != nil {
				return err
			}
		}
	}
	return nil
}

func makeSparse(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(SparseData), SparseOffset); err != nil {
		return err
	}
	return f.Truncate(SparseSize)
}

// Find returns the tree entry for a path.
func Find(p string) File {
	for _, f := range Tree {
		if f.Path == p {
			return f
		}
	}
	panic("overlaytest: no " + p)
}

// SparseContent is the full content of the sparse file.
func SparseContent() []byte {
	b := bytes.Repeat([]byte{0}, SparseSize)
	copy(b[SparseOffset:], SparseData)
	return b
}
