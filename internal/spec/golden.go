package spec

// Golden removes what must not be shared between the machines an image is
// flashed to, and arranges its regeneration at first boot. Every setting
// defaults to true:
//
//	golden {
//	  shell_history = false   # keep root's history, e.g. for a lab image
//	}
type Golden struct {
	Block
	// MachineID empties /etc/machine-id (the file stays) and removes
	// /var/lib/dbus/machine-id.
	MachineID bool `hcl:"machine_id" json:"machine_id"`
	// SSHHostKeys removes /etc/ssh/ssh_host_* and regenerates them before
	// sshd first starts.
	SSHHostKeys bool `hcl:"ssh_host_keys" json:"ssh_host_keys"`
	// CloudInitState removes /var/lib/cloud instance state, so cloud-init
	// runs again on first boot.
	CloudInitState bool `hcl:"cloud_init_state" json:"cloud_init_state"`
	// Logs empties /var/log (keeping the directory tree) and the journal.
	Logs bool `hcl:"logs" json:"logs"`
	// ShellHistory removes .bash_history, .zsh_history and the like for
	// every user.
	ShellHistory bool `hcl:"shell_history" json:"shell_history"`
	// RandomSeed removes /var/lib/systemd/random-seed, so machines do not
	// share their first random state (extension).
	RandomSeed bool `hcl:"random_seed" json:"random_seed"`
	// DHCPLeases removes DHCP client leases (extension).
	DHCPLeases bool `hcl:"dhcp_leases" json:"dhcp_leases"`
	// Tmp empties /tmp and /var/tmp (extension).
	Tmp bool `hcl:"tmp" json:"tmp"`
}

func (g *Golden) setDefaults() {
	*g = Golden{Block: g.Block, MachineID: true, SSHHostKeys: true, CloudInitState: true, Logs: true, ShellHistory: true,
		RandomSeed: true, DHCPLeases: true, Tmp: true}
}
