package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newTokenCommand() *cobra.Command {
	rf := &remoteFlags{}
	cmd := &cobra.Command{Use: "token", Short: "Manage API tokens on a bakery server (admin scope)"}
	rf.register(cmd)

	var scopes []string
	create := &cobra.Command{
		Use: "create NAME", Short: "Create a token; its secret is printed once", Args: cobra.ExactArgs(1),
		Example: "  bakery token create ci --scope read,write",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), args[0], scopes)
			if err != nil {
				return err
			}
			if rf.json {
				return printJSON(cmd.OutOrStdout(), t)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "created token %s (%s) with scopes %s; it is shown only now:\n", t.ID, t.Name, strings.Join(t.Scopes, ","))
			fmt.Fprintln(cmd.OutOrStdout(), t.Token)
			return nil
		},
	}
	create.Flags().StringSliceVar(&scopes, "scope", []string{"read"}, "scopes: read, write, admin")

	ls := &cobra.Command{
		Use: "ls", Short: "List tokens", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			ts, err := c.Tokens(cmd.Context())
			if err != nil {
				return err
			}
			if rf.json {
				return printJSON(cmd.OutOrStdout(), ts)
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tCREATED\tLAST USED")
			for _, t := range ts {
				used := "-"
				if !t.LastUsed.IsZero() {
					used = t.LastUsed.Local().Format("2006-01-02 15:04")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, strings.Join(t.Scopes, ","), t.Created.Local().Format("2006-01-02 15:04"), used)
			}
			return tw.Flush()
		},
	}
	rm := &cobra.Command{
		Use: "rm ID...", Short: "Delete tokens", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			for _, id := range args {
				if err := c.DeleteToken(cmd.Context(), id); err != nil {
					return fmt.Errorf("%s: %w", id, err)
				}
				if !rf.json {
					fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", id)
				}
			}
			return nil
		},
	}
	cmd.AddCommand(create, ls, rm)
	return cmd
}
