package main

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/bakeryhq/bakery/client"
	"github.com/spf13/cobra"
)

func newMachineCommand() *cobra.Command {
	rf := &remoteFlags{}
	cmd := &cobra.Command{Use: "machine", Short: "Manage machines on a bakery server"}
	rf.register(cmd)

	var (
		spec            client.MachineSpec
		labels, unlabel []string
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
	sf.StringVar(&spec.BootMode, "boot-mode", "", "netboot or local")

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
				fmt.Fprintf(cmd.OutOrStdout(), "%s  %-18s %s\n", e.Time.Local().Format("2006-01-02 15:04:05.000"), e.Type, e.Message)
			}
			return nil
		},
	}
	events.Flags().IntVar(&limit, "limit", 100, "show the last N events (0: all kept)")
	cmd.AddCommand(set, ls, show, rm, events)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
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
	if len(m.SeenIPs) > 0 {
		fmt.Fprintf(w, "Seen at:   %s\n", strings.Join(m.SeenIPs, ", "))
	}
	if !m.LastSeen.IsZero() {
		fmt.Fprintf(w, "Last seen: %s\n", m.LastSeen.Local().Format("2006-01-02 15:04:05"))
	}
	if m.CmdlineAppend != "" {
		fmt.Fprintf(w, "cmdline+:  %s\n", m.CmdlineAppend)
	}
	if m.ConfigAppend != "" {
		fmt.Fprintf(w, "config+:   %s\n", strings.ReplaceAll(m.ConfigAppend, "\n", "\n           "))
	}
}
