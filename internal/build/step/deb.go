package step

import (
	"context"

	"github.com/bakeryhq/bakery/internal/deb"
	"github.com/bakeryhq/bakery/internal/spec"
)

// WantDebs reports whether the spec has deb blocks.
func WantDebs(s *spec.Spec) bool { return len(s.Debs) > 0 }

// Debs unpacks the spec's .deb files into the root and registers them
// with dpkg as unpacked; `dpkg --configure -a` at first boot runs their
// maintainer scripts on the real machine (nothing is emulated here).
func Debs(ctx context.Context, c *Context) error {
	for i := range c.Spec.Debs {
		d := &c.Spec.Debs[i]
		p, f, err := deb.Open(d.Path)
		if err != nil {
			return d.Errorf("", "%v", err)
		}
		res, err := deb.Install(ctx, c.Root, p, deb.Options{Arch: c.Flavour.Arch, ModTime: c.Time})
		f.Close()
		if err != nil {
			return d.Errorf("", "%v", err)
		}
		c.Log.Info("deb unpacked", "package", res.Package, "version", res.Version, "files", res.Files, "scripts", res.Scripts)
		for _, s := range res.Scripts {
			if s == "preinst" {
				c.Warnf("deb %s: its preinst is not run (bakery does not emulate the target); its postinst runs at first boot", res.Package)
			}
		}
	}
	c.FirstBoot.Run("configure the packages bakery unpacked at build time", "dpkg", "--configure", "-a")
	return nil
}
