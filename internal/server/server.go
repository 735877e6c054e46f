// Package server is bakery serve: the netboot control plane. It wires the
// state store, the image library, the proxy DHCP and TFTP servers and the
// HTTP API (with auth, metrics and the iPXE boot endpoints) together.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bakeryhq/bakery/internal/netboot"
	"github.com/bakeryhq/bakery/internal/netboot/bootfiles"
	"github.com/bakeryhq/bakery/internal/netboot/dhcp"
	"github.com/bakeryhq/bakery/internal/netboot/nfs"
	"github.com/bakeryhq/bakery/internal/netboot/overlay"
	"github.com/bakeryhq/bakery/internal/netboot/tftp"
	"github.com/bakeryhq/bakery/internal/power"
	"github.com/bakeryhq/bakery/internal/store"
)

// Defaults documented in docs/netboot.md.
const (
	DefaultDataDir    = "./bakery-data"
	DefaultListen     = ":8080"
	DefaultTFTPAddr   = ":69"
	DefaultDHCPAddr   = ":67"
	DefaultReplyDelay = time.Second
	DefaultCacheBytes = 256 << 20
	// DefaultNFSListen is the NFS address: MOUNT and NFS on one port, the
	// standard NFS port (not privileged).
	DefaultNFSListen = ":2049"
)

// Config configures a Server. Zero values mean the defaults above.
type Config struct {
	DataDir string
	// Listen is the HTTP API address; Listener replaces it (tests).
	Listen   string
	Listener net.Listener
	TLSCert  string
	TLSKey   string

	// Interface is where proxy DHCP listens; DHCP runs only when it is set
	// (or DHCPConn is given).
	Interface string
	// Advertise is our address as clients reach it (DHCP siaddr/option 66,
	// iPXE URLs); default the interface's first IPv4 address.
	Advertise      netip.Addr
	DHCPAddr       string
	DHCPConn       net.PacketConn
	DHCPReplyDelay time.Duration // default 1s; negative means none
	DHCPReplyTo    *net.UDPAddr  // tests: unicast instead of broadcast
	DisableDHCP    bool

	TFTPAddr    string
	TFTPConn    net.PacketConn
	TFTPTimeout time.Duration
	DisableTFTP bool

	// CacheBytes bounds the in-memory boot file cache; default 256 MiB.
	CacheBytes int64
	// DefaultImage serves un-prefixed bootcode.bin (Pi 3) to clients we
	// cannot tie to a machine by address; "" means none.
	DefaultImage string
	// MetricsPublic serves /metrics without a token.
	MetricsPublic bool
	// MaxUploadBytes bounds image uploads; default 64 GiB.
	MaxUploadBytes int64
	// EventRetention is the number of events kept per machine; default 1000.
	EventRetention int

	Logger  *slog.Logger
	Version string

	// Credentials issues netbooted nodes their wrapped Vault credential
	// (POST /boot/credential); nil disables it.
	Credentials CredentialIssuer

	// NFSListen is the address of the built-in NFS server (MOUNT and NFS
	// on one TCP port) that serves machines' root filesystems and extra
	// disks; NFSListener replaces it (tests). DisableNFS turns it off:
	// machines then boot with their image's own command line.
	NFSListen   string
	NFSListener net.Listener
	DisableNFS  bool
	// PowerPlugins is the directory of exec power plugins; default
	// DATA/power-plugins.
	PowerPlugins string
	// PowerWatchdog, when positive, power-cycles a machine in netboot mode
	// that made no TFTP request that long after it was powered on.
	PowerWatchdog time.Duration
	// PowerCycleWait is the default pause between off and on of a power
	// cycle (3 s when zero; negative means none).
	PowerCycleWait time.Duration

	// OpenImage and InspectImage default to the image engine; tests may
	// replace them. OpenRoot opens an image's root filesystem for NFS
	// roots (default: the engine, read-only).
	OpenImage    bootfiles.Opener
	InspectImage func(path string) (bootfiles.Info, error)
	OpenRoot     overlay.Opener
	// Neighbor resolves an IP to a MAC; default the kernel ARP table.
	Neighbor func(netip.Addr) (string, bool)
}

