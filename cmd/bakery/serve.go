package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/bakeryhq/bakery/internal/server"
	"github.com/bakeryhq/bakery/internal/units"
	"github.com/spf13/cobra"
)

func newServeCommand() *cobra.Command {
	var (
		cfg                 server.Config
		cred                serveCredentialFlags
		configFile          string
		advertise           string
		replyDelay          time.Duration
		cacheSize           string
		maxUpload           string
		noDHCP, noTFTP      bool
		metricsPublic       bool
		tftpAddr, dhcpAddr  string
		tlsCert, tlsKey     string
		dataDir, listenAddr string
		iface, defaultImage string
		nfsListen           string
		noNFS               bool
		powerPlugins        string
		powerWatchdog       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the netboot server: proxy DHCP, TFTP, HTTP API",
		Long: `Run the netboot control plane: a proxy DHCP server beside your network's own
DHCP server (it never hands out addresses), a TFTP server that serves each
Raspberry Pi its files by serial straight from the stored images, and an
HTTP API (/api/v1) with tokens, events and Prometheus metrics.

On first start it creates an admin token in DATA/admin.token (mode 0600).
Proxy DHCP runs only with --interface. Ports 67 and 69 need root or
CAP_NET_BIND_SERVICE.

A built-in NFSv3 server (--nfs-listen, MOUNT and NFS on one port) gives
every netbooted machine its own root filesystem: the image's root,
read-only and shared, plus a per-machine copy-on-write layer in
DATA/machines/<id>. Each machine's export answers only that machine's
address. See docs/netboot.md and docs/power.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg = server.Config{
				DataDir: dataDir, Listen: listenAddr, Interface: iface, TLSCert: tlsCert, TLSKey: tlsKey,
				DHCPAddr: dhcpAddr, TFTPAddr: tftpAddr, DisableDHCP: noDHCP, DisableTFTP: noTFTP,
				MetricsPublic: metricsPublic, DefaultImage: defaultImage, DHCPReplyDelay: replyDelay,
				NFSListen: nfsListen, DisableNFS: noNFS, PowerPlugins: powerPlugins, PowerWatchdog: powerWatchdog,
				Logger: slog.Default(), Version: version,
			}
			if replyDelay == 0 {
				cfg.DHCPReplyDelay = -1
			}
			if advertise != "" {
				ip, err := netip.ParseAddr(advertise)
				if err != nil || !ip.Is4() {
					return fmt.Errorf("--advertise %q: want an IPv4 address", advertise)
				}
				cfg.Advertise = ip
			}
			for _, b := range []struct {
				flag, v string
				dst     *int64
			}{{"cache-size", cacheSize, &cfg.CacheBytes}, {"max-upload", maxUpload, &cfg.MaxUploadBytes}} {
				n, err := units.ParseBytes(b.v)
				if err != nil {
					return fmt.Errorf("--%s %q: %w", b.flag, b.v, err)
				}
				*b.dst = n
			}
			if configFile != "" {
				fc, err := server.LoadConfigFile(configFile)
				if err != nil {
					return err
				}
				if err := fc.Apply(&cfg, cmd.Flags().Changed); err != nil {
					return fmt.Errorf("%s: %w", configFile, err)
				}
			}
			iss, err := cred.issuer()
			if err != nil {
				return err
			}
			if iss != nil {
				cfg.Credentials = iss
			}
			srv, err := server.New(cfg)
			if err != nil {
				return err
			}
			return srv.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	cred.register(f)
	f.StringVar(&dataDir, "data", server.DefaultDataDir, "data directory (state, images, admin token)")
	f.StringVar(&listenAddr, "listen", server.DefaultListen, "HTTP API address")
	f.StringVar(&iface, "interface", "", "network interface for proxy DHCP (DHCP is off without it)")
	f.StringVar(&advertise, "advertise", "", "our IPv4 address as clients see it (default: the interface's)")
	f.StringVar(&configFile, "config", "", "HCL file with the same settings (flags win)")
	f.StringVar(&tlsCert, "tls-cert", "", "TLS certificate for the HTTP API (with --tls-key)")
	f.StringVar(&tlsKey, "tls-key", "", "TLS private key")
	f.DurationVar(&replyDelay, "dhcp-reply-delay", server.DefaultReplyDelay, "delay before each proxy DHCP answer (0 for none)")
	f.StringVar(&dhcpAddr, "dhcp-listen", server.DefaultDHCPAddr, "proxy DHCP address")
	f.StringVar(&tftpAddr, "tftp-listen", server.DefaultTFTPAddr, "TFTP address")
	f.BoolVar(&noDHCP, "no-dhcp", false, "do not run proxy DHCP")
	f.BoolVar(&noTFTP, "no-tftp", false, "do not run TFTP")
	f.StringVar(&cacheSize, "cache-size", "256MiB", "memory for hot boot files")
	f.StringVar(&maxUpload, "max-upload", "64GiB", "largest image upload accepted")
	f.StringVar(&defaultImage, "default-image", "", "image whose bootcode.bin a Pi 3 gets before we know who it is")
	f.BoolVar(&metricsPublic, "metrics-public", false, "serve /metrics without a token")
	f.StringVar(&nfsListen, "nfs-listen", server.DefaultNFSListen, "NFS address for machines' roots and extra disks (MOUNT and NFS on one port)")
	f.BoolVar(&noNFS, "no-nfs", false, "do not run the NFS server (machines boot with their image's own cmdline.txt)")
	f.StringVar(&powerPlugins, "power-plugins", "", "directory of exec power plugins (default DATA/power-plugins)")
	f.DurationVar(&powerWatchdog, "power-watchdog", 0, "power-cycle a netboot machine with no TFTP request this long after power on (0: off)")
	return cmd
}
