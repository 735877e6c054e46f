package main

import (
	"github.com/spf13/cobra"

	"github.com/bakeryhq/bakery/internal/image"
)

func newInspectCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect IMAGE",
		Short: "Show the partition table, filesystems, roles, OS and Pi boot config of an image",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			im, err := image.Open(args[0], image.Options{})
			if err != nil {
				return err
			}
			defer im.Close()
			report := im.Inspect()
			if asJSON {
				return printJSON(cmd.OutOrStdout(), report)
			}
			return report.WriteText(cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
