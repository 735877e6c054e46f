package main

import "github.com/spf13/cobra"

// newAuditCommand is a placeholder until the command lands.
func newAuditCommand() *cobra.Command {
	return &cobra.Command{Use: "audit", Short: "Scan an image for secrets and machine state (not yet implemented)", Hidden: true,
		RunE: func(*cobra.Command, []string) error { return errNotImplemented }}
}
