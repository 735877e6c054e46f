// Package tftp is bakery's read-only TFTP server: RFC 1350 with option
// negotiation (RFC 2347), blksize (RFC 2348), tsize and timeout (RFC 2349)
// and windowsize (RFC 7440). Files come from a Resolver, which maps a
// request to bytes; this package knows nothing about machines or images
// beyond the request-name rules in ParsePath.
//
// It is our own implementation rather than pin/tftp because pin/tftp v3.1.0
// has no RFC 7440 windowsize (its "anticipate" mode is a non-standard variant
// that needs an ACK per block and breaks RFC 7440 clients), always sends
// error code 1 (a refused path must get 2, access violation) and answers a
// client's abort after the OACK (the Pi's existence probe) with an error of
// its own and a failure report.
package tftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

// Resolver errors. Anything else is reported to the client as an undefined
// error without details.
var (
	ErrNotFound = errors.New("file not found")
	ErrAccess   = errors.New("access violation")
)

// Request is what a Resolver gets.
type Request struct {
	Filename string // as sent
	Path     Path   // parsed and checked
	Remote   netip.AddrPort
}

// Content is an open file to send.
type Content struct {
	R    io.ReaderAt
	Size int64
	// Machine names who the file belongs to, for the transfer report.
	Machine string
	// Close, if set, is called when the transfer ends.
	Close func()
}

// Resolver maps a request to the bytes to send.
type Resolver interface {
	Resolve(ctx context.Context, req Request) (Content, error)
}

// Outcomes of a transfer.
const (
	OutcomeServed   = "served"
	OutcomeProbe    = "probe" // client stopped after the OACK or the first block
	OutcomeNotFound = "not_found"
	OutcomeRefused  = "refused"
	OutcomeAborted  = "aborted" // client gave up midway
	OutcomeFailed   = "failed"  // timeouts or local errors
)

// Transfer reports one request from start to end.
type Transfer struct {
	Remote     netip.AddrPort
	Filename   string
	Path       Path
	Machine    string
	Outcome    string
	Err        error // why it was refused or failed
	Size       int64
	Bytes      int64 // payload bytes acknowledged by the client
	BlockSize  int
	WindowSize int
	Duration   time.Duration
}

// Config configures a Server.
type Config struct {
	// Addr is the listen address when Conn is nil; default ":69".
	Addr string
	// Conn replaces the listening socket, for tests.
	Conn     net.PacketConn
	Resolver Resolver
	Logger   *slog.Logger
	// Timeout is how long to wait for an ACK before retransmitting; default 1s.
	Timeout time.Duration
	// Retries is how many retransmissions before giving up; default 5.
	Retries int
	// MaxBlockSize caps blksize; it is also capped by the interface MTU.
	// Default 65464 (the RFC 2348 maximum).
	MaxBlockSize int
	// MaxWindowSize caps windowsize; default 64.
	MaxWindowSize int
	// MaxTransfers bounds concurrent transfers; default 1024.
	MaxTransfers int
	// OnStart and OnDone observe transfers (metrics, events). OnDone is
	// called exactly once for every request OnStart was called for.
	OnStart func()
	OnDone  func(Transfer)
}

// Server is a running TFTP server.
type Server struct {
	cfg    Config
	conn   net.PacketConn
	pconn  *ipv4.PacketConn
	log    *slog.Logger
	wg     sync.WaitGroup
	active atomic.Int64
	mtuMu  sync.Mutex
	mtus   map[int]int
}

// New opens the listening socket unless one is given.
func New(cfg Config) (*Server, error) {
	if cfg.Resolver == nil {
		return nil, errors.New("tftp: no resolver")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 5
	}
	if cfg.MaxBlockSize <= 0 || cfg.MaxBlockSize > MaxBlockSize {
		cfg.MaxBlockSize = MaxBlockSize
	}
	if cfg.MaxWindowSize <= 0 {
		cfg.MaxWindowSize = 64
	}
	if cfg.MaxTransfers <= 0 {
		cfg.MaxTransfers = 1024
	}
	s := &Server{cfg: cfg, conn: cfg.Conn, log: cfg.Logger.With("component", "tftp"), mtus: map[int]int{}}
	if s.conn == nil {
		addr := cfg.Addr
		if addr == "" {
			addr = ":69"
		}
		conn, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return nil, fmt.Errorf("tftp: listen on %s: %w (port 69 needs root or CAP_NET_BIND_SERVICE)", addr, err)
		}
		s.conn = conn
	}
	if uc, ok := s.conn.(*net.UDPConn); ok {
		p := ipv4.NewPacketConn(uc)
		// The destination address tells which local address to answer from
		// on a multi-homed server, the interface its MTU.
		if err := p.SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err == nil {
			s.pconn = p
		}
	}
	return s, nil
}

