package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"

	"github.com/bakeryhq/bakery/client"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/units"
	"github.com/spf13/cobra"
)

func newMachineCommand() *cobra.Command {
	rf := &remoteFlags{}
	cmd := &cobra.Command{Use: "machine", Short: "Manage machines on a bakery server"}
	rf.register(cmd)

	var (
		spec            client.MachineSpec
		labels, unlabel []string
		powerDriver     string
		powerSettings   []string
		powerJSON       string
		noPower         bool
	)
	set := &cobra.Command{
		Use:   "set ID",
		Short: "Create or change a machine (ID: Pi serial or MAC); only the flags given change",
		Example: `  bakery machine set 3a7f91c2 --image raspios --name pi-1 --label rack=a
  bakery machine set dc:a6:32:01:02:03 --boot-mode local`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			cur, err := c.Machine(cmd.Context(), args[0])
			if err != nil && !client.IsStatus(err, http.StatusNotFound) {
				return err
			}
			next := cur.Spec()
			fl := cmd.Flags()
			if fl.Changed("name") {
				next.Name = spec.Name
			}
			if fl.Changed("image") {
				next.Image = spec.Image
			}
			if fl.Changed("mac") {
				next.MAC = spec.MAC
			}
			if fl.Changed("ip") {
				next.IP = spec.IP
			}
			if fl.Changed("cmdline-append") {
				next.CmdlineAppend = spec.CmdlineAppend
			}
			if fl.Changed("config-append") {
				next.ConfigAppend = spec.ConfigAppend
			}
			if fl.Changed("boot-mode") {
				next.BootMode = spec.BootMode
			}
			if fl.Changed("root") {
				next.Root = spec.Root
			}
			p, err := powerFromFlags(next.Power, powerDriver, powerSettings, powerJSON, noPower)
			if err != nil {
				return err
			}
			next.Power = p
			if len(labels) > 0 || len(unlabel) > 0 {
				merged := map[string]string{}
				for k, v := range next.Labels {
					merged[k] = v
				}
				for _, l := range labels {
					k, v, ok := strings.Cut(l, "=")
					if !ok || k == "" {
						return fmt.Errorf("--label %q: want key=value", l)
					}
					merged[k] = v
				}
				for _, k := range unlabel {
					delete(merged, k)
				}
				next.Labels = merged
			}
			m, err := c.PutMachine(cmd.Context(), args[0], next)
			if err != nil {
				return err
			}
			if rf.json {
				return printJSON(cmd.OutOrStdout(), m)
			}
			printMachine(cmd.OutOrStdout(), m)
			return nil
		},
	}
	sf := set.Flags()
	sf.StringVar(&spec.Name, "name", "", "machine name")
	sf.StringVar(&spec.Image, "image", "", "image id or name to boot (empty to unassign)")
	sf.StringVar(&spec.MAC, "mac", "", "MAC address")
	sf.StringVar(&spec.IP, "ip", "", "IPv4 address, if fixed")
	sf.StringArrayVar(&labels, "label", nil, "label key=value (repeatable)")
	sf.StringArrayVar(&unlabel, "unlabel", nil, "remove a label key (repeatable)")
	sf.StringVar(&spec.CmdlineAppend, "cmdline-append", "", "arguments appended to cmdline.txt")
	sf.StringVar(&spec.ConfigAppend, "config-append", "", "lines appended to config.txt in an [all] section")
	sf.StringVar(&spec.BootMode, "boot-mode", "", "netboot, local, or once (netboot until the machine reports its boot)")
	sf.StringVar(&spec.Root, "root", "", "nfs (its own copy-on-write root over NFS, the default) or image (the image's cmdline.txt)")
	sf.StringVar(&powerDriver, "power-driver", "", "power driver: exec, http, tasmota or shelly (docs/power.md)")
	sf.StringArrayVar(&powerSettings, "power-setting", nil, "power setting key=value (repeatable; JSON values such as 2 or true are parsed)")
	sf.StringVar(&powerJSON, "power-settings-json", "", "all power settings as a JSON object (replaces the current ones)")
	sf.BoolVar(&noPower, "no-power", false, "remove the power driver")

	var filter []string
	ls := &cobra.Command{
		Use: "ls", Short: "List machines, including discovered ones", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			want := map[string]string{}
			for _, l := range filter {
				k, v, ok := strings.Cut(l, "=")
				if !ok {
					return fmt.Errorf("--label %q: want key=value", l)
				}
				want[k] = v
			}
			ms, err := c.Machines(cmd.Context(), want)
			if err != nil {
				return err
			}
			if rf.json {
				return printJSON(cmd.OutOrStdout(), ms)
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintln(tw, "ID\tNAME\tIMAGE\tMODE\tSTATE\tMODEL\tLAST SEEN\tLABELS")
			for _, m := range ms {
				state := "configured"
				if m.Discovered {
					state = "discovered"
				}
				seen := "-"
				if !m.LastSeen.IsZero() {
					seen = m.LastSeen.Local().Format("2006-01-02 15:04")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, dash(m.Name), dash(m.Image), m.BootMode, state, dash(m.Model), seen, labelString(m.Labels))
			}
			return tw.Flush()
		},
	}
	ls.Flags().StringArrayVar(&filter, "label", nil, "only machines with label key=value (repeatable)")

	show := &cobra.Command{
		Use: "show ID", Short: "Show a machine", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			m, err := c.Machine(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if rf.json {
				return printJSON(cmd.OutOrStdout(), m)
			}
			printMachine(cmd.OutOrStdout(), m)
			return nil
		},
	}
	rm := &cobra.Command{
		Use: "rm ID...", Short: "Delete machines and their events", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			for _, id := range args {
				if err := c.DeleteMachine(cmd.Context(), id); err != nil {
					return fmt.Errorf("%s: %w", id, err)
				}
				if !rf.json {
					fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", id)
				}
			}
			return nil
		},
	}
	var limit int
	events := &cobra.Command{
		Use: "events ID", Short: "Show a machine's boot timeline (DHCP, TFTP, HTTP, API changes)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			evs, err := c.Events(cmd.Context(), args[0], limit)
			if err != nil {
				return err
			}
			if rf.json {
				return printJSON(cmd.OutOrStdout(), evs)
			}
			for _, e := range evs {
				fmt.Fprintf(cmd.OutOrStdout(), "%s  %-18s %s\n", e.Time.Local().Format("2006-01-02 15:04:05.000"), e.Type, fs.Printable(e.Message))
			}
			return nil
		},
	}
	events.Flags().IntVar(&limit, "limit", 100, "show the last N events (0: all kept)")
	cmd.AddCommand(set, ls, show, rm, events)
	cmd.AddCommand(machineRootCommands(rf)...)
	return cmd
}

