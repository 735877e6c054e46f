// Package nfs is bakery serve's built-in NFSv3 server for netbooted
// machines' root filesystems (internal/netboot/overlay) and extra disks.
//
// It runs github.com/willscott/go-nfs with MOUNT and NFS on one TCP port,
// so clients need no portmapper: they mount with
// vers=3,tcp,port=P,mountport=P,nolock. No kernel NFS server and no
// privileges beyond the port are needed.
//
// # Isolation
//
// Every accepted connection is served by its own go-nfs instance whose
// handler is bound to the machine the client's address belongs to
// (Backend.MachineFor: the record's fixed ip, else the address of the
// machine's last DHCP request the server answered; see docs/netboot.md). Such a connection can mount only that machine's
// exports, /machines/<id> and /machines/<id>/disks/<name>; handles of any
// other machine do not resolve on it (they carry the layer's generation and
// are looked up in the bound machine's layer only), and the binding is
// checked again at least once a second. Everything refused is an event.
//
// # Handles
//
// A handle is the layer generation and the object id (the image's inode
// number, or an id from the layer), so it survives server restarts and
// renames; a reset layer has a new generation, so the old layer's handles
// are stale, as they should be.
//
// # What bakery does instead of go-nfs
//
// go-nfs v0.0.4 serves most procedures, but a few are wrong for a root
// filesystem, and the connection wrapper (rpcConn) answers them itself:
// LINK (go-nfs decodes the arguments with the wrong layout), MKNOD (it never
// creates character devices), SETATTR (it drops setuid, setgid and sticky
// bits), ACCESS (it grants everything), REMOVE, RMDIR and RENAME (exact
// error codes, e.g. NOTEMPTY), FSINFO and PATHCONF (real limits: go-nfs
// advertises 1 GiB transfers and one link per file), the MOUNT EXPORT list, version mismatches and
// unknown programs. It also reads each call's AUTH_SYS credential, so that
// files are created with the caller's uid and gid and permissions are
// checked as the kernel NFS server checks them, and it reassembles
// multi-fragment records.
package nfs

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/bakeryhq/bakery/internal/netboot"
	"github.com/bakeryhq/bakery/internal/netboot/overlay"
	gonfs "github.com/willscott/go-nfs"
)

// Backend is what the NFS server needs from the control plane.
type Backend interface {
	// MachineFor returns the machine whose address ip is.
	MachineFor(ip netip.Addr) (string, bool)
	// Root returns a machine's root filesystem (an error wrapping
	// overlay.ErrNoLayer if it has none).
	Root(machine string) (*overlay.Root, error)
	// DiskPath returns the image file of a machine's extra disk, or an
	// error wrapping fs.ErrNotExist.
	DiskPath(machine, disk string) (string, error)
	// Disks lists a machine's extra disks.
	Disks(machine string) []string
	// Event records an event for a machine ("" for the server).
	Event(machine, typ, msg string, fields map[string]string)
}

// Config configures a Server.
type Config struct {
	Listener net.Listener
	Backend  Backend
	Logger   *slog.Logger
	// MaxConns bounds open connections (default 512), MaxConnsPerIP those
	// from one address (default 16). Each connection costs three
	// goroutines and handles one request at a time.
	MaxConns      int
	MaxConnsPerIP int
	// IdleTimeout closes a connection silent that long (default 15 min;
	// Linux clients reconnect transparently).
	IdleTimeout time.Duration
	// RecheckEvery is how often a connection's binding to its machine is
	// verified again (default 1 s).
	RecheckEvery time.Duration
}

// Server is the NFS server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	verifier [8]byte

	mu      sync.Mutex
	conns   map[*session]struct{}
	perIP   map[netip.Addr]int
	refused map[string]time.Time // rate limit of refusal events
	wg      sync.WaitGroup
	stats   Stats
}

// Stats are counters for metrics.
type Stats struct {
	Active   int
	Accepted uint64
	Refused  uint64
}

var setLoggerOnce sync.Once