// Addr is the listening address.
func (s *Server) Addr() net.Addr { return s.conn.LocalAddr() }

// Active is the number of transfers in progress.
func (s *Server) Active() int { return int(s.active.Load()) }

// Serve answers requests until ctx is cancelled; then it closes the socket,
// aborts running transfers and waits for them.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.conn.Close() })
	defer stop()
	defer s.wg.Wait()
	buf := make([]byte, maxRequestSize+1)
	for {
		var (
			n       int
			src     net.Addr
			err     error
			localIP net.IP
			ifIndex int
		)
		if s.pconn != nil {
			var cm *ipv4.ControlMessage
			n, cm, src, err = s.pconn.ReadFrom(buf)
			if cm != nil {
				localIP, ifIndex = cm.Dst, cm.IfIndex
			}
		} else {
			n, src, err = s.conn.ReadFrom(buf)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("tftp: read: %w", err)
		}
		remote, ok := src.(*net.UDPAddr)
		if !ok || n < 2 {
			continue
		}
		if op := binary.BigEndian.Uint16(buf); op != opRRQ && op != opWRQ {
			continue // stray DATA/ACK to port 69: not ours to answer
		}
		if localIP == nil || localIP.IsUnspecified() || localIP.Equal(net.IPv4bcast) {
			localIP = nil
			if la, ok := s.conn.LocalAddr().(*net.UDPAddr); ok && !la.IP.IsUnspecified() {
				localIP = la.IP
			}
		}
		pkt := append([]byte(nil), buf[:n]...)
		maxBlock := s.maxBlock(ifIndex)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveRequest(ctx, localIP, remote, pkt, maxBlock)
		}()
	}
}

// maxBlock is the largest blksize that fits the interface MTU unfragmented.
func (s *Server) maxBlock(ifIndex int) int {
	mtu := 1500
	if ifIndex > 0 {
		s.mtuMu.Lock()
		m, ok := s.mtus[ifIndex]
		s.mtuMu.Unlock()
		if !ok {
			if ifc, err := net.InterfaceByIndex(ifIndex); err == nil {
				m = ifc.MTU
				s.mtuMu.Lock()
				s.mtus[ifIndex] = m
				s.mtuMu.Unlock()
			}
		}
		if m > 0 {
			mtu = m
		}
	}
	// IPv4 header 20, UDP 8, TFTP DATA header 4.
	return max(DefaultBlock, min(s.cfg.MaxBlockSize, mtu-32))
}

// session is one transfer on its own socket (its TID).
type session struct {
	ctx    context.Context
	s      *Server
	conn   *net.UDPConn
	remote *net.UDPAddr
	rbuf   []byte
	t      Transfer
}

func (s *Server) serveRequest(ctx context.Context, localIP net.IP, remote *net.UDPAddr, pkt []byte, maxBlock int) {
	start := time.Now()
	ap := remote.AddrPort()
	t := Transfer{Remote: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}
	if s.cfg.OnStart != nil {
		s.cfg.OnStart()
	}
	s.active.Add(1)
	defer func() {
		t.Duration = time.Since(start)
		if s.cfg.OnDone != nil {
			s.cfg.OnDone(t)
		}
		// Only now: Active() == 0 means every report has been delivered.
		s.active.Add(-1)
	}()
	conn, err := net.DialUDP("udp4", &net.UDPAddr{IP: localIP}, remote)
	if err != nil {
		t.Outcome, t.Err = OutcomeFailed, fmt.Errorf("open transfer socket: %w", err)
		s.log.Warn("cannot open transfer socket", "remote", remote, "error", err)
		return
	}
	defer conn.Close()
	// Shutdown aborts transfers in flight.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	ss := &session{ctx: ctx, s: s, conn: conn, remote: remote, rbuf: make([]byte, 1024)}
	ss.run(ctx, pkt, maxBlock, &t)
}

func (ss *session) fail(t *Transfer, outcome string, code uint16, msg string, err error) {
	t.Outcome, t.Err = outcome, err
	ss.conn.Write(errorPacket(code, msg))
}