// powerFromFlags applies the --power-* flags to the current power record.
// Settings of the same driver are merged (redacted secrets stay as the
// server's "(redacted)", which keeps them); another driver starts afresh.
func powerFromFlags(cur *client.Power, driver string, settings []string, raw string, none bool) (*client.Power, error) {
	if none {
		return nil, nil
	}
	if driver == "" && len(settings) == 0 && raw == "" {
		return cur, nil
	}
	p := &client.Power{Settings: map[string]any{}}
	if cur != nil {
		p.Driver = cur.Driver
		for k, v := range cur.Settings {
			p.Settings[k] = v
		}
	}
	if driver != "" && driver != p.Driver {
		p.Driver, p.Settings = driver, map[string]any{}
	}
	if p.Driver == "" {
		return nil, fmt.Errorf("--power-setting needs --power-driver (exec, http, tasmota or shelly)")
	}
	if raw != "" {
		p.Settings = map[string]any{}
		if err := json.Unmarshal([]byte(raw), &p.Settings); err != nil {
			return nil, fmt.Errorf("--power-settings-json: %w", err)
		}
	}
	for _, kv := range settings {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--power-setting %q: want key=value", kv)
		}
		var parsed any
		if err := json.Unmarshal([]byte(v), &parsed); err == nil {
			if _, isStr := parsed.(string); !isStr {
				p.Settings[k] = parsed
				continue
			}
		}
		p.Settings[k] = v
	}
	return p, nil
}