// New returns a server; Serve starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Listener == nil || cfg.Backend == nil {
		return nil, errors.New("nfs: a listener and a backend are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 512
	}
	if cfg.MaxConnsPerIP <= 0 {
		cfg.MaxConnsPerIP = 16
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 15 * time.Minute
	}
	if cfg.RecheckEvery <= 0 {
		cfg.RecheckEvery = time.Second
	}
	s := &Server{cfg: cfg, log: cfg.Logger, conns: map[*session]struct{}{}, perIP: map[netip.Addr]int{}, refused: map[string]time.Time{}}
	if _, err := rand.Read(s.verifier[:]); err != nil {
		return nil, err
	}
	// go-nfs logs through a package-level logger; route it to slog at
	// debug level (its "errors" are mostly clients looking up missing names).
	setLoggerOnce.Do(func() { gonfs.SetLogger(&goNFSLogger{level: gonfs.InfoLevel}) })
	return s, nil
}

// Addr is the listening address.
func (s *Server) Addr() net.Addr { return s.cfg.Listener.Addr() }

// Port is the listening TCP port.
func (s *Server) Port() int {
	if a, ok := s.cfg.Listener.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// Stats returns counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Active = len(s.conns)
	return st
}

// Active returns how many connections serve a machine.
func (s *Server) Active(machine string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if c.bound == machine {
			n++
		}
	}
	return n
}

// Disconnect closes a machine's connections (its layer was reset or it was
// deleted); its client reconnects and finds its handles stale.
func (s *Server) Disconnect(machine string) {
	s.mu.Lock()
	var victims []*session
	for c := range s.conns {
		if c.bound == machine {
			victims = append(victims, c)
		}
	}
	s.mu.Unlock()
	for _, c := range victims {
		c.conn.Close()
	}
}

// Serve accepts connections until ctx is cancelled, then closes them all.
func (s *Server) Serve(ctx context.Context) error {
	ln := s.cfg.Listener
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				s.closeAll()
				s.wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			s.closeAll()
			s.wg.Wait()
			return err
		}
		delay = 0
		s.accept(ctx, conn)
	}
}

func (s *Server) closeAll() {
	s.mu.Lock()
	all := make([]*session, 0, len(s.conns))
	for c := range s.conns {
		all = append(all, c)
	}
	s.mu.Unlock()
	for _, c := range all {
		c.conn.Close()
	}
}

func remoteAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

func (s *Server) accept(ctx context.Context, conn net.Conn) {
	ip := remoteAddr(conn)
	s.mu.Lock()
	if len(s.conns) >= s.cfg.MaxConns || s.perIP[ip] >= s.cfg.MaxConnsPerIP {
		s.stats.Refused++
		s.mu.Unlock()
		s.refuse("", ip, "too many connections", nil)
		conn.Close()
		return
	}
	sess := &session{srv: s, remote: ip}
	sess.bound, _ = s.cfg.Backend.MachineFor(ip)
	sess.allowed = sess.bound != ""
	sess.checked = time.Now()
	sess.root = &rootFS{s: sess}
	rc := newRPCConn(conn, s.cfg.IdleTimeout, sess.intercept)
	if !sess.allowed {
		rc.maxRecord = maxRecordUnbound
	}
	sess.conn = rc
	s.conns[sess] = struct{}{}
	s.perIP[ip]++
	s.stats.Accepted++
	s.mu.Unlock()
	if !sess.allowed {
		s.refuse("", ip, "no machine has this address", nil)
	} else {
		s.log.Debug("nfs connection", "remote", conn.RemoteAddr().String(), "machine", sess.bound)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		srv := &gonfs.Server{Handler: sess, ID: s.verifier, Context: ctx}
		srv.Serve(&oneConnListener{c: rc})
		rc.Close()
		s.mu.Lock()
		delete(s.conns, sess)
		if s.perIP[ip]--; s.perIP[ip] <= 0 {
			delete(s.perIP, ip)
		}
		s.mu.Unlock()
	}()
}