func (ss *session) run(ctx context.Context, pkt []byte, maxBlock int, t *Transfer) {
	s := ss.s
	rq, err := ParseRequest(pkt)
	if err != nil {
		ss.fail(t, OutcomeRefused, ErrCodeIllegalOp, "malformed request", err)
		return
	}
	t.Filename = rq.Filename
	if rq.Write {
		ss.fail(t, OutcomeRefused, ErrCodeAccess, "read-only server", errors.New("write request"))
		return
	}
	if rq.Mode != "octet" && rq.Mode != "netascii" {
		ss.fail(t, OutcomeRefused, ErrCodeIllegalOp, "unsupported mode", fmt.Errorf("mode %q", rq.Mode))
		return
	}
	path, err := ParsePath(rq.Filename)
	if err != nil {
		ss.fail(t, OutcomeRefused, ErrCodeAccess, "access violation", err)
		return
	}
	t.Path = path
	if s.active.Load() > int64(s.cfg.MaxTransfers) {
		ss.fail(t, OutcomeFailed, ErrCodeUndefined, "server busy", errors.New("too many transfers"))
		return
	}
	content, err := s.cfg.Resolver.Resolve(ctx, Request{Filename: rq.Filename, Path: path, Remote: t.Remote})
	switch {
	case errors.Is(err, ErrNotFound):
		ss.fail(t, OutcomeNotFound, ErrCodeNotFound, "file not found", err)
		return
	case errors.Is(err, ErrAccess):
		ss.fail(t, OutcomeRefused, ErrCodeAccess, "access violation", err)
		return
	case err != nil:
		ss.fail(t, OutcomeFailed, ErrCodeUndefined, "cannot read file", err)
		s.log.Warn("resolving request failed", "file", rq.Filename, "remote", t.Remote, "error", err)
		return
	}
	if content.Close != nil {
		defer content.Close()
	}
	t.Machine, t.Size = content.Machine, content.Size
	neg := Negotiate(rq.Options, maxBlock, s.cfg.MaxWindowSize)
	t.BlockSize, t.WindowSize = neg.BlockSize, neg.WindowSize
	timeout := s.cfg.Timeout
	if neg.TimeoutSec > 0 {
		timeout = time.Duration(neg.TimeoutSec) * time.Second
	}
	if len(neg.Acked) > 0 {
		switch err := ss.exchangeOACK(neg.oack(content.Size), timeout); {
		case errors.Is(err, errClientAbort), errors.Is(err, errNoAnswer):
			// The Pi asks for tsize and stops: an existence probe, not an error.
			t.Outcome, t.Err = OutcomeProbe, err
			return
		case err != nil:
			t.Outcome, t.Err = OutcomeFailed, err
			return
		}
	}
	acked, err := ss.send(content, neg.BlockSize, neg.WindowSize, timeout)
	t.Bytes = min(int64(acked)*int64(neg.BlockSize), content.Size)
	switch {
	case err == nil:
		t.Outcome = OutcomeServed
	case (errors.Is(err, errClientAbort) || errors.Is(err, errNoAnswer)) && acked <= 1:
		t.Outcome, t.Err = OutcomeProbe, err
	case errors.Is(err, errClientAbort):
		t.Outcome, t.Err = OutcomeAborted, err
	default:
		t.Outcome, t.Err = OutcomeFailed, err
		if ctx.Err() != nil {
			ss.conn.Write(errorPacket(ErrCodeUndefined, "server shutting down"))
		}
	}
}

var (
	errClientAbort = errors.New("client sent an error")
	errNoAnswer    = errors.New("client stopped answering")
)

// exchangeOACK sends the OACK until the client acknowledges it with ACK 0.
func (ss *session) exchangeOACK(oack []byte, timeout time.Duration) error {
	for try := 0; try <= ss.s.cfg.Retries; try++ {
		if _, err := ss.conn.Write(oack); err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return fmt.Errorf("%w: %v", errNoAnswer, err)
			}
			return fmt.Errorf("send OACK: %w", err)
		}
		for {
			op, block, err := ss.read(timeout)
			if err != nil {
				if isTimeout(err) {
					break
				}
				return err
			}
			if op == opACK && block == 0 {
				return nil
			}
		}
	}
	return errNoAnswer
}