// machineRootCommands are the NFS root, disk, power and boot commands.
func machineRootCommands(rf *remoteFlags) []*cobra.Command {
	var force bool
	reset := &cobra.Command{
		Use:   "reset ID",
		Short: "Discard a machine's NFS root layer: a fresh root from its image (power it off first)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			res, err := c.ResetMachine(cmd.Context(), args[0], force)
			if err != nil {
				return err
			}
			if rf.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: fresh root at %s\n", res.Machine, res.Export)
			for _, a := range res.Adjustments {
				fmt.Fprintf(cmd.OutOrStdout(), "  %s\n", a)
			}
			return nil
		},
	}
	reset.Flags().BoolVar(&force, "force", false, "reset even while the machine is using its root")

	usage := &cobra.Command{
		Use: "usage ID", Short: "Show the size of a machine's copy-on-write root layer", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			u, err := c.RootUsage(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if rf.json {
				return printJSON(cmd.OutOrStdout(), u)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Export:      %s (image %s)\nLayer:       %s on disk\nChanged:     %d objects (%d with content in the layer)\nDeleted:     %d image entries\nConnections: %d\n",
				u.Export, u.Image, units.Format(u.Bytes), u.Files, u.Data, u.Whiteouts, u.Connections)
			return nil
		},
	}

	disk := &cobra.Command{Use: "disk", Short: "Manage a machine's extra disks (sparse images exported over NFS)"}
	diskAdd := &cobra.Command{
		Use: "add ID NAME SIZE", Short: "Create an extra disk (or grow it), e.g. 'disk add 3a7f91c2 data 20GiB'", Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			size, err := units.ParseBytes(args[2])
			if err != nil {
				return fmt.Errorf("size %q: %w", args[2], err)
			}
			d, err := c.PutDisk(cmd.Context(), args[0], args[1], size)
			if err != nil {
				return err
			}
			if rf.json {
				return printJSON(cmd.OutOrStdout(), d)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "disk %s: %s, exported at %s (file %s)\n", d.Name, units.Format(d.Size), d.Export, d.File)
			return nil
		},
	}
	diskRm := &cobra.Command{
		Use: "rm ID NAME", Short: "Delete an extra disk and its data", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			if err := c.DeleteDisk(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			if !rf.json {
				fmt.Fprintf(cmd.OutOrStdout(), "deleted disk %s of %s\n", args[1], args[0])
			}
			return nil
		},
	}
	disk.AddCommand(diskAdd, diskRm)

	pw := &cobra.Command{
		Use: "power ID on|off|cycle|status", Short: "Switch a machine through its power driver", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			res, err := c.Power(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			if rf.json {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s done (%s), state %s", res.Machine, res.Action, res.Driver, res.State)
			if res.Message != "" {
				fmt.Fprintf(cmd.OutOrStdout(), " - %s", res.Message)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}

	booted := &cobra.Command{
		Use:   "booted [ID]",
		Short: "Report a successful boot (run on the machine with its node token; ends boot mode once)",
		Long: `Report that the machine booted. Run it on the machine itself:

  set -a; . /etc/bakery/node.env; set +a
  bakery machine booted --token @/etc/bakery/node-token

ID defaults to $BAKERY_MACHINE. The node token (scope node:<id>) is in the
machine's NFS root at /etc/bakery/node-token (mode 0600), never on the image.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := os.Getenv("BAKERY_MACHINE")
			if len(args) == 1 {
				id = args[0]
			}
			if id == "" {
				return fmt.Errorf("no machine id (give ID or set BAKERY_MACHINE)")
			}
			c, err := rf.client()
			if err != nil {
				return err
			}
			m, err := c.Booted(cmd.Context(), id)
			if err != nil {
				return err
			}
			if rf.json {
				return printJSON(cmd.OutOrStdout(), m)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: boot reported at %s\n", m.ID, m.Booted.Local().Format("2006-01-02 15:04:05"))
			return nil
		},
	}

	nodeToken := &cobra.Command{
		Use: "node-token ID", Short: "Create a machine's node token (admin; written into its NFS root)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			t, err := c.CreateNodeToken(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if rf.json {
				return printJSON(cmd.OutOrStdout(), t)
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			where := "put it on the machine yourself (it has no NFS root)"
			if t.WrittenToRoot {
				where = "also written to /etc/bakery/node-token in its root"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "node token %s for %s: shown once; %s\n", t.ID, t.Machine, where)
			return nil
		},
	}
	return []*cobra.Command{reset, usage, disk, pw, booted, nodeToken}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func settingsString(s map[string]any) string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var kv []string
	for _, k := range keys {
		b, _ := json.Marshal(s[k])
		kv = append(kv, k+"="+string(b))
	}
	return strings.Join(kv, " ")
}

func labelString(l map[string]string) string {
	if len(l) == 0 {
		return "-"
	}
	var kv []string
	for k, v := range l {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func printMachine(w io.Writer, m client.Machine) {
	state := "configured"
	if m.Discovered {
		state = "discovered (assign an image to boot it)"
	}
	fmt.Fprintf(w, "ID:        %s\nName:      %s\nState:     %s\nImage:     %s\nBoot mode: %s\n", m.ID, dash(m.Name), state, dash(m.Image), m.BootMode)
	fmt.Fprintf(w, "MAC:       %s\nIP:        %s\nModel:     %s\nLabels:    %s\n", dash(m.MAC), dash(m.IP), dash(m.Model), labelString(m.Labels))
	fmt.Fprintf(w, "Trusted:   %s (the address its NFS root and credentials answer: its IP, else its last answered DHCP request)\n", dash(m.TrustedIP()))
	if len(m.SeenIPs) > 0 {
		fmt.Fprintf(w, "Seen at:   %s\n", strings.Join(m.SeenIPs, ", "))
	}
	if !m.LastSeen.IsZero() {
		fmt.Fprintf(w, "Last seen: %s\n", m.LastSeen.Local().Format("2006-01-02 15:04:05"))
	}
	if m.Root != "" {
		fmt.Fprintf(w, "Root:      %s\n", m.Root)
	}
	if m.Power != nil {
		fmt.Fprintf(w, "Power:     %s %s\n", m.Power.Driver, settingsString(m.Power.Settings))
	}
	for _, d := range m.Disks {
		fmt.Fprintf(w, "Disk:      %s (%s)\n", d.Name, units.Format(d.Size))
	}
	if !m.Booted.IsZero() {
		fmt.Fprintf(w, "Booted:    %s\n", m.Booted.Local().Format("2006-01-02 15:04:05"))
	}
	if m.CmdlineAppend != "" {
		fmt.Fprintf(w, "cmdline+:  %s\n", m.CmdlineAppend)
	}
	if m.ConfigAppend != "" {
		fmt.Fprintf(w, "config+:   %s\n", strings.ReplaceAll(m.ConfigAppend, "\n", "\n           "))
	}
}
