package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"

	"github.com/bakeryhq/bakery/internal/atomicfile"
	"github.com/bakeryhq/bakery/internal/spec"
)

func newFmtCommand() *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:   "fmt [--check] SPEC.hcl|DIR|- ...",
		Short: "Rewrite build specs in canonical HCL formatting",
		Long: `Rewrite each spec in canonical HCL formatting, in place and atomically,
only when it changes. A directory means every *.hcl file in it; "-" reads
stdin and writes stdout. With --check nothing is written: the files that
would change are listed and the exit status is 1 if there are any.
A file with a syntax error is reported and left alone.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var paths []string
			for _, a := range args {
				if a == "-" {
					paths = append(paths, a)
					continue
				}
				fi, err := os.Stat(a)
				if err != nil {
					return err
				}
				if !fi.IsDir() {
					paths = append(paths, a)
					continue
				}
				matches, err := filepath.Glob(filepath.Join(a, "*.hcl"))
				if err != nil {
					return err
				}
				sort.Strings(matches)
				paths = append(paths, matches...)
			}
			changed, failed := 0, 0
			for _, p := range paths {
				did, err := formatOne(cmd, p, check)
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					failed++
					continue
				}
				if did {
					changed++
					if p != "-" {
						fmt.Fprintln(cmd.OutOrStdout(), p)
					}
				}
			}
			switch {
			case failed > 0:
				return &exitError{code: 1, msg: fmt.Sprintf("%d %s could not be formatted", failed, plural(failed, "file", "files"))}
			case check && changed > 0:
				return &exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "do not write; list files that are not formatted and exit 1 if any")
	return cmd
}

// formatOne formats one file (or stdin to stdout for "-") and reports
// whether its formatting changed.
func formatOne(cmd *cobra.Command, path string, check bool) (bool, error) {
	var src []byte
	var err error
	var mode os.FileMode = 0o644
	if path == "-" {
		src, err = io.ReadAll(cmd.InOrStdin())
	} else {
		var fi os.FileInfo
		if fi, err = os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
			src, err = os.ReadFile(path)
		}
	}
	if err != nil {
		return false, err
	}
	name := path
	if path == "-" {
		name = "<stdin>"
	}
	out, diags := spec.Format(name, src)
	if diags.HasErrors() {
		return false, fmt.Errorf("%s", bytes.TrimRight([]byte(formatDiagnostics(diags, nil)), "\n"))
	}
	changed := !bytes.Equal(out, src)
	if path == "-" {
		if !check {
			_, err = cmd.OutOrStdout().Write(out)
		}
		return changed, err
	}
	if !changed || check {
		return changed, nil
	}
	return true, atomicfile.WriteFile(path, out, mode)
}
