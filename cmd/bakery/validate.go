package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"

	"github.com/bakeryhq/bakery/internal/spec"
)

// specInputFlags are the variable flags shared by validate and build.
type specInputFlags struct {
	vars     []string
	varFiles []string
}

func (f *specInputFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.vars, "var", nil, "set a variable: --var NAME=VALUE (repeatable; overrides --var-file and BAKERY_VAR_NAME)")
	cmd.Flags().StringArrayVar(&f.varFiles, "var-file", nil, "read variables from an HCL (or .json) file of NAME = VALUE lines (repeatable; later files win)")
}

// inputs turns the flags into spec.Inputs, with BAKERY_VAR_* from the
// environment.
func (f *specInputFlags) inputs() (spec.Inputs, error) {
	in := spec.Inputs{Vars: map[string]string{}, VarFiles: f.varFiles, LookupEnv: os.LookupEnv}
	for _, kv := range f.vars {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return in, fmt.Errorf("--var %q: want NAME=VALUE", kv)
		}
		in.Vars[name] = value
	}
	return in, nil
}

func newValidateCommand() *cobra.Command {
	var flags specInputFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "validate SPEC.hcl",
		Short: "Check a build spec and report every problem as file:line:col: message",
		Long: `Check a build spec without building: syntax, types, unknown blocks and
attributes (with suggestions), missing values, undefined variables, missing
source files and every value rule. All problems are reported at once, as
file:line:col: message, on stderr. Exits 1 if there is any error.

Sensitive variable values never appear in the output.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := flags.inputs()
			if err != nil {
				return err
			}
			path := args[0]
			s, diags := spec.Load(cmd.Context(), path, in)
			r := s.Redactor()
			errs := len(diags.Errs())
			if asJSON {
				out := struct {
					File        string            `json:"file"`
					Valid       bool              `json:"valid"`
					Errors      int               `json:"errors"`
					Warnings    int               `json:"warnings"`
					Diagnostics []spec.Diagnostic `json:"diagnostics"`
					Spec        *spec.Spec        `json:"spec,omitempty"`
				}{File: path, Valid: errs == 0, Errors: errs, Warnings: len(diags) - errs, Diagnostics: spec.DiagnosticsJSON(diags, r)}
				if errs == 0 {
					out.Spec = s
				}
				if err := printJSON(cmd.OutOrStdout(), out); err != nil {
					return err
				}
				if errs > 0 {
					return &exitError{code: 1}
				}
				return nil
			}
			printDiagnostics(cmd.ErrOrStderr(), diags, r)
			if errs > 0 {
				return &exitError{code: 1, msg: fmt.Sprintf("%s: %d %s", path, errs, plural(errs, "error", "errors"))}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: valid\n", path)
			return nil
		},
	}
	flags.register(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result (diagnostics, and the resolved spec with secrets redacted) as JSON on stdout")
	return cmd
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// printDiagnostics writes diagnostics to w one per line, redacted (r may
// be nil), and returns the lines.
func printDiagnostics(w io.Writer, diags hcl.Diagnostics, r *spec.Redactor) []string {
	var lines []string
	for _, d := range diags {
		lines = append(lines, r.Redact(spec.FormatDiagnostic(d)))
		fmt.Fprintln(w, lines[len(lines)-1])
	}
	return lines
}

// formatDiagnostics renders diagnostics one per line, redacted.
func formatDiagnostics(diags hcl.Diagnostics, r *spec.Redactor) string {
	var sb strings.Builder
	for _, d := range diags {
		sb.WriteString(r.Redact(spec.FormatDiagnostic(d)))
		sb.WriteByte('\n')
	}
	return sb.String()
}
