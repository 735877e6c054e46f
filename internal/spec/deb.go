package spec

import (
	"os"
	"strings"
)

// Deb unpacks a Debian package into the image and registers it with
// dpkg; its maintainer scripts run at first boot (dpkg --configure -a):
//
//	deb "packages/mytool_1.0_arm64.deb" {}
//
// The label is a path on the build machine, relative to the spec; Load
// makes it absolute (Path).
type Deb struct {
	Block
	Source string `hcl:"source,label" json:"source"`
	// Path is Source resolved against the spec's directory.
	Path string `json:"-"`
}

func (d *Deb) check(c *checks) {
	b := &d.Block
	if !strings.HasSuffix(d.Source, ".deb") {
		c.errorf(b, "", "deb %q: the file name must end in .deb", d.Source)
	}
	full := resolvePath(c.dir(), d.Source)
	fi, err := os.Stat(full)
	switch {
	case err != nil && os.IsNotExist(err):
		c.errorf(b, "", "deb file %q does not exist (looked for %s)", d.Source, full)
	case err != nil:
		c.errorf(b, "", "deb file %q: %v", d.Source, err)
	case !fi.Mode().IsRegular():
		c.errorf(b, "", "deb %q is not a regular file", d.Source)
	}
	d.Path = full
}
