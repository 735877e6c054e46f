package bootfiles

import (
	"fmt"
	"strings"
)

// NFSRoot says where a machine's root filesystem is served over NFS.
type NFSRoot struct {
	Server string // address the machine reaches bakery serve at
	Export string // /machines/<id>
	Port   int    // MOUNT and NFS share this port
}

// Args are the kernel arguments that mount the root over NFSv3 from
// bakery's built-in server: TCP, MOUNT and NFS on one port (no portmapper)
// and no lock manager.
func (n NFSRoot) Args() string {
	return fmt.Sprintf("root=/dev/nfs nfsroot=%s:%s,vers=3,tcp,port=%d,mountport=%d,nolock rw ip=dhcp rootwait",
		n.Server, n.Export, n.Port, n.Port)
}

// dropForNFS reports the arguments of an image's command line that do not
// belong on an NFS-root machine: the SD card's root and its type, the
// root's mount mode and wait (re-added), network setup (ip=dhcp is added),
// and first-boot hooks that resize the SD card's root partition or run
// scripts from it (Raspberry Pi OS's firstboot, raspi-config's
// init_resize.sh, Raspberry Pi Imager's systemd.run firstrun.sh).
func dropForNFS(arg string) bool {
	key, val, _ := strings.Cut(arg, "=")
	switch key {
	case "root", "rootfstype", "rootflags", "nfsroot", "nfsrootdebug", "ip", "ro", "rw", "rootwait", "rootdelay",
		"systemd.run", "systemd.run_success_action", "systemd.run_failure_action":
		return true
	case "init":
		return strings.Contains(val, "firstboot") || strings.Contains(val, "resize")
	case "systemd.unit":
		return val == "kernel-command-line.target"
	}
	return false
}

// RenderNFSRootCmdline returns cmdline.txt for a machine whose root is
// served over NFS: the image's first line without the arguments dropForNFS
// names, then the NFS root arguments, then the machine's own additions.
func RenderNFSRootCmdline(base []byte, root NFSRoot, extra ...string) []byte {
	line := string(base)
	if i := strings.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	var kept []string
	for _, a := range strings.Fields(line) {
		if !dropForNFS(a) {
			kept = append(kept, a)
		}
	}
	kept = append(kept, root.Args())
	return RenderCmdline([]byte(strings.Join(kept, " ")+"\n"), extra...)
}
