package step

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/fetch"
	"github.com/bakeryhq/bakery/internal/spec"
)

// WantBundles reports whether the spec has bundle blocks.
func WantBundles(s *spec.Spec) bool { return len(s.Bundles) > 0 }

// Bundles installs the spec's cluster bundles (issue 7): each release is
// downloaded into the cache, its checksum (and for HashiCorp its PGP
// signature) verified and its binary checked against the image's
// architecture, then binaries, accounts, directories, configuration and
// hardened units go into the root, units enabled in start order
// (vault-agent, consul, nomad, ...). No secret is written: they reach the
// node at run time (docs/cluster.md).
func Bundles(ctx context.Context, c *Context) error {
	plan, err := bundle.PlanFromSpec(c.Spec)
	if err != nil {
		return err
	}
	plan.BootDir = bootMount(c)
	if va := plan.Get("vault-agent"); va != nil && strings.HasPrefix(va.SecretIDFile, "/run/bakery/") {
		// Netbooted nodes fetch their credential from bakery serve.
		plan.Netboot = true
	}
	if err := plan.Normalize(); err != nil {
		return bundleError(c.Spec, err)
	}
	arch, err := bundle.DetectArch(c.Root)
	if err != nil {
		return err
	}
	src := &bundle.Source{Cache: bundleFetcher(c)}
	arts := map[string]*bundle.Artifact{}
	for _, s := range plan.Bundles {
		art, err := src.Fetch(ctx, s, arch)
		if err != nil {
			if b := specBundle(c.Spec, s.Name); b != nil {
				return b.Errorf("version", "%v", err)
			}
			return err
		}
		arts[s.Name] = art
	}
	inst, err := bundle.Install(ctx, c.Root, plan, arts, bundle.InstallOptions{ModTime: c.Time})
	if err != nil {
		return bundleError(c.Spec, err)
	}
	for _, i := range inst {
		c.Log.Info("bundle installed", "bundle", i.Name, "version", i.Version, "unit", i.Unit, "user", i.User, "arch", arch.String())
	}
	if va := plan.Get("vault-agent"); va != nil && !plan.Netboot && c.Boot == nil && strings.HasPrefix(va.SecretIDFile, plan.BootDir+"/") {
		c.Warnf("vault-agent expects its credential on the boot partition (%s) but the image has none; set secret_id_file", va.SecretIDFile)
	}
	return nil
}

// bundleFetcher is the download cache for release archives: the build's
// own (same cache directory and progress), or the default cache
// ($XDG_CACHE_HOME/bakery) when a step runs outside a build.
func bundleFetcher(c *Context) *fetch.Fetcher {
	if c.Fetcher != nil {
		return c.Fetcher
	}
	return &fetch.Fetcher{Logger: c.Log}
}

// bootMount is where the image mounts its boot partition: /boot/firmware
// on current Raspberry Pi OS and Debian on Pis, else /boot.
func bootMount(c *Context) string {
	if fi, err := c.Root.Stat("/boot/firmware"); err == nil && fi.IsDir() {
		return "/boot/firmware"
	}
	return "/boot"
}

func specBundle(s *spec.Spec, name string) *spec.Bundle {
	for i := range s.Bundles {
		if s.Bundles[i].Name == name {
			return &s.Bundles[i]
		}
	}
	return nil
}

// bundleError points a bundle setting error at its spec attribute.
func bundleError(s *spec.Spec, err error) error {
	var se *bundle.SettingError
	if errors.As(err, &se) {
		if b := specBundle(s, se.Bundle); b != nil {
			return b.Errorf(se.Field, "%s: %s", se.Field, se.Msg)
		}
	}
	return fmt.Errorf("bundles: %w", err)
}
