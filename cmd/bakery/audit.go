package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/bakeryhq/bakery/internal/audit"
)

func newAuditCommand() *cobra.Command {
	var asJSON, strict bool
	cmd := &cobra.Command{
		Use:   "audit IMAGE",
		Short: "Scan an image for secrets and machine state a golden image must not carry",
		Long: `Scan the root and boot filesystems of an image for what must not be in a
golden image: SSH host keys and other private keys, a non-empty machine-id,
cloud-init instance state, shell history, Consul gossip keys and Vault,
Consul or Nomad tokens. Exits 1 when it finds any of these.

Wifi pre-shared keys and a saved random seed are reported as warnings:
a psk is expected when the spec configures wifi. --strict fails on
warnings too. Findings name the file and line, never the secret.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := audit.ScanFile(cmd.Context(), args[0], audit.Options{})
			if err != nil {
				return err
			}
			if asJSON {
				out := struct {
					*audit.Report
					Passed bool `json:"passed"`
				}{rep, !rep.Failed(strict)}
				if err := printJSON(cmd.OutOrStdout(), out); err != nil {
					return err
				}
			} else {
				w := cmd.OutOrStdout()
				for _, f := range rep.Findings {
					fmt.Fprintln(w, f.String())
				}
				fmt.Fprintf(w, "audit %s: %d %s, %d %s (%d files read, %d skipped as binary or large)\n", args[0],
					rep.Errors, plural(rep.Errors, "error", "errors"), rep.Warnings, plural(rep.Warnings, "warning", "warnings"),
					rep.Scanned, rep.Skipped)
			}
			if rep.Failed(strict) {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the findings as JSON")
	cmd.Flags().BoolVar(&strict, "strict", false, "fail on warnings (wifi psk, random seed) too")
	return cmd
}