// Server is a configured bakery serve instance.
type Server struct {
	cfg     Config
	log     *slog.Logger
	store   store.Store
	lib     *bootfiles.Library
	metrics *metrics
	mux     *http.ServeMux
	routes  []route

	httpLn net.Listener
	dhcp   *dhcp.Server
	tftp   *tftp.Server

	baseURL string // http(s)://advertise:port for iPXE

	bases     *overlay.Bases
	machines  *overlay.Manager
	nfs       *nfs.Server
	powerOpts power.Options

	mu        sync.Mutex
	ipMachine map[netip.Addr]string // learned address -> machine id
	trusted   map[netip.Addr]string // address -> machine it is trusted for (trustedMachine's cache)
	trustGen  uint64                // bumped when the cache is dropped, so a lookup racing a change does not refill it
	persisted map[string]time.Time  // machine -> last time LastSeen was written
	tokenUsed map[string]time.Time  // token id -> last time LastUsed was written
	lastTFTP  map[string]time.Time  // machine -> last TFTP request (power watchdog)
	watch     map[string]*watchdog  // machines the power watchdog waits for

	closeOnce sync.Once
}

// New opens the data directory and the sockets. Nothing is served until Run.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.TFTPAddr == "" {
		cfg.TFTPAddr = DefaultTFTPAddr
	}
	if cfg.DHCPAddr == "" {
		cfg.DHCPAddr = DefaultDHCPAddr
	}
	if cfg.DHCPReplyDelay == 0 {
		cfg.DHCPReplyDelay = DefaultReplyDelay
	} else if cfg.DHCPReplyDelay < 0 {
		cfg.DHCPReplyDelay = 0
	}
	if cfg.CacheBytes == 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if cfg.NFSListen == "" {
		cfg.NFSListen = DefaultNFSListen
	}
	if cfg.PowerPlugins == "" {
		cfg.PowerPlugins = filepath.Join(cfg.DataDir, "power-plugins")
	}
	if cfg.MaxUploadBytes == 0 {
		cfg.MaxUploadBytes = 64 << 30
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.OpenImage == nil {
		cfg.OpenImage = bootfiles.EngineOpener
	}
	if cfg.InspectImage == nil {
		cfg.InspectImage = bootfiles.Inspect
	}
	if cfg.Neighbor == nil {
		cfg.Neighbor = netboot.LookupMAC
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger,
		ipMachine: map[netip.Addr]string{}, trusted: map[netip.Addr]string{}, persisted: map[string]time.Time{}, tokenUsed: map[string]time.Time{},
		lastTFTP: map[string]time.Time{}, watch: map[string]*watchdog{},
	}
	ok := false
	defer func() {
		if !ok {
			s.closeAll()
		}
	}()
	for _, d := range []string{s.imagesDir(), s.tmpDir(), s.ipxeDir(), cfg.PowerPlugins} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
	}
	st, err := store.Open(filepath.Join(cfg.DataDir, "state.db"), store.Options{EventRetention: cfg.EventRetention})
	if err != nil {
		return nil, err
	}
	s.store = st
	if err := s.bootstrapAdminToken(); err != nil {
		return nil, err
	}
	if err := s.collectGarbage(); err != nil {
		return nil, err
	}
	s.lib = bootfiles.NewLibrary(cfg.OpenImage, cfg.CacheBytes)
	s.bases = overlay.NewBases(cfg.OpenRoot)
	if s.machines, err = overlay.NewManager(filepath.Join(cfg.DataDir, "machines"), s.bases,
		func(key string) string { return filepath.Join(s.imagesDir(), key+".img") }, overlay.Options{}); err != nil {
		return nil, err
	}
	s.powerOpts = power.Options{PluginDir: cfg.PowerPlugins, CycleWait: cfg.PowerCycleWait}
	if cfg.PowerCycleWait < 0 {
		s.powerOpts.CycleWait = time.Nanosecond
	}
	s.metrics = newMetrics(s)

	if !s.cfg.Advertise.IsValid() {
		ip, err := defaultAdvertise(cfg.Interface)
		if err != nil {
			return nil, err
		}
		s.cfg.Advertise = ip
	}

	s.httpLn = cfg.Listener
	if s.httpLn == nil {
		if s.httpLn, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("listen %s: %w", cfg.Listen, err)
		}
	}
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	_, port, _ := net.SplitHostPort(s.httpLn.Addr().String())
	s.baseURL = scheme + "://" + net.JoinHostPort(s.cfg.Advertise.String(), port)

	if !cfg.DisableTFTP {
		s.tftp, err = tftp.New(tftp.Config{
			Addr: cfg.TFTPAddr, Conn: cfg.TFTPConn, Resolver: s, Logger: s.log, Timeout: cfg.TFTPTimeout,
			OnStart: s.metrics.tftpActive.Inc, OnDone: s.tftpDone,
		})
		if err != nil {
			return nil, err
		}
	}
	if !cfg.DisableDHCP && (cfg.Interface != "" || cfg.DHCPConn != nil) {
		s.dhcp, err = dhcp.New(dhcp.Config{
			Interface: cfg.Interface, Addr: cfg.DHCPAddr, Conn: cfg.DHCPConn,
			ServerIP: net.IP(s.cfg.Advertise.AsSlice()), ReplyDelay: cfg.DHCPReplyDelay, ReplyTo: cfg.DHCPReplyTo,
			Policy: s, Logger: s.log, OnSent: s.dhcpSent,
		})
		if err != nil {
			return nil, err
		}
	}
	if !cfg.DisableNFS {
		ln := cfg.NFSListener
		if ln == nil {
			if ln, err = net.Listen("tcp", cfg.NFSListen); err != nil {
				return nil, fmt.Errorf("NFS listen %s: %w (use --nfs-listen or --no-nfs)", cfg.NFSListen, err)
			}
		}
		if s.nfs, err = nfs.New(nfs.Config{Listener: ln, Backend: nfsBackend{s}, Logger: s.log}); err != nil {
			ln.Close()
			return nil, err
		}
	}
	s.routes = s.buildRoutes()
	s.mux = http.NewServeMux()
	for _, rt := range s.routes {
		s.mux.Handle(rt.pattern, s.wrap(rt))
	}
	ok = true
	return s, nil
}

