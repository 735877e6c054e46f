package bundle

import (
	"fmt"
	"slices"
	"strings"
)

// unitSpec is what a bundle's systemd unit needs.
type unitSpec struct {
	prod        Product
	user, group string
	exec        string
	notify      bool // Type=notify (consul)
	reload      bool // ExecReload sends SIGHUP
	writable    []string
	after       []string // units to start after (and want)
	before      []string
	wants       []string
	waitFor     []string // files Vault Agent must have rendered first
	nomadClient bool
	vaultAgent  bool
	// secretIDFile is removed by Vault Agent after reading; its
	// directory must be writable.
	secretIDFile string
}

// render writes the unit. Every service gets the same sandbox baseline;
// the exceptions are explained where they are made.
func (u unitSpec) render() []byte {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("# %s: written by bakery.", u.prod.Unit)
	line("[Unit]")
	line("Description=%s", u.prod.Description)
	line("Documentation=%s", u.prod.Homepage)
	line("Wants=network-online.target")
	after := append([]string{"network-online.target"}, u.after...)
	line("After=%s", strings.Join(after, " "))
	wants := append(slices.Clone(u.after), u.wants...)
	slices.Sort(wants)
	wants = slices.Compact(wants)
	if len(wants) > 0 {
		line("Wants=%s", strings.Join(wants, " "))
	}
	if len(u.before) > 0 {
		line("Before=%s", strings.Join(u.before, " "))
	}
	if u.vaultAgent {
		line("ConditionFileNotEmpty=/etc/vault-agent.d/role-id")
	}
	line("")
	line("[Service]")
	if u.notify {
		line("Type=notify")
	} else {
		line("Type=simple")
	}
	line("User=%s", u.user)
	line("Group=%s", u.group)
	for _, f := range u.waitFor {
		// Until Vault Agent has rendered the secrets, fail and retry
		// (RestartSec): the agent restarts us once they are there.
		line("ExecStartPre=/usr/bin/test -s %s", f)
	}
	line("ExecStart=%s", u.exec)
	if u.reload {
		line("ExecReload=/bin/kill -HUP $MAINPID")
	}
	line("KillMode=process")
	line("KillSignal=SIGINT")
	line("Restart=on-failure")
	line("RestartSec=5s")
	line("TimeoutStopSec=30s")
	line("LimitNOFILE=65536")
	if u.nomadClient {
		// A Nomad client runs workloads: it needs root, cgroups, mounts and
		// the host's filesystem for its drivers, so only the protections
		// that do not get in a task's way apply. NoNewPrivileges is left
		// off because it would be inherited by every task.
		line("Delegate=yes")
		line("LimitNPROC=infinity")
		line("TasksMax=infinity")
		line("OOMScoreAdjust=-1000")
		line("ProtectSystem=full")
		line("ProtectHome=read-only")
		line("PrivateTmp=yes")
	} else {
		line("NoNewPrivileges=yes")
		line("ProtectSystem=strict")
		var rw []string
		for _, w := range u.writable {
			if w != "" && w != "/" {
				rw = append(rw, "-"+w) // "-": a missing path is not an error
			}
		}
		if len(rw) > 0 {
			line("ReadWritePaths=%s", strings.Join(rw, " "))
		}
		line("ProtectHome=yes")
		line("PrivateTmp=yes")
		line("PrivateDevices=yes")
		line("ProtectKernelTunables=yes")
		line("ProtectKernelModules=yes")
		line("ProtectKernelLogs=yes")
		line("ProtectControlGroups=yes")
		line("ProtectClock=yes")
		line("ProtectHostname=yes")
		line("RestrictSUIDSGID=yes")
		line("RestrictRealtime=yes")
		line("RestrictNamespaces=yes")
		line("LockPersonality=yes")
		line("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK")
		line("SystemCallArchitectures=native")
		if u.user != "root" {
			line("CapabilityBoundingSet=")
		}
	}
	line("")
	line("[Install]")
	line("WantedBy=multi-user.target")
	return []byte(b.String())
}
