package main

import "github.com/spf13/cobra"

// newBuildCommand is a placeholder until the command lands.
func newBuildCommand() *cobra.Command {
	return &cobra.Command{Use: "build", Short: "Build a golden image from a spec (not yet implemented)", Hidden: true,
		RunE: func(*cobra.Command, []string) error { return errNotImplemented }}
}
