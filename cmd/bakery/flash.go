package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/bakeryhq/bakery/internal/flash"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/progress"
	"github.com/bakeryhq/bakery/internal/units"
)

func newFlashCommand() *cobra.Command {
	var (
		bmapPath, hostname, putMode string
		puts                        []string
		cred                        credentialFlags
		noVerify, yes, force, asJS  bool
	)
	cmd := &cobra.Command{
		Use:   "flash IMAGE TARGET...",
		Short: "Write an image to one or more cards, verify and customise each",
		Long: `Write IMAGE (raw, .xz, .gz or .zst) to every TARGET at once: SD cards,
USB disks, loop devices or image files. Only the ranges in the image's block
map are written (--bmap, IMAGE.bmap or NAME.img.bmap beside it, or for a raw
image its data plus what its filesystems need). Every target is read back
and verified, then customised (--hostname, --put).

A target's first MiB is zeroed first and the image's first MiB written
last, so a failed or interrupted flash leaves a card without a partition
table rather than one that looks fine.

  bakery flash pi.img.zst /dev/sdb /dev/sdc --hostname node-{n}
  bakery flash pi.img /dev/sdb --put boot:/creds.json=node.json`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			image, targets := args[0], args[1:]
			var customizers []flash.Customizer
			if hostname != "" {
				c, err := flash.Hostname(hostname)
				if err != nil {
					return err
				}
				customizers = append(customizers, c)
			}
			mode, err := fs.ParseMode(putMode)
			if err != nil {
				return fmt.Errorf("--put-mode %q: %w", putMode, err)
			}
			for _, spec := range puts {
				p, err := flash.ParsePut(spec, mode)
				if err != nil {
					return err
				}
				if err := p.Check(); err != nil {
					return err
				}
				customizers = append(customizers, p)
			}
			if c, err := cred.customizer(len(targets)); err != nil {
				return err
			} else if c != nil {
				customizers = append(customizers, c)
			}

			src, err := flash.OpenSource(ctx, image, flash.SourceOptions{BmapPath: bmapPath})
			if err != nil {
				return err
			}
			infos, err := flash.CheckTargets(src, targets, flash.SafetyOptions{Force: force})
			if err != nil {
				return err
			}
			if !yes {
				if err := confirm(ctx, cmd.ErrOrStderr(), src, infos); err != nil {
					return err
				}
			}
			mode2 := progress.Auto
			if asJS {
				mode2 = progress.Quiet
			}
			rep := progress.New(cmd.ErrOrStderr(), mode2, slog.Default())
			results := flash.Flash(ctx, src, targets, flash.Options{
				Verify:      !noVerify,
				Customizers: customizers,
				Progress:    rep,
				Logger:      slog.Default(),
			})
			rep.Wait()
			if asJS {
				if err := printJSON(cmd.OutOrStdout(), results); err != nil {
					return err
				}
			} else {
				printFlashResults(cmd.OutOrStdout(), results)
			}
			if !flash.AllOK(results) {
				failed := 0
				for _, r := range results {
					if !r.OK {
						failed++
					}
				}
				code := 1
				if ctx.Err() != nil {
					code = 130
				}
				return &exitError{code: code, msg: fmt.Sprintf("%d of %d targets failed", failed, len(results))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	cred.register(f)
	f.StringVar(&bmapPath, "bmap", "", "block map of the image (default: IMAGE.bmap or NAME.img.bmap beside it)")
	f.BoolVar(&noVerify, "no-verify", false, "do not read the targets back to verify them")
	f.BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation before overwriting disks")
	f.BoolVar(&force, "force", false, "allow disks that are not removable, and existing files that do not look like disk images (never mounted or system disks)")
	f.StringVar(&hostname, "hostname", "", "give each card its own hostname; {n} is its position (1, 2, ...), {target} its device name")
	f.StringArrayVar(&puts, "put", nil, "copy a file into each card: PART:/path=LOCALFILE, PART being boot, root or a partition number; {n} in LOCALFILE is the card's position")
	f.StringVar(&putMode, "put-mode", "0600", "mode of files copied with --put (where the filesystem has modes)")
	f.BoolVar(&asJS, "json", false, "print the per-target results as JSON")
	return cmd
}

// confirm shows the disks about to be overwritten and waits for "yes" on
// the terminal. Image-file targets need no confirmation.
func confirm(ctx context.Context, w io.Writer, src *flash.Source, infos []flash.TargetInfo) error {
	var disks []flash.TargetInfo
	for _, t := range infos {
		if t.Device {
			disks = append(disks, t)
		}
	}
	if len(disks) == 0 {
		return nil
	}
	tty, err := openTTY()
	if err != nil {
		return fmt.Errorf("no terminal to confirm overwriting %d disk(s) on; pass --yes: %w", len(disks), err)
	}
	defer tty.Close()
	size := "unknown size"
	if src.Size > 0 {
		size = units.Format(src.Size)
	}
	fmt.Fprintf(w, "Writing %s (%s) will ERASE everything on:\n", src.Path, size)
	for _, d := range disks {
		fmt.Fprintf(w, "  %s\n", d.Describe())
	}
	fmt.Fprint(w, "Type yes to continue: ")
	// Read in the background so Ctrl-C (which cancels ctx) ends the wait.
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(tty).ReadString('\n')
		answer <- line
	}()
	select {
	case line := <-answer:
		if strings.TrimSpace(strings.ToLower(line)) != "yes" {
			return errors.New("not confirmed; nothing was written")
		}
		return nil
	case <-ctx.Done():
		fmt.Fprintln(w)
		return fmt.Errorf("interrupted; nothing was written: %w", ctx.Err())
	}
}

func openTTY() (*os.File, error) {
	if runtime.GOOS == "windows" {
		return os.Open("CONIN$")
	}
	return os.Open("/dev/tty")
}

func printFlashResults(w io.Writer, results []flash.Result) {
	for _, r := range results {
		if r.OK {
			what := "written"
			if r.Verified {
				what += " and verified"
			}
			if r.Customized {
				what += ", customised"
			}
			fmt.Fprintf(w, "ok      %s: %s %s in %.1fs\n", r.Target, units.Format(r.BytesWritten), what, r.Seconds)
			continue
		}
		fmt.Fprintf(w, "FAILED  %s: %s\n", r.Target, r.Error)
	}
}
