package step

import (
	"context"
	"errors"
	"strconv"

	"github.com/bakeryhq/bakery/internal/systemd"
)

// Systemd enables, disables and masks the spec's units exactly as
// `systemctl enable|disable|mask` would (see internal/systemd). Enabling a
// unit the image lacks, or one without an [Install] section, is an error
// at the unit's position in the spec; disabling a unit the image lacks is
// only a warning, so one spec can serve bases with and without it.
func Systemd(_ context.Context, c *Context) error {
	s := &c.Spec.Systemd
	var errs []error
	for i, u := range s.Mask {
		if _, err := systemd.Mask(c.Root, u); err != nil {
			errs = append(errs, s.Errorf(elem("mask", i), "mask %s: %v", u, err))
		}
	}
	for i, u := range s.Disable {
		if _, err := systemd.Disable(c.Root, u); err != nil {
			if errors.Is(err, systemd.ErrNotFound) {
				c.Warnf("systemd: disable %s: the unit does not exist in the image; nothing to disable", u)
				continue
			}
			errs = append(errs, s.Errorf(elem("disable", i), "disable %s: %v", u, err))
		}
	}
	for i, u := range s.Enable {
		if _, err := systemd.Enable(c.Root, u); err != nil {
			errs = append(errs, s.Errorf(elem("enable", i), "enable %s: %v", u, err))
		}
	}
	return errors.Join(errs...)
}

func elem(attr string, i int) string { return attr + "[" + strconv.Itoa(i) + "]" }
