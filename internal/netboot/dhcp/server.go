// Package dhcp is bakery's proxy DHCP server. It runs beside the network's
// own DHCP server and never hands out addresses: it only tells netboot
// clients (Raspberry Pis, PXE firmware, iPXE) where to boot from, and only
// when the control plane says the machine is meant to netboot.
package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// Decision is the control plane's verdict on one request.
type Decision struct {
	Answer    bool
	Reason    string // why it was ignored, or what was answered
	MachineID string
	// BootFile is the TFTP file (PXE) or HTTP URL (iPXE) to hand out.
	BootFile string
}

// Policy decides whom to answer. It is called for every DISCOVER and
// REQUEST and records what it decided (events, discovered machines).
type Policy interface {
	Decide(ctx context.Context, c Client) Decision
}

// Config configures a Server.
type Config struct {
	// Interface the server binds to (SO_BINDTODEVICE); ignored when Conn is set.
	Interface string
	// Addr is the listen address when Conn is nil; default ":67".
	Addr string
	// Conn replaces the socket, for tests and socket activation.
	Conn net.PacketConn
	// ServerIP is the address we advertise (siaddr, options 54 and 66).
	ServerIP net.IP
	// ReplyDelay delays each answer, like dnsmasq's dhcp-reply-delay: the Pi
	// bootloader takes a proxy offer more reliably when it comes after the
	// main server's.
	ReplyDelay time.Duration
	// ReplyTo is where answers go; default 255.255.255.255:68 (the Pi does
	// not use port 4011 and has no address yet, so replies are broadcast).
	ReplyTo *net.UDPAddr
	Policy  Policy
	Logger  *slog.Logger
	// OnSent, if set, is told the outcome of every answer we tried to send.
	OnSent func(c Client, d Decision, err error)
}

// Server is a running proxy DHCP server.
type Server struct {
	cfg     Config
	conn    net.PacketConn
	log     *slog.Logger
	handler sync.WaitGroup
}

// New opens the socket (unless one is given) and returns a server ready to Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Policy == nil {
		return nil, errors.New("dhcp: no policy")
	}
	if cfg.ServerIP.To4() == nil {
		return nil, fmt.Errorf("dhcp: advertise address %v is not IPv4", cfg.ServerIP)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReplyTo == nil {
		cfg.ReplyTo = &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
	}
	s := &Server{cfg: cfg, conn: cfg.Conn, log: cfg.Logger.With("component", "dhcp")}
	if s.conn == nil {
		addr := cfg.Addr
		if addr == "" {
			addr = ":67"
		}
		ua, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return nil, fmt.Errorf("dhcp listen address %q: %w", addr, err)
		}
		conn, err := server4.NewIPv4UDPConn(cfg.Interface, ua)
		if err != nil {
			return nil, fmt.Errorf("dhcp: listen on %s (interface %q): %w (binding port 67 needs root or CAP_NET_BIND_SERVICE)", addr, cfg.Interface, err)
		}
		s.conn = conn
	}
	return s, nil
}

// Addr is the local address of the socket.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Serve answers requests until ctx is cancelled, then closes the socket and
// waits for answers still being delayed to give up.
func (s *Server) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	defer s.handler.Wait()
	buf := make([]byte, 4096)
	for {
		n, _, err := s.conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dhcp: read: %w", err)
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.log.Debug("ignoring malformed packet", "error", err)
			continue
		}
		// Each answer waits out the reply delay on its own goroutine, so a
		// burst of clients is not served one delay after another.
		s.handler.Add(1)
		go func() {
			defer s.handler.Done()
			s.handle(ctx, s.conn, m)
		}()
	}
}

func (s *Server) handle(ctx context.Context, conn net.PacketConn, m *dhcpv4.DHCPv4) {
	if m.OpCode != dhcpv4.OpcodeBootRequest {
		return
	}
	c := Classify(m)
	switch c.MessageType {
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest:
	default:
		s.log.Debug("ignoring message type", "type", c.MessageType.String(), "mac", c.MAC)
		return
	}
	d := s.cfg.Policy.Decide(ctx, c)
	if !d.Answer {
		s.log.Debug("not answering", "mac", c.MAC, "kind", c.Kind, "reason", d.Reason)
		return
	}
	reply, err := BuildReply(m, c, Answer{ServerIP: s.cfg.ServerIP, BootFile: d.BootFile})
	if err != nil {
		s.sent(c, d, err)
		return
	}
	if s.cfg.ReplyDelay > 0 {
		t := time.NewTimer(s.cfg.ReplyDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	_, err = conn.WriteTo(reply.ToBytes(), s.cfg.ReplyTo)
	s.sent(c, d, err)
}

func (s *Server) sent(c Client, d Decision, err error) {
	if err != nil {
		s.log.Warn("sending proxy reply failed", "mac", c.MAC, "machine", d.MachineID, "error", err)
	} else {
		s.log.Info("proxy reply sent", "mac", c.MAC, "machine", d.MachineID, "kind", c.Kind, "type", c.MessageType.String())
	}
	if s.cfg.OnSent != nil {
		s.cfg.OnSent(c, d, err)
	}
}
