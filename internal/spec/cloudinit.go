package spec

import (
	"strings"

	"go.yaml.in/yaml/v3"
)

// CloudInit adds user-data that bakery merges into the user-data it
// generates (for users, packages, first-boot work):
//
//	cloud_init {
//	  user_data = yamlencode({ runcmd = [["systemctl", "start", "consul"]] })
//	}
type CloudInit struct {
	Block
	// UserData is #cloud-config YAML (the header line is optional); it
	// must be a mapping.
	UserData string `hcl:"user_data" json:"user_data,omitempty"`
}

func (ci *CloudInit) check(c *checks) {
	if !ci.Known("user_data") {
		return
	}
	ud := strings.TrimSpace(ci.UserData)
	if ud == "" {
		return
	}
	first, _, _ := strings.Cut(ud, "\n")
	if strings.HasPrefix(first, "#!") || strings.HasPrefix(first, "#include") || strings.HasPrefix(first, "Content-Type:") {
		c.errorf(&ci.Block, "user_data", "user_data must be #cloud-config YAML to be merged (found %q); run scripts with runcmd", first)
		return
	}
	var doc any
	if err := yaml.Unmarshal([]byte(ci.UserData), &doc); err != nil {
		c.errorf(&ci.Block, "user_data", "user_data is not valid YAML: %v", err)
		return
	}
	if _, ok := doc.(map[string]any); !ok && doc != nil {
		c.errorf(&ci.Block, "user_data", "user_data must be a YAML mapping (keys such as runcmd, write_files)")
	}
}
