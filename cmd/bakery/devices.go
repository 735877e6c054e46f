package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/bakeryhq/bakery/internal/flash"
	"github.com/bakeryhq/bakery/internal/units"
)

func newDevicesCommand() *cobra.Command {
	var asJSON, all bool
	cmd := &cobra.Command{
		Use:   "devices",
		Short: "List disks that can be flashed",
		Long: `List disks with their size, model, transport, whether they are removable,
mounted, or hold the running system. Loop and other virtual devices are
shown with --all. Linux only; on macOS use diskutil list.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			devs, err := flash.Devices(flash.ListOptions{All: all})
			if err != nil {
				return err
			}
			if asJSON {
				if devs == nil {
					devs = []flash.Device{}
				}
				return printJSON(cmd.OutOrStdout(), devs)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DEVICE\tSIZE\tTRANSPORT\tREMOVABLE\tMODEL\tIN USE")
			for _, d := range devs {
				use := "-"
				switch {
				case d.System:
					use = "system disk"
				case d.Mounted:
					use = "mounted at " + strings.Join(d.Mountpoints, ", ")
				case d.BackingFile != "":
					use = "backed by " + d.BackingFile
				}
				model := strings.TrimSpace(d.Vendor + " " + d.Model)
				if model == "" {
					model = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Path, units.Format(d.Size), devicesOrDash(d.Transport), devicesYesNo(d.Removable), model, use)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&all, "all", false, "include loop, device-mapper and empty devices")
	return cmd
}

func devicesOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func devicesYesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
