package spec

import (
	"fmt"
	"regexp"

	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/bakeryhq/bakery/internal/hostname"
)

// HostnameDHCP is the default hostname: no name is baked in and each node
// takes its name from DHCP, so one image serves every node.
const HostnameDHCP = "dhcp"

// validHostname checks an RFC 1123 host name.
func validHostname(h string) bool { return hostname.Valid(h) == nil }

func checkHostname(c *checks, b *Block, h string) {
	if !b.Known("hostname") || h == HostnameDHCP {
		return
	}
	if !validHostname(h) {
		c.errorf(b, "hostname", `hostname %q is not a valid RFC 1123 host name (letters, digits and inner hyphens, labels up to 63 characters); use "dhcp" to take the name from DHCP`, h)
	}
}

// Area/City, optionally Area/Region/City, or UTC-like single names.
var timezoneRE = regexp.MustCompile(`^([A-Z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){1,2}|UTC|GMT|Etc/[A-Za-z0-9+-]+)$`)

func checkTimezone(c *checks, b *Block, tz string) {
	if !b.Known("timezone") {
		return
	}
	if !timezoneRE.MatchString(tz) {
		c.errorf(b, "timezone", `timezone %q does not look like a tz database name such as "Europe/Dublin" or "UTC"`, tz)
	}
}

var localeRE = regexp.MustCompile(`^([a-z]{2,3}(_[A-Z]{2})?|C)(\.[A-Za-z0-9-]+)?(@[a-z]+)?$|^POSIX$`)

func checkLocale(c *checks, b *Block, l string) {
	if !b.Known("locale") {
		return
	}
	if !localeRE.MatchString(l) {
		c.errorf(b, "locale", `locale %q does not look like a locale name such as "en_GB.UTF-8" or "C.UTF-8"`, l)
	}
}

// Keyboard is the console and X keyboard (/etc/default/keyboard). It is
// written either as a layout name or as an object:
//
//	keyboard = "gb"
//	keyboard = { layout = "de", variant = "nodeadkeys", model = "pc105", options = "ctrl:nocaps" }
type Keyboard struct {
	Layout  string `json:"layout"`
	Model   string `json:"model,omitempty"`   // default "pc105" when written
	Variant string `json:"variant,omitempty"` // e.g. "nodeadkeys"
	Options string `json:"options,omitempty"` // XKBOPTIONS, e.g. "ctrl:nocaps"
}

var (
	xkbNameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	xkbOptionsRE = regexp.MustCompile(`^[A-Za-z0-9_:+-]+(,[A-Za-z0-9_:+-]+)*$`)
)

func (k *Keyboard) decodeCty(v cty.Value) error {
	if v.Type() == cty.String {
		k.Layout = v.AsString()
	} else if v.Type().IsObjectType() || v.Type().IsMapType() {
		for it := v.ElementIterator(); it.Next(); {
			key, ev := it.Element()
			name := key.AsString()
			s, err := convert.Convert(ev, cty.String)
			if err != nil || s.IsNull() {
				return fmt.Errorf("%s: want a string", name)
			}
			switch name {
			case "layout":
				k.Layout = s.AsString()
			case "model":
				k.Model = s.AsString()
			case "variant":
				k.Variant = s.AsString()
			case "options":
				k.Options = s.AsString()
			default:
				msg := fmt.Sprintf("unknown attribute %q (want layout, model, variant, options)", name)
				if sug := suggest(name, []string{"layout", "model", "variant", "options"}); sug != "" {
					msg += fmt.Sprintf("; did you mean %q?", sug)
				}
				return fmt.Errorf("%s", msg)
			}
		}
	} else {
		return fmt.Errorf(`want a layout name such as "gb" or an object { layout = "de", variant = "nodeadkeys" }, got %s`, v.Type().FriendlyName())
	}
	switch {
	case !xkbNameRE.MatchString(k.Layout):
		return fmt.Errorf("layout %q is not an XKB layout name such as \"us\" or \"gb\"", k.Layout)
	case k.Model != "" && !xkbNameRE.MatchString(k.Model):
		return fmt.Errorf("model %q is not an XKB model name such as \"pc105\"", k.Model)
	case k.Variant != "" && !xkbNameRE.MatchString(k.Variant):
		return fmt.Errorf("variant %q is not an XKB variant name", k.Variant)
	case k.Options != "" && !xkbOptionsRE.MatchString(k.Options):
		return fmt.Errorf("options %q: want comma-separated XKB options such as \"ctrl:nocaps\"", k.Options)
	}
	if k.Model == "" {
		k.Model = "pc105"
	}
	return nil
}

// Debian package names, optionally pinned: "htop", "nomad=1.9.*" is not
// allowed (no globs), "curl=7.88.1-10+deb12u5" is.
var packageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(:[a-z0-9]+)?(=[A-Za-z0-9.+~:-]+)?$`)

func checkPackages(c *checks, b *Block, pkgs []string) {
	seen := map[string]int{}
	for i, p := range pkgs {
		key := fmt.Sprintf("packages[%d]", i)
		if !packageRE.MatchString(p) {
			c.errorf(b, key, "package %q is not a Debian package name (optionally name=version)", p)
			continue
		}
		if j, dup := seen[p]; dup {
			c.errorf(b, key, "package %q is listed twice (also at index %d)", p, j)
		}
		seen[p] = i
	}
}
