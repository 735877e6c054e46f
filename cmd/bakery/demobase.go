package main

import (
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/bakeryhq/bakery/internal/demo"
	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/units"
)

func newDemoBaseCommand() *cobra.Command {
	var size, table string
	cmd := &cobra.Command{
		Use:   "demo-base OUT.img",
		Short: "Make a small Raspberry Pi OS-like base image offline (for trying bakery and for tests)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := units.ParseBytes(size)
			if err != nil {
				return fmt.Errorf("--size: %w", err)
			}
			if table != disk.TableMBR && table != disk.TableGPT {
				return fmt.Errorf("--table %q: want mbr or gpt", table)
			}
			if err := demo.Build(cmd.Context(), args[0], demo.Options{Size: n, Table: table}); err != nil {
				return err
			}
			slog.Info("demo base image written", "path", args[0], "size", size, "table", table)
			return nil
		},
	}
	cmd.Flags().StringVar(&size, "size", "2GiB", "image size (e.g. 2GiB, 1500MiB)")
	cmd.Flags().StringVar(&table, "table", disk.TableMBR, "partition table: mbr or gpt")
	return cmd
}
