package spec

import (
	"regexp"
	"strings"
)

// Systemd enables, disables and masks units the way systemctl would, by
// creating or removing the symlinks derived from their [Install] sections:
//
//	systemd {
//	  enable  = ["consul.service"]
//	  disable = ["bluetooth"]
//	  mask    = ["apt-daily.timer"]
//	}
//
// A unit name without a suffix means NAME.service.
type Systemd struct {
	Block
	Enable  []string `hcl:"enable" json:"enable,omitempty"`
	Disable []string `hcl:"disable" json:"disable,omitempty"`
	Mask    []string `hcl:"mask" json:"mask,omitempty"`
}

var (
	unitNameRE   = regexp.MustCompile(`^[A-Za-z0-9:_.\\@-]+$`)
	unitSuffixes = []string{".service", ".socket", ".timer", ".target", ".path", ".mount", ".automount", ".swap", ".slice", ".device", ".scope"}
)

func (s *Systemd) check(c *checks) {
	where := map[string]string{}
	for _, list := range []struct {
		attr  string
		units *[]string
	}{{"enable", &s.Enable}, {"disable", &s.Disable}, {"mask", &s.Mask}} {
		for i, u := range *list.units {
			key := elemKey(list.attr, i)
			if !unitNameRE.MatchString(u) || strings.HasPrefix(u, ".") || len(u) > 255 {
				c.errorf(&s.Block, key, "%q is not a systemd unit name", u)
				continue
			}
			if !hasUnitSuffix(u) {
				u += ".service"
				(*list.units)[i] = u
			}
			if prev, dup := where[u]; dup {
				if prev == list.attr {
					c.errorf(&s.Block, key, "unit %s is listed twice in %s", u, list.attr)
				} else {
					c.errorf(&s.Block, key, "unit %s is in both %s and %s", u, prev, list.attr)
				}
				continue
			}
			where[u] = list.attr
		}
	}
}

func hasUnitSuffix(u string) bool {
	for _, s := range unitSuffixes {
		if strings.HasSuffix(u, s) {
			return true
		}
	}
	return false
}
