package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type globalFlags struct {
	logLevel  string
	logFormat string
}

func newRootCommand() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "bakery",
		Short: "Build, flash and netboot golden images for Raspberry Pis and VMs",
		Long: `bakery takes bare boards and VMs to working cluster members.

  bakery build SPEC.hcl        build a golden image from a declarative spec
  bakery audit IMAGE           check an image holds no keys, tokens or machine state
  bakery flash IMAGE DEV...    write only mapped blocks to several cards, verify, customise
  bakery serve                 netboot Pis and VMs: proxy DHCP, TFTP, NFS roots, REST API
  bakery pkg NAME              package Consul, Nomad, Vault Agent, ... as .deb/.rpm/.apk
  bakery inspect IMAGE         show partitions, filesystems, OS and boot config
  bakery fs ls|cat|put|...     read and edit files inside an image, rootless
  bakery demo-base OUT.img     make an offline Raspberry Pi OS-like base image`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return setupLogging(cmd.ErrOrStderr(), g)
		},
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", envOr("BAKERY_LOG_LEVEL", "info"), "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", envOr("BAKERY_LOG_FORMAT", "text"), "log format: text or json")
	root.AddCommand(
		newBuildCommand(), newValidateCommand(), newFmtCommand(), newAuditCommand(),
		newInspectCommand(), newFSCommand(), newDemoBaseCommand(),
		newFlashCommand(), newDevicesCommand(),
		newServeCommand(), newImageCommand(), newMachineCommand(), newTokenCommand(),
		newPkgCommand(),
	)
	return root
}

var errNotImplemented = errors.New("not implemented yet")

func setupLogging(w io.Writer, g *globalFlags) error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch strings.ToLower(g.logFormat) {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return fmt.Errorf("--log-format %q: want text or json", g.logFormat)
	}
	slog.SetDefault(slog.New(h))
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// sourceDateEpoch is the build timestamp for reproducible output: value
// (a --source-date-epoch flag), else $SOURCE_DATE_EPOCH, else nil.
func sourceDateEpoch(value string) (*int64, error) {
	if value == "" {
		value = os.Getenv("SOURCE_DATE_EPOCH")
	}
	if value == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("source date epoch %q (--source-date-epoch or SOURCE_DATE_EPOCH): want a number of seconds since 1970", value)
	}
	return &n, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
