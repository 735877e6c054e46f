package spec

import (
	"encoding/json"
	"fmt"
	"math/big"
	"regexp"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/bakeryhq/bakery/internal/units"
)

// Layout changes the partitioning:
//
//	layout {
//	  table     = "gpt"
//	  root_size = "6GiB"
//	  partition "data" {
//	    size       = "4GiB"
//	    filesystem = "ext4"
//	    mount      = "/data"
//	  }
//	  grow = "data"
//	}
type Layout struct {
	Block
	// Table is "keep" (default), "mbr" or "gpt" (converted where possible).
	Table string `hcl:"table" json:"table"`
	// RootSize grows the root partition and its filesystem at build time
	// (0: unchanged).
	RootSize Size `hcl:"root_size" json:"root_size,omitempty"`
	// Partitions are added after root, in order.
	Partitions []Partition `hcl:"partition,block,unique" json:"partitions,omitempty"`
	// Grow names the partition that fills the rest of the card at first
	// boot: "root", a partition's name, or "none". It must be the last
	// partition. Default: "root", or the last added partition when there
	// are some.
	Grow string `hcl:"grow" json:"grow"`
}

// Partition is a partition added after root.
type Partition struct {
	Block
	Name string `hcl:"name,label" json:"name"`
	// Size is required ("4GiB", "512MiB", or a number of bytes).
	Size Size `hcl:"size,required" json:"size"`
	// Filesystem is "ext4" (default, made at build time), "xfs-at-boot"
	// (formatted with mkfs.xfs at first boot) or "none".
	Filesystem string `hcl:"filesystem" json:"filesystem"`
	// Mount is where fstab mounts it (by label); empty: not mounted.
	Mount string `hcl:"mount" json:"mount,omitempty"`
	// Label is the filesystem label; default the partition's name.
	Label string `hcl:"label" json:"label"`
	// Options are the fstab mount options (default "defaults";
	// extension).
	Options string `hcl:"options" json:"options"`
}

// Partition table settings.
const (
	TableKeep = "keep"
	TableMBR  = "mbr"
	TableGPT  = "gpt"
)

// Partition filesystems.
const (
	FSExt4      = "ext4"
	FSXFSAtBoot = "xfs-at-boot"
	FSNone      = "none"
)

// GrowNone disables first-boot growth.
const GrowNone = "none"

// Size is a byte count written as "4GiB", "512MB" or a plain number.
type Size int64

func (s *Size) decodeCty(v cty.Value) error {
	var n int64
	switch v.Type() {
	case cty.String:
		b, err := units.ParseBytes(v.AsString())
		if err != nil {
			return err
		}
		n = b
	case cty.Number:
		i, acc := v.AsBigFloat().Int64()
		if acc != big.Exact {
			return fmt.Errorf("size %s is not a whole number of bytes", v.AsBigFloat().Text('g', 10))
		}
		n = i
	default:
		return fmt.Errorf(`want a size such as "4GiB", got %s`, v.Type().FriendlyName())
	}
	if n <= 0 {
		return fmt.Errorf("size must be positive")
	}
	*s = Size(n)
	return nil
}

// String prints the size with binary units ("4GiB").
func (s Size) String() string { return units.Format(int64(s)) }

// MarshalJSON writes the size as its string form.
func (s Size) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

var (
	partNameRE  = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,30}$`)
	mountOptsRE = regexp.MustCompile(`^[A-Za-z0-9_=.,:/+-]+$`)
)

func (l *Layout) setDefaults() { l.Table = TableKeep }

func (l *Layout) check(c *checks) {
	b := &l.Block
	checkEnum(c, b, "table", l.Table, TableKeep, TableMBR, TableGPT)
	if l.Table == TableMBR && len(l.Partitions) > 2 {
		c.warnf(b, "table", "an MBR table holds 4 primary partitions; boot, root and %d more need an extended partition", len(l.Partitions))
	}
	mounts := map[string]string{}
	labels := map[string]string{}
	for i := range l.Partitions {
		p := &l.Partitions[i]
		if prev, dup := mounts[p.Mount]; dup && p.Mount != "" {
			c.errorf(&p.Block, "mount", "mount point %s is also used by partition %q", p.Mount, prev)
		}
		mounts[p.Mount] = p.Name
		if prev, dup := labels[p.Label]; dup && p.Label != "" {
			c.errorf(&p.Block, "label", "label %q is also used by partition %q", p.Label, prev)
		}
		labels[p.Label] = p.Name
	}
	last := "root"
	if n := len(l.Partitions); n > 0 {
		last = l.Partitions[n-1].Name
	}
	if !b.IsSet("grow") {
		l.Grow = last
		return
	}
	if !b.Known("grow") || l.Grow == GrowNone || l.Grow == last {
		return
	}
	names := []string{"root", GrowNone}
	found := l.Grow == "root"
	for _, p := range l.Partitions {
		names = append(names, p.Name)
		found = found || p.Name == l.Grow
	}
	if !found {
		msg := fmt.Sprintf("grow = %q names no partition; want \"root\", \"none\" or a partition block's name", l.Grow)
		if s := suggest(l.Grow, names); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		c.errorf(b, "grow", "%s", msg)
		return
	}
	c.errorf(b, "grow", "grow = %q: only the last partition (%q) can fill the rest of the card", l.Grow, last)
}

func (p *Partition) setDefaults() { p.Filesystem, p.Options = FSExt4, "defaults" }

func (p *Partition) check(c *checks) {
	b := &p.Block
	switch {
	case !partNameRE.MatchString(p.Name):
		c.errorf(b, "", "partition name %q is not valid (lower-case letters, digits, '_', '-', at most 31)", p.Name)
	case p.Name == "root" || p.Name == "boot" || p.Name == GrowNone:
		c.errorf(b, "", "partition name %q is reserved", p.Name)
	}
	checkEnum(c, b, "filesystem", p.Filesystem, FSExt4, FSXFSAtBoot, FSNone)
	if !b.IsSet("label") {
		p.Label = p.Name
	}
	maxLabel := 16 // ext4
	if p.Filesystem == FSXFSAtBoot {
		maxLabel = 12
	}
	if p.Filesystem != FSNone && (len(p.Label) == 0 || len(p.Label) > maxLabel || strings.ContainsAny(p.Label, " \t\n/\"'\\")) {
		c.errorf(b, "label", "label %q must be 1 to %d characters without spaces, quotes or slashes for %s", p.Label, maxLabel, p.Filesystem)
	}
	if b.Known("mount") {
		if p.Filesystem == FSNone {
			c.errorf(b, "mount", `a partition with filesystem = "none" cannot be mounted`)
		} else if checkAbsPath(c, b, "mount", p.Mount) && (p.Mount == "/" || p.Mount == "/boot" || p.Mount == "/boot/firmware") {
			c.errorf(b, "mount", "mount point %s is taken by the base image's own partitions", p.Mount)
		}
	}
	if b.Known("options") && !mountOptsRE.MatchString(p.Options) {
		c.errorf(b, "options", "options %q: want comma-separated mount options such as \"defaults,noatime\"", p.Options)
	}
	if b.Known("size") && p.Size < 1<<20 {
		c.errorf(b, "size", "size %s is below the 1MiB minimum", p.Size)
	}
}