// read waits for the next ACK or ERROR from the client.
func (ss *session) read(timeout time.Duration) (op, block uint16, err error) {
	if err := ss.ctx.Err(); err != nil {
		return 0, 0, err
	}
	ss.conn.SetReadDeadline(time.Now().Add(timeout))
	refused := false
	for {
		n, err := ss.conn.Read(ss.rbuf)
		if err != nil {
			if ss.ctx.Err() != nil {
				return 0, 0, ss.ctx.Err()
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				// ICMP port unreachable: the client closed its socket. Linux
				// reports the error before packets already queued, such as
				// the final ACK that raced a retransmission, so look once more.
				if refused {
					return 0, 0, fmt.Errorf("%w: %v", errNoAnswer, err)
				}
				refused = true
				ss.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
				continue
			}
			if refused && isTimeout(err) {
				return 0, 0, fmt.Errorf("%w: port unreachable", errNoAnswer)
			}
			return 0, 0, err
		}
		if n < 4 {
			continue
		}
		op = binary.BigEndian.Uint16(ss.rbuf)
		switch op {
		case opACK:
			return op, binary.BigEndian.Uint16(ss.rbuf[2:]), nil
		case opERROR:
			return op, 0, fmt.Errorf("%w: code %d", errClientAbort, binary.BigEndian.Uint16(ss.rbuf[2:]))
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// send transmits the file in windows of ws blocks (ws 1 is RFC 1350
// lock-step) and returns the number of the last block the client
// acknowledged. A window goes out in as few system calls as the platform
// allows: UDP segmentation offload (one buffer per up to 64 blocks) on
// Linux, else one sendmmsg call. Block numbers wrap at 65535, as most
// clients expect.
func (ss *session) send(c Content, bs, ws int, timeout time.Duration) (uint64, error) {
	nblocks := uint64(c.Size/int64(bs)) + 1 // the last block is short, maybe empty
	// One contiguous buffer: slot i is the datagram of the window's i-th
	// block, so full blocks followed by the short last one are exactly
	// the buffer GSO cuts into datagrams.
	pkt := 4 + bs
	window := make([]byte, ws*pkt)
	msgs := make([]ipv4.Message, ws)
	for i := range ws {
		binary.BigEndian.PutUint16(window[i*pkt:], opDATA)
		msgs[i].Buffers = [][]byte{nil}
	}
	segs := 0
	if ws > 1 {
		segs = udpSegments(ss.conn, pkt)
	}
	pc := ipv4.NewPacketConn(ss.conn)
	fill := func(slot int, b uint64) ([]byte, error) {
		buf := window[slot*pkt : (slot+1)*pkt]
		off := int64(b-1) * int64(bs)
		n := int(min(int64(bs), c.Size-off))
		if n > 0 {
			if m, err := c.R.ReadAt(buf[4:4+n], off); m < n {
				return nil, fmt.Errorf("read block %d: %w", b, err)
			}
		}
		binary.BigEndian.PutUint16(buf[2:], uint16(b))
		return buf[:4+n], nil
	}
	sendBatch := func(k int) error {
		for sent := 0; sent < k; {
			n, err := pc.WriteBatch(msgs[sent:k], 0)
			if err != nil {
				return err
			}
			sent += n
		}
		return nil
	}
	sendWindow := func(first, last uint64) error {
		k, size := 0, 0
		for b := first; b <= last; b++ {
			p, err := fill(k, b)
			if err != nil {
				return err
			}
			msgs[k].Buffers[0] = p
			size = k*pkt + len(p)
			k++
		}
		var err error
		switch {
		case k == 1:
			_, err = ss.conn.Write(msgs[0].Buffers[0])
		case segs > 0:
			for start := 0; start < k && err == nil; start += segs {
				_, err = ss.conn.Write(window[start*pkt : min(size, (start+segs)*pkt)])
			}
			if err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
				// A device without checksum offload refuses GSO (EIO):
				// resend this window, and the rest, with sendmmsg.
				segs = 0
				err = sendBatch(k)
			}
		default:
			err = sendBatch(k)
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w: %v", errNoAnswer, err)
		}
		return err
	}
	var acked uint64
	retries := 0
	for acked < nblocks {
		end := min(acked+uint64(ws), nblocks)
		if err := sendWindow(acked+1, end); err != nil {
			return acked, err
		}
		for {
			op, block, err := ss.read(timeout)
			if err != nil {
				if !isTimeout(err) {
					return acked, err
				}
				if retries++; retries > ss.s.cfg.Retries {
					return acked, errNoAnswer
				}
				break // resend the window from the first unacknowledged block
			}
			if op != opACK {
				continue
			}
			// Map the 16-bit block number into (acked, end].
			abs := acked + uint64(block-uint16(acked))
			if abs <= acked || abs > end {
				continue // duplicate or stale ACK: ignoring it avoids Sorcerer's Apprentice
			}
			acked, retries = abs, 0
			// A full window is acknowledged, or the client saw a gap and
			// acknowledged the last block it has: send on from there.
			break
		}
	}
	return acked, nil
}
