package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/fetch"
	"github.com/bakeryhq/bakery/internal/pkg"
	"github.com/bakeryhq/bakery/internal/spec"
)

func newPkgCommand() *cobra.Command {
	var (
		version, config, mirror, out, cache, pgpKey, release, maintainer string
		arches, formats                                                  []string
		jsonOut, allowSecrets                                            bool
	)
	cmd := &cobra.Command{
		Use:   "pkg NAME --version V --arch arm64,armhf,amd64",
		Short: "Build deb, rpm and apk packages of a cluster bundle from its verified release",
		Long: `bakery pkg packages Consul, Nomad, Vault Agent, consul-template, Prometheus or
node_exporter from the vendor's release archive (checksum verified; HashiCorp's
checksums also by their PGP signature) with the same binary, hardened unit,
default configuration, service account and directories that bakery build puts
into images. Packages are reproducible: SOURCE_DATE_EPOCH sets every date.

--config FILE.hcl holds bundle blocks in the spec's syntax (docs/cluster.md);
NAME picks the one to package, the others give context (a consul whose
secrets come from vault-agent). As in a spec, a gossip key, token or private
key written into it is refused: it would be on every machine the package is
installed on. --allow-secrets turns that into a warning.

Bundles: ` + strings.Join(bundle.Names(), ", "),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			var bundles []spec.Bundle
			if config != "" {
				src, err := os.ReadFile(config)
				if err != nil {
					return err
				}
				cfg, diags := spec.ParseBundleConfig(config, src)
				if !diags.HasErrors() {
					diags = append(diags, spec.CheckBundleConfigSecrets(cfg, allowSecrets)...)
				}
				printDiagnostics(cmd.ErrOrStderr(), diags, nil)
				if diags.HasErrors() {
					return &exitError{code: 1, msg: fmt.Sprintf("%s has errors", config)}
				}
				bundles = cfg.Bundles
			}
			over := pkg.Overrides{Version: version, Mirror: mirror}
			if pgpKey != "" {
				b, err := os.ReadFile(pgpKey)
				if err != nil {
					return fmt.Errorf("--pgp-key: %w", err)
				}
				over.PGPKey = b
			}
			plan, err := pkg.PlanFor(bundles, name, over)
			if err != nil {
				return err
			}
			var as []bundle.Arch
			for _, a := range pkgSplitList(arches) {
				arch, err := bundle.ParseArch(a)
				if err != nil {
					return fmt.Errorf("--arch: %w", err)
				}
				as = append(as, arch)
			}
			var mtime time.Time
			if epoch, err := sourceDateEpoch(""); err != nil {
				return err
			} else if epoch != nil {
				mtime = time.Unix(*epoch, 0).UTC()
			}
			res, err := pkg.Build(cmd.Context(), pkg.Options{
				Plan: plan, Name: name, Arches: as, Formats: pkgSplitList(formats), OutDir: out,
				Source:  &bundle.Source{Cache: &fetch.Fetcher{CacheDir: cache}},
				MTime:   mtime,
				Release: release, Maintainer: maintainer,
			})
			if err != nil {
				return err
			}
			if jsonOut {
				return printJSON(cmd.OutOrStdout(), res)
			}
			for _, r := range res {
				fmt.Fprintf(cmd.OutOrStdout(), "%s  %s\n", r.SHA256, r.Path)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&version, "version", "", "release version, e.g. 1.20.1 (required unless --config gives it)")
	f.StringSliceVar(&arches, "arch", []string{"arm64", "armhf", "amd64"}, "architectures: arm64, armhf (armv6, runs on every 32-bit Pi), armv7, amd64")
	f.StringSliceVar(&formats, "format", []string{"deb"}, "package formats: deb, rpm, apk")
	f.StringVar(&out, "out", ".", "output directory")
	f.StringVar(&config, "config", "", "HCL file of bundle blocks (the spec's syntax)")
	f.StringVar(&mirror, "mirror", "", "release URL template with {name}, {version}, {os}, {arch}, {file} (air-gapped sites)")
	f.StringVar(&pgpKey, "pgp-key", "", "armored PGP public key replacing HashiCorp's embedded release key")
	f.StringVar(&cache, "cache", "", "download cache (default $XDG_CACHE_HOME/bakery)")
	f.StringVar(&release, "release", "1", "package revision")
	f.StringVar(&maintainer, "maintainer", "", "package maintainer (default \"bakery <bakery@localhost>\")")
	f.BoolVar(&jsonOut, "json", false, "print the packages as JSON")
	f.BoolVar(&allowSecrets, "allow-secrets", false, "package literal secrets (gossip keys, tokens, private keys) found in --config, with a warning")
	return cmd
}

func pkgSplitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