// defaultAdvertise picks the interface's first IPv4 address, or, without an
// interface, the first non-loopback IPv4 address of the host.
func defaultAdvertise(iface string) (netip.Addr, error) {
	var ifaces []net.Interface
	if iface != "" {
		ifc, err := net.InterfaceByName(iface)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("--interface %s: %w", iface, err)
		}
		ifaces = []net.Interface{*ifc}
	} else {
		var err error
		if ifaces, err = net.Interfaces(); err != nil {
			return netip.Addr{}, err
		}
	}
	for _, ifc := range ifaces {
		if iface == "" && (ifc.Flags&net.FlagLoopback != 0 || ifc.Flags&net.FlagUp == 0) {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if pn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(pn.IP.To4()); ok && ip.IsValid() && !ip.IsLoopback() {
					return ip, nil
				}
			}
		}
	}
	if iface != "" {
		return netip.Addr{}, fmt.Errorf("--interface %s has no IPv4 address; give --advertise", iface)
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
}

func (s *Server) imagesDir() string { return filepath.Join(s.cfg.DataDir, "images", "sha256") }
func (s *Server) tmpDir() string    { return filepath.Join(s.cfg.DataDir, "tmp") }
func (s *Server) ipxeDir() string   { return filepath.Join(s.cfg.DataDir, "ipxe") }

// HTTPAddr is the API's listening address.
func (s *Server) HTTPAddr() net.Addr { return s.httpLn.Addr() }

// TFTPAddr is the TFTP listening address (nil when disabled).
func (s *Server) TFTPAddr() net.Addr {
	if s.tftp == nil {
		return nil
	}
	return s.tftp.Addr()
}

