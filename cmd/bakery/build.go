package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bakeryhq/bakery/internal/build"
	"github.com/bakeryhq/bakery/internal/progress"
	"github.com/bakeryhq/bakery/internal/spec"
	"github.com/bakeryhq/bakery/internal/units"
)

func newBuildCommand() *cobra.Command {
	var flags specInputFlags
	var outDir, cacheDir, epoch string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "build SPEC.hcl",
		Short: "Build a golden image from a spec",
		Long: `Build a golden image from a declarative HCL spec: fetch (and cache) the
base image, customise a sparse copy of it (users, ssh, wifi, network,
locale, files, systemd units, first-boot work, partition layout), remove
machine state (golden cleanup) and write the outputs (img, bmap, sha256,
zst/xz/gz, qcow2) atomically: nothing appears under its final name until
everything is written.

Builds are reproducible: the same spec, variables and base give the same
bytes. Timestamps come from --source-date-epoch, else $SOURCE_DATE_EPOCH,
else the base image itself. Secrets (sensitive variables, wifi psk,
password hashes) never appear in logs, errors or --json output.

See docs/build.md and docs/spec.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := flags.inputs()
			if err != nil {
				return err
			}
			s, diags := spec.Load(cmd.Context(), args[0], in)
			r := s.Redactor()
			errs := len(diags.Errs())
			lines := printDiagnostics(cmd.ErrOrStderr(), diags, r)
			if errs > 0 {
				msg := fmt.Sprintf("%s: %d %s", args[0], errs, plural(errs, "error", "errors"))
				if asJSON {
					printJSONFailure(cmd.OutOrStdout(), msg, lines)
				}
				return &exitError{code: 1, msg: msg}
			}
			opts := build.Options{OutDir: outDir, CacheDir: cacheDir}
			if opts.SourceDateEpoch, err = sourceDateEpoch(epoch); err != nil {
				return err
			}
			logger := slog.New(r.Handler(slog.Default().Handler()))
			opts.Logger = logger
			mode := progress.Auto
			if asJSON {
				mode = progress.Quiet
			}
			opts.Progress = progress.New(cmd.ErrOrStderr(), mode, logger)
			res, err := build.Run(cmd.Context(), s, opts)
			opts.Progress.Wait()
			if err != nil {
				err = r.Error(err)
				if asJSON {
					printJSONFailure(cmd.OutOrStdout(), err.Error(), nil)
				}
				return err
			}
			if asJSON {
				b, err := json.MarshalIndent(res, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), r.Redact(string(b)))
				return err
			}
			printBuildResult(cmd.OutOrStdout(), res, r)
			return nil
		},
	}
	flags.register(cmd)
	cmd.Flags().StringVar(&outDir, "out", "", "output directory (default: the spec's output.dir, else ./output)")
	cmd.Flags().StringVar(&cacheDir, "cache", "", "base image cache (default $XDG_CACHE_HOME/bakery, else ~/.cache/bakery)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON on stdout (no progress bars)")
	cmd.Flags().StringVar(&epoch, "source-date-epoch", "", "timestamp for every file written, in seconds since 1970 (default $SOURCE_DATE_EPOCH, else derived from the base)")
	return cmd
}

func printBuildResult(w io.Writer, res *build.Result, r *spec.Redactor) {
	var b strings.Builder
	fmt.Fprintf(&b, "Built %s from %s", res.Spec, res.Base.URL)
	if res.Base.OS != "" {
		fmt.Fprintf(&b, " (%s)", res.Base.OS)
	}
	fmt.Fprintf(&b, " in %.1fs\n", res.Seconds)
	fmt.Fprintf(&b, "Steps:      %s\n", strings.Join(res.Steps, ", "))
	fmt.Fprintf(&b, "First boot: %s\n", res.FirstBoot)
	b.WriteString("Outputs:\n")
	for _, o := range res.Outputs {
		sum := ""
		if o.SHA256 != "" {
			sum = "  sha256:" + o.SHA256
		}
		fmt.Fprintf(&b, "  %-40s %10s%s\n", o.Path, units.Format(o.Size), sum)
	}
	for _, warn := range res.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", warn)
	}
	fmt.Fprint(w, r.Redact(b.String()))
}

// printJSONFailure gives scripts that asked for --json something to parse
// when the build fails: {"error": ..., "diagnostics": [...]} on stdout
// (the same message also goes to stderr, as without --json).
func printJSONFailure(w io.Writer, msg string, diagnostics []string) {
	printJSON(w, struct {
		Error       string   `json:"error"`
		Diagnostics []string `json:"diagnostics,omitempty"`
	}{msg, diagnostics})
}
