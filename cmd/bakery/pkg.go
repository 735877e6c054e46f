package main

import "github.com/spf13/cobra"

// newPkgCommand is a placeholder until the command lands.
func newPkgCommand() *cobra.Command {
	return &cobra.Command{Use: "pkg", Short: "Build cluster packages (not yet implemented)", Hidden: true,
		RunE: func(*cobra.Command, []string) error { return errNotImplemented }}
}
