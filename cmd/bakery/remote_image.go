package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/bakeryhq/bakery/client"
	"github.com/bakeryhq/bakery/internal/progress"
	"github.com/bakeryhq/bakery/internal/units"
	"github.com/spf13/cobra"
)

// remoteFlags are shared by the commands that talk to a bakery server.
type remoteFlags struct {
	server string
	token  string
	json   bool
}

func (r *remoteFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&r.server, "server", os.Getenv("BAKERY_SERVER"), "bakery serve address, e.g. http://boot.lan:8080 (env BAKERY_SERVER)")
	cmd.PersistentFlags().StringVar(&r.token, "token", "", "API token (env BAKERY_TOKEN; or @FILE to read it from a file)")
	cmd.PersistentFlags().BoolVar(&r.json, "json", false, "print JSON")
}

func (r *remoteFlags) client() (*client.Client, error) {
	tok := r.token
	if tok == "" {
		tok = os.Getenv("BAKERY_TOKEN")
	}
	if strings.HasPrefix(tok, "@") {
		b, err := os.ReadFile(tok[1:])
		if err != nil {
			return nil, fmt.Errorf("--token %s: %w", tok, err)
		}
		tok = strings.TrimSpace(string(b))
	}
	return client.New(r.server, tok)
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

func newImageCommand() *cobra.Command {
	rf := &remoteFlags{}
	cmd := &cobra.Command{Use: "image", Short: "Manage images on a bakery server"}
	rf.register(cmd)

	var name string
	push := &cobra.Command{
		Use:   "push FILE",
		Short: "Upload a disk image (hashed, streamed, validated by the server)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			if name == "" {
				name = strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
			}
			fi, err := os.Stat(args[0])
			if err != nil {
				return err
			}
			mode := progress.Auto
			if rf.json {
				mode = progress.Quiet
			}
			rep := progress.New(cmd.ErrOrStderr(), mode, nil)
			hashTask := rep.Start("hash "+filepath.Base(args[0]), fi.Size())
			upTask := rep.Start("upload "+filepath.Base(args[0]), fi.Size())
			var hashed, sent int64
			img, err := c.PushImageFile(cmd.Context(), name, args[0],
				func(done, _ int64) { hashTask.Add(done - hashed); hashed = done },
				func(done, _ int64) {
					if hashed >= 0 {
						hashTask.Done(nil)
						hashed = -1
					}
					upTask.Add(done - sent)
					sent = done
				})
			hashTask.Done(err)
			upTask.Done(err)
			rep.Wait()
			if err != nil {
				return err
			}
			if rf.json {
				return printJSON(cmd.OutOrStdout(), img)
			}
			printImage(cmd.OutOrStdout(), img)
			return nil
		},
	}
	push.Flags().StringVar(&name, "name", "", "image name (default: the file name without extension)")

	ls := &cobra.Command{
		Use: "ls", Short: "List images", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			ims, err := c.Images(cmd.Context())
			if err != nil {
				return err
			}
			if rf.json {
				return printJSON(cmd.OutOrStdout(), ims)
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintln(tw, "ID\tNAME\tKIND\tSIZE\tCREATED")
			for _, im := range ims {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", im.ID, im.Name, im.Kind, units.Format(im.Size), im.Created.Format("2006-01-02 15:04"))
			}
			return tw.Flush()
		},
	}
	show := &cobra.Command{
		Use: "show ID|NAME", Short: "Show an image", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			im, err := c.Image(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if rf.json {
				return printJSON(cmd.OutOrStdout(), im)
			}
			printImage(cmd.OutOrStdout(), im)
			return nil
		},
	}
	rm := &cobra.Command{
		Use: "rm ID|NAME...", Short: "Delete images (refused while a machine uses one)", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			for _, ref := range args {
				if err := c.DeleteImage(cmd.Context(), ref); err != nil {
					return fmt.Errorf("%s: %w", ref, err)
				}
				if !rf.json {
					fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", ref)
				}
			}
			return nil
		},
	}
	cmd.AddCommand(push, ls, show, rm)
	return cmd
}

func printImage(w io.Writer, im client.Image) {
	fmt.Fprintf(w, "ID:      %s\nName:    %s\nSHA256:  %s\nSize:    %s (%d bytes)\nKind:    %s\nCreated: %s\n",
		im.ID, im.Name, im.SHA256, units.Format(im.Size), im.Size, im.Kind, im.Created.Format("2006-01-02 15:04:05 MST"))
	if len(im.BootFiles) > 0 {
		fmt.Fprintf(w, "Boot:    %s\n", strings.Join(im.BootFiles, " "))
	}
	if im.Kernel != "" {
		fmt.Fprintf(w, "Kernel:  %s\n", im.Kernel)
	}
	if im.Initrd != "" {
		fmt.Fprintf(w, "Initrd:  %s\n", im.Initrd)
	}
}