// NFSAddr is the NFS listening address (nil when disabled).
func (s *Server) NFSAddr() net.Addr {
	if s.nfs == nil {
		return nil
	}
	return s.nfs.Addr()
}

// DHCPAddr is the DHCP listening address (nil when disabled).
func (s *Server) DHCPAddr() net.Addr {
	if s.dhcp == nil {
		return nil
	}
	return s.dhcp.Addr()
}

// Handler is the HTTP handler (API, metrics, boot endpoints).
func (s *Server) Handler() http.Handler { return s.mux }

// Run serves until ctx is cancelled, then drains HTTP requests (up to 10 s),
// stops DHCP and TFTP and closes the store.
func (s *Server) Run(ctx context.Context) error {
	defer s.closeAll()
	hs := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	ln := s.httpLn
	if s.cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("TLS certificate: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	netCtx, stopNet := context.WithCancel(context.Background())
	defer stopNet()
	errc := make(chan error, 8)
	var wg sync.WaitGroup
	start := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	start("http", func() error {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if s.tftp != nil {
		start("tftp", func() error { return s.tftp.Serve(netCtx) })
	}
	if s.dhcp != nil {
		start("dhcp", func() error { return s.dhcp.Serve(netCtx) })
	}
	if s.nfs != nil {
		start("nfs", func() error { return s.nfs.Serve(netCtx) })
	}
	start("layers", func() error { s.flushLayers(netCtx); return nil })
	s.log.Info("bakery serve running", "api", s.baseURL, "listen", s.httpLn.Addr().String(),
		"tftp", addrString(s.TFTPAddr()), "dhcp", addrString(s.DHCPAddr()), "nfs", addrString(s.NFSAddr()),
		"interface", s.cfg.Interface, "data", s.cfg.DataDir)
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutCtx); err != nil {
		hs.Close()
	}
	stopNet()
	wg.Wait()
	return runErr
}

func addrString(a net.Addr) string {
	if a == nil {
		return "off"
	}
	return a.String()
}

func (s *Server) closeAll() {
	s.closeOnce.Do(func() {
		if s.httpLn != nil {
			s.httpLn.Close()
		}
		if s.lib != nil {
			s.lib.Close()
		}
		s.stopWatchdogs()
		if s.nfs != nil {
			s.nfs.Close()
		}
		if s.machines != nil {
			s.machines.Close()
		}
		if s.bases != nil {
			s.bases.Close()
		}
		if s.store != nil {
			s.store.Close()
		}
	})
}

// Close releases everything without serving (for a Server never Run).
func (s *Server) Close() error {
	if s.dhcp != nil {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s.dhcp.Serve(ctx)
	}
	if s.tftp != nil {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s.tftp.Serve(ctx)
	}
	s.closeAll()
	return nil
}

// collectGarbage removes what an interrupted upload or delete may have left:
// every temporary file, and image files no record points to.
func (s *Server) collectGarbage() error {
	tmp, _ := os.ReadDir(s.tmpDir())
	for _, e := range tmp {
		os.RemoveAll(filepath.Join(s.tmpDir(), e.Name()))
	}
	ims, err := s.store.Images()
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, im := range ims {
		keep[im.SHA256+".img"] = true
	}
	files, _ := os.ReadDir(s.imagesDir())
	for _, f := range files {
		if !keep[f.Name()] {
			s.log.Warn("removing image file without a record", "file", f.Name())
			os.Remove(filepath.Join(s.imagesDir(), f.Name()))
		}
	}
	return nil
}

// event records an event; failures are logged, never fatal to serving.
func (s *Server) event(machine, typ, msg string, fields map[string]string) {
	ev := store.Event{Time: time.Now().UTC(), Machine: machine, Type: typ, Message: msg, Fields: fields}
	if err := s.store.AppendEvents(ev); err != nil {
		s.log.Warn("recording event failed", "machine", machine, "type", typ, "error", err)
	}
	s.metrics.events.WithLabelValues(typ).Inc()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func lower(s string) string { return strings.ToLower(strings.TrimSpace(s)) }
