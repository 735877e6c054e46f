package spec

import (
	"regexp"
	"slices"
)

// Output names what a build writes:
//
//	output {
//	  dir     = "output"
//	  name    = "node"
//	  formats = ["img", "bmap", "sha256", "zst"]
//	}
//
// gives output/node.img, output/node.img.bmap, output/node.img.zst and
// output/SHA256SUMS.
type Output struct {
	Block
	// Dir is relative to the working directory, like --out, which
	// overrides it (default "output").
	Dir string `hcl:"dir" json:"dir"`
	// Name is the base file name (default "node").
	Name string `hcl:"name" json:"name"`
	// Formats are any of img, bmap, sha256 (SHA256SUMS over every
	// output), zst, xz, gz, qcow2; default img, bmap, sha256.
	Formats []string `hcl:"formats" json:"formats"`
}

// Output formats.
var OutputFormats = []string{"img", "bmap", "sha256", "zst", "xz", "gz", "qcow2"}

var outputNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

func (o *Output) setDefaults() {
	o.Dir, o.Name, o.Formats = "output", "node", []string{"img", "bmap", "sha256"}
}

// Has reports whether format is wanted.
func (o *Output) Has(format string) bool { return slices.Contains(o.Formats, format) }

func (o *Output) check(c *checks) {
	b := &o.Block
	if b.Known("dir") && o.Dir == "" {
		c.errorf(b, "dir", "dir must not be empty")
	}
	if b.Known("name") && (!outputNameRE.MatchString(o.Name) || len(o.Name) > 200) {
		c.errorf(b, "name", "name %q must be a plain file name (letters, digits, '.', '_', '+', '-')", o.Name)
	}
	if b.Known("formats") && len(o.Formats) == 0 {
		c.errorf(b, "formats", "formats must name at least one output")
	}
	seen := map[string]bool{}
	for i, f := range o.Formats {
		key := elemKey("formats", i)
		if !slices.Contains(OutputFormats, f) {
			msg := "format %q is not one of img, bmap, sha256, zst, xz, gz, qcow2"
			if s := suggest(f, OutputFormats); s != "" {
				c.errorf(b, key, msg+" (did you mean %q?)", f, s)
			} else {
				c.errorf(b, key, msg, f)
			}
		} else if seen[f] {
			c.errorf(b, key, "format %q is listed twice", f)
		}
		seen[f] = true
	}
}
