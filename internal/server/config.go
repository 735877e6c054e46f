package server

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/bakeryhq/bakery/internal/units"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// FileConfig is `bakery serve --config FILE`: the same settings as the
// flags, in HCL. Flags given on the command line win over the file.
//
//	data      = "/var/lib/bakery"
//	listen    = ":8080"
//	interface = "eth0"
//	advertise = "192.168.1.10"
//	dhcp_reply_delay = "1s"
//	cache_size = "512MiB"
//	nfs_listen = ":2049"
//	power_watchdog = "60s"
type FileConfig struct {
	DataDir        *string `hcl:"data,optional"`
	Listen         *string `hcl:"listen,optional"`
	Interface      *string `hcl:"interface,optional"`
	Advertise      *string `hcl:"advertise,optional"`
	TLSCert        *string `hcl:"tls_cert,optional"`
	TLSKey         *string `hcl:"tls_key,optional"`
	DHCP           *bool   `hcl:"dhcp,optional"`
	DHCPListen     *string `hcl:"dhcp_listen,optional"`
	DHCPReplyDelay *string `hcl:"dhcp_reply_delay,optional"`
	TFTP           *bool   `hcl:"tftp,optional"`
	TFTPListen     *string `hcl:"tftp_listen,optional"`
	CacheSize      *string `hcl:"cache_size,optional"`
	DefaultImage   *string `hcl:"default_image,optional"`
	MetricsPublic  *bool   `hcl:"metrics_public,optional"`
	MaxUpload      *string `hcl:"max_upload,optional"`
	NFS            *bool   `hcl:"nfs,optional"`
	NFSListen      *string `hcl:"nfs_listen,optional"`
	PowerPlugins   *string `hcl:"power_plugins,optional"`
	PowerWatchdog  *string `hcl:"power_watchdog,optional"`
}

// LoadConfigFile parses an HCL settings file. Errors name file:line.
func LoadConfigFile(path string) (FileConfig, error) {
	var fc FileConfig
	f, diags := hclparse.NewParser().ParseHCLFile(path)
	if diags.HasErrors() {
		return fc, fmt.Errorf("%s", diags.Error())
	}
	if diags := gohcl.DecodeBody(f.Body, nil, &fc); diags.HasErrors() {
		return fc, fmt.Errorf("%s", hcl.Diagnostics(diags).Error())
	}
	return fc, nil
}

// Apply copies the file's settings into cfg, except those in skip (flags
// the user gave explicitly).
func (fc FileConfig) Apply(cfg *Config, skip func(flag string) bool) error {
	str := func(flag string, v *string, dst *string) {
		if v != nil && !skip(flag) {
			*dst = *v
		}
	}
	str("data", fc.DataDir, &cfg.DataDir)
	str("listen", fc.Listen, &cfg.Listen)
	str("interface", fc.Interface, &cfg.Interface)
	str("tls-cert", fc.TLSCert, &cfg.TLSCert)
	str("tls-key", fc.TLSKey, &cfg.TLSKey)
	str("dhcp-listen", fc.DHCPListen, &cfg.DHCPAddr)
	str("tftp-listen", fc.TFTPListen, &cfg.TFTPAddr)
	str("default-image", fc.DefaultImage, &cfg.DefaultImage)
	str("nfs-listen", fc.NFSListen, &cfg.NFSListen)
	str("power-plugins", fc.PowerPlugins, &cfg.PowerPlugins)
	if fc.NFS != nil && !skip("no-nfs") {
		cfg.DisableNFS = !*fc.NFS
	}
	if fc.PowerWatchdog != nil && !skip("power-watchdog") {
		d, err := time.ParseDuration(*fc.PowerWatchdog)
		if err != nil || d < 0 {
			return fmt.Errorf("power_watchdog %q: want a duration such as \"60s\" (0 for off)", *fc.PowerWatchdog)
		}
		cfg.PowerWatchdog = d
	}
	if fc.Advertise != nil && !skip("advertise") {
		ip, err := netip.ParseAddr(*fc.Advertise)
		if err != nil || !ip.Is4() {
			return fmt.Errorf("advertise %q: want an IPv4 address", *fc.Advertise)
		}
		cfg.Advertise = ip
	}
	if fc.DHCP != nil && !skip("no-dhcp") {
		cfg.DisableDHCP = !*fc.DHCP
	}
	if fc.TFTP != nil && !skip("no-tftp") {
		cfg.DisableTFTP = !*fc.TFTP
	}
	if fc.MetricsPublic != nil && !skip("metrics-public") {
		cfg.MetricsPublic = *fc.MetricsPublic
	}
	if fc.DHCPReplyDelay != nil && !skip("dhcp-reply-delay") {
		d, err := time.ParseDuration(*fc.DHCPReplyDelay)
		if err != nil {
			return fmt.Errorf("dhcp_reply_delay %q: %w", *fc.DHCPReplyDelay, err)
		}
		cfg.DHCPReplyDelay = d
		if d == 0 {
			cfg.DHCPReplyDelay = -1
		}
	}
	for _, b := range []struct {
		flag string
		v    *string
		dst  *int64
	}{{"cache-size", fc.CacheSize, &cfg.CacheBytes}, {"max-upload", fc.MaxUpload, &cfg.MaxUploadBytes}} {
		if b.v != nil && !skip(b.flag) {
			n, err := units.ParseBytes(*b.v)
			if err != nil {
				return fmt.Errorf("%s %q: %w", b.flag, *b.v, err)
			}
			*b.dst = n
		}
	}
	return nil
}