// refuse records a refusal as an event, at most once a minute per machine,
// address and reason.
func (s *Server) refuse(machine string, ip netip.Addr, reason string, fields map[string]string) {
	key := machine + "|" + ip.String() + "|" + reason
	now := time.Now()
	s.mu.Lock()
	last, seen := s.refused[key]
	if !seen || now.Sub(last) >= time.Minute {
		s.refused[key] = now
	}
	if len(s.refused) > 4096 {
		for k, t := range s.refused {
			if now.Sub(t) >= time.Minute {
				delete(s.refused, k)
			}
		}
	}
	s.mu.Unlock()
	if seen && now.Sub(last) < time.Minute {
		return
	}
	if fields == nil {
		fields = map[string]string{}
	}
	fields["remote"] = ip.String()
	fields["reason"] = reason
	s.log.Info("nfs refused", "machine", machine, "remote", ip.String(), "reason", reason)
	s.cfg.Backend.Event(machine, "nfs.refused", fmt.Sprintf("NFS request from %s refused: %s", ip, reason), fields)
}

// ExportPath is the path a machine's root is exported at.
func ExportPath(machine string) string {
	return "/machines/" + strings.ReplaceAll(machine, ":", "-")
}

// DiskExportPath is the path a machine's extra disk is exported at.
func DiskExportPath(machine, disk string) string {
	return ExportPath(machine) + "/disks/" + disk
}

// parseExport splits a MOUNT path into a machine and an optional disk.
func parseExport(p string) (machine, disk string, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimRight(p, "/"), "/machines/")
	if !found {
		return "", "", false
	}
	idPart, diskPart, hasDisk := strings.Cut(rest, "/")
	id, _, err := netboot.ParseMachineID(idPart)
	if err != nil {
		return "", "", false
	}
	if !hasDisk {
		return id, "", true
	}
	name, found := strings.CutPrefix(diskPart, "disks/")
	if !found || name == "" || strings.Contains(name, "/") {
		return "", "", false
	}
	return id, name, true
}

// goNFSLogger sends go-nfs's log lines to slog at debug level.
type goNFSLogger struct{ level gonfs.LogLevel }

func (l *goNFSLogger) SetLevel(level gonfs.LogLevel) { l.level = level }
func (l *goNFSLogger) GetLevel() gonfs.LogLevel      { return l.level }
func (l *goNFSLogger) ParseLevel(string) (gonfs.LogLevel, error) {
	return gonfs.InfoLevel, nil
}
func (l *goNFSLogger) log(args ...any) { slog.Debug("go-nfs: " + fmt.Sprint(args...)) }
func (l *goNFSLogger) logf(format string, args ...any) {
	slog.Debug("go-nfs: " + fmt.Sprintf(format, args...))
}
func (l *goNFSLogger) Panic(args ...any)                 { l.log(args...) }
func (l *goNFSLogger) Fatal(args ...any)                 { l.log(args...) }
func (l *goNFSLogger) Error(args ...any)                 { l.log(args...) }
func (l *goNFSLogger) Warn(args ...any)                  { l.log(args...) }
func (l *goNFSLogger) Info(args ...any)                  {}
func (l *goNFSLogger) Debug(args ...any)                 {}
func (l *goNFSLogger) Trace(args ...any)                 {}
func (l *goNFSLogger) Print(args ...any)                 {}
func (l *goNFSLogger) Panicf(format string, args ...any) { l.logf(format, args...) }
func (l *goNFSLogger) Fatalf(format string, args ...any) { l.logf(format, args...) }
func (l *goNFSLogger) Errorf(format string, args ...any) { l.logf(format, args...) }
func (l *goNFSLogger) Warnf(format string, args ...any)  { l.logf(format, args...) }
func (l *goNFSLogger) Infof(string, ...any)              {}
func (l *goNFSLogger) Debugf(string, ...any)             {}
func (l *goNFSLogger) Tracef(string, ...any)             {}
func (l *goNFSLogger) Printf(string, ...any)             {}

// Close stops accepting and closes every connection (for a server whose
// Serve never ran, or to stop it without its context).
func (s *Server) Close() {
	s.cfg.Listener.Close()
	s.closeAll()
}
