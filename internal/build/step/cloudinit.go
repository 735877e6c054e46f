package step

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// UserData renders the cloud-config bakery generates, merged with the
// spec's cloud_init.user_data: mappings merge key by key, lists
// concatenate (bakery's items first), and for anything else the spec's
// value wins.
func UserData(c *Context) (string, error) {
	gen := map[string]any{}
	for k, v := range c.FirstBoot.CloudConfig {
		gen[k] = v
	}
	if len(c.FirstBoot.Packages) > 0 {
		gen["package_update"] = true
		gen["packages"] = toAny(c.FirstBoot.Packages)
	}
	if len(c.FirstBoot.Commands) > 0 {
		var cmds []any
		for _, cmd := range c.FirstBoot.Commands {
			cmds = append(cmds, toAny(cmd.Argv))
		}
		gen["runcmd"] = cmds
	}
	if ci := c.Spec.CloudInit; ci != nil && strings.TrimSpace(ci.UserData) != "" {
		var user map[string]any
		if err := yaml.Unmarshal([]byte(ci.UserData), &user); err != nil {
			return "", ci.Errorf("user_data", "user_data is not a YAML mapping: %v", err)
		}
		gen = mergeCloudConfig(gen, user)
	}
	var out bytes.Buffer
	if len(gen) > 0 {
		enc := yaml.NewEncoder(&out)
		enc.SetIndent(2)
		if err := enc.Encode(gen); err != nil {
			return "", fmt.Errorf("render user-data: %w", err)
		}
		enc.Close()
	}
	return "#cloud-config\n# Written by bakery build.\n" + out.String(), nil
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// mergeCloudConfig merges over into base (see UserData).
func mergeCloudConfig(base, over map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, ov := range over {
		bv, ok := out[k]
		if !ok {
			out[k] = ov
			continue
		}
		switch b := bv.(type) {
		case map[string]any:
			if o, ok := ov.(map[string]any); ok {
				out[k] = mergeCloudConfig(b, o)
				continue
			}
		case []any:
			if o, ok := ov.([]any); ok {
				out[k] = append(append([]any{}, b...), o...)
				continue
			}
		}
		out[k] = ov
	}
	return out
}

// InstanceID is the NoCloud instance-id of this build: derived from all
// of the build's inputs (source file contents included), so an image
// built from changed inputs runs cloud-init anew, and rebuilding the same
// inputs gives the same image.
func InstanceID(c *Context) string {
	return "bakery-" + c.IDs.WithSources(c.Sources).Hex("cloud-init instance-id", 16)
}

func metaData(c *Context) string {
	md := map[string]string{"instance-id": InstanceID(c)}
	for k, v := range c.FirstBoot.MetaData {
		md[k] = v
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(md)) {
		v, _ := yaml.Marshal(md[k])
		fmt.Fprintf(&b, "%s: %s", k, v)
	}
	return b.String()
}

// writeCloudInitSeed writes user-data and meta-data where the base's
// cloud-init finds them: on a Raspberry Pi OS boot partition (with
// ds=nocloud on cmdline.txt and the partition's label as NoCloud's
// fs_label, so it is found whatever the base's own configuration says),
// else in /var/lib/cloud/seed/nocloud.
func writeCloudInitSeed(c *Context) error {
	ud, err := UserData(c)
	if err != nil {
		return err
	}
	md := metaData(c)
	if c.Flavour.Seed == SeedBoot && c.Boot != nil {
		for _, f := range [][2]string{{"/meta-data", md}, {"/user-data", ud}} {
			if err := c.WriteFile(c.Boot, f[0], f[1], 0o644, 0, 0); err != nil {
				return err
			}
		}
		label := c.Boot.Label()
		if label == "" {
			return fmt.Errorf("the boot partition has no filesystem label, so cloud-init's NoCloud datasource cannot find the seed on it")
		}
		cfg := fmt.Sprintf("# Written by bakery build: the NoCloud seed is on the boot partition.\ndatasource:\n  NoCloud:\n    fs_label: %s\n", label)
		if err := c.WriteFile(c.Root, "/etc/cloud/cloud.cfg.d/90-bakery-nocloud.cfg", cfg, 0o644, 0, 0); err != nil {
			return err
		}
		return c.EditCmdline(func(cl *Cmdline) {
			if v, ok := cl.Get("ds"); !ok || !strings.HasPrefix(strings.ToLower(v), "nocloud") {
				cl.Set("ds", "nocloud")
			}
		})
	}
	// The seed may hold secrets from user_data: root only.
	if err := c.WriteFile(c.Root, SeedRootDir+"/user-data", ud, 0o600, 0, 0); err != nil {
		return err
	}
	return c.WriteFile(c.Root, SeedRootDir+"/meta-data", md, 0o600, 0, 0)
}
