package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "serve.hcl")
	os.WriteFile(p, []byte(`
data             = "/srv/bakery"
listen           = ":9090"
interface        = "eth1"
advertise        = "192.168.7.2"
dhcp_reply_delay = "250ms"
cache_size       = "64MiB"
metrics_public   = true
tftp             = false
`), 0o644)
	fc, err := LoadConfigFile(p)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Listen: ":8080"}
	// --listen given on the command line wins over the file.
	if err := fc.Apply(&cfg, func(flag string) bool { return flag == "listen" }); err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/srv/bakery" || cfg.Listen != ":8080" || cfg.Interface != "eth1" || cfg.Advertise.String() != "192.168.7.2" ||
		cfg.DHCPReplyDelay != 250*time.Millisecond || cfg.CacheBytes != 64<<20 || !cfg.MetricsPublic || !cfg.DisableTFTP {
		t.Fatalf("%+v", cfg)
	}
	os.WriteFile(p, []byte("listen = 8080\nbogus = 1\n"), 0o644)
	if _, err := LoadConfigFile(p); err == nil || !strings.Contains(err.Error(), "serve.hcl:") {
		t.Fatalf("bad file: %v", err)
	}
	os.WriteFile(p, []byte(`advertise = "::1"`), 0o644)
	fc, _ = LoadConfigFile(p)
	if err := fc.Apply(&cfg, func(string) bool { return false }); err == nil {
		t.Fatal("IPv6 advertise accepted")
	}
}
