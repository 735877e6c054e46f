package nfs

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// ONC RPC (RFC 5531) constants we need.
const (
	progNFS   = 100003
	progMount = 100005

	msgCall  = 0
	msgReply = 1

	replyAccepted = 0
	replyDenied   = 1

	acceptSuccess      = 0
	acceptProgUnavail  = 1
	acceptProgMismatch = 2
	acceptProcUnavail  = 3
	acceptGarbageArgs  = 4

	rejectRPCMismatch = 0
	rejectAuthError   = 1

	authNull = 0
	authSys  = 1

	authTooWeak = 5
	authBadCred = 1

	// maxIO is the largest READ and WRITE bakery advertises (FSINFO), as
	// Linux's own limit; maxRecord bounds one RPC message, a maxIO WRITE
	// plus headers, and maxRecordUnbound that of a client no machine
	// owns (it can only be refused).
	maxIO            = 1 << 20
	maxRecord        = maxIO + 64<<10
	maxRecordUnbound = 64 << 10
)

var errBadRecord = errors.New("malformed RPC record")

// xdrReader decodes XDR (RFC 4506) from a byte slice. The first error
// sticks; later reads return zero values.
type xdrReader struct {
	b   []byte
	err error
}

func (r *xdrReader) fail() {
	if r.err == nil {
		r.err = errBadRecord
	}
	r.b = nil
}

func (r *xdrReader) u32() uint32 {
	if len(r.b) < 4 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *xdrReader) u64() uint64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// opaque reads a variable-length opaque of at most max bytes.
func (r *xdrReader) opaque(max int) []byte {
	n := r.u32()
	if r.err != nil {
		return nil
	}
	if int64(n) > int64(max) || int64(n) > int64(len(r.b)) {
		r.fail()
		return nil
	}
	v := r.b[:n]
	pad := (4 - n%4) % 4
	if int64(n+pad) > int64(len(r.b)) {
		r.fail()
		return nil
	}
	r.b = r.b[n+pad:]
	return v
}

// xdrWriter encodes XDR.
type xdrWriter struct{ bytes.Buffer }

func (w *xdrWriter) u32(v uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	w.Write(b[:])
}

func (w *xdrWriter) u64(v uint64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	w.Write(b[:])
}

func (w *xdrWriter) opaque(v []byte) {
	w.u32(uint32(len(v)))
	w.Write(v)
	if pad := (4 - len(v)%4) % 4; pad > 0 {
		w.Write(make([]byte, pad))
	}
}

func (w *xdrWriter) boolean(v bool) {
	if v {
		w.u32(1)
	} else {
		w.u32(0)
	}
}

// callHeader is the start of an RPC call up to the procedure arguments.
type callHeader struct {
	xid, rpcvers, prog, vers, proc uint32
	flavor                         uint32
	uid, gid                       uint32
	gids                           []uint32
	args                           []byte // the procedure's arguments
}

func parseCall(rec []byte) (callHeader, error) {
	r := &xdrReader{b: rec}
	var c callHeader
	c.xid = r.u32()
	if mtype := r.u32(); mtype != msgCall && r.err == nil {
		return c, fmt.Errorf("%w: message type %d is not a call", errBadRecord, mtype)
	}
	c.rpcvers, c.prog, c.vers, c.proc = r.u32(), r.u32(), r.u32(), r.u32()
	c.flavor = r.u32()
	cred := r.opaque(400)
	r.u32() // verifier flavor
	r.opaque(400)
	if r.err != nil {
		return c, r.err
	}
	if c.flavor == authSys {
		cr := &xdrReader{b: cred}
		cr.u32()       // stamp
		cr.opaque(255) // machine name
		c.uid, c.gid = cr.u32(), cr.u32()
		n := cr.u32()
		if n > 16 {
			cr.fail()
		}
		for i := uint32(0); i < n && cr.err == nil; i++ {
			c.gids = append(c.gids, cr.u32())
		}
		if cr.err != nil {
			return c, fmt.Errorf("%w: AUTH_SYS credential", errBadRecord)
		}
	}
	c.args = r.b
	return c, nil
}

// acceptedReply frames a successful-or-not accepted reply.
func acceptedReply(xid, stat uint32, body []byte) []byte {
	w := &xdrWriter{}
	w.u32(0) // record mark, filled in by frame
	w.u32(xid)
	w.u32(msgReply)
	w.u32(replyAccepted)
	w.u32(authNull)
	w.u32(0)
	w.u32(stat)
	w.Write(body)
	return frame(w.Bytes())
}

func mismatchReply(xid uint32, low, high uint32) []byte {
	w := &xdrWriter{}
	w.u32(low)
	w.u32(high)
	return acceptedReply(xid, acceptProgMismatch, w.Bytes())
}

func deniedReply(xid uint32, reject uint32, detail ...uint32) []byte {
	w := &xdrWriter{}
	w.u32(0)
	w.u32(xid)
	w.u32(msgReply)
	w.u32(replyDenied)
	w.u32(reject)
	for _, d := range detail {
		w.u32(d)
	}
	return frame(w.Bytes())
}

// frame sets the record mark of a message whose first 4 bytes are
// reserved for it: a single, last fragment.
func frame(b []byte) []byte {
	binary.BigEndian.PutUint32(b, uint32(len(b)-4)|1<<31)
	return b
}

// rpcConn sits between a client's TCP connection and go-nfs, which serves
// one request at a time per connection. It reads whole records
// (reassembling fragments, which go-nfs cannot), parses each call's header
// and credential, answers the procedures bakery implements itself, and
// hands the rest to go-nfs one record at a time, so that while go-nfs
// handles a call, the session knows whose call it is. Replies from go-nfs
// and from bakery never interleave on the wire.
type rpcConn struct {
	net.Conn
	br        *bufio.Reader
	idle      time.Duration
	maxRecord int
	// handle answers a call itself (returning the framed reply) or returns
	// nil to pass it on; it runs on go-nfs's goroutine, before the call.
	handle func(callHeader) []byte

	inHdr  [4]byte // record mark of the current record for go-nfs
	inHdrN int     // bytes of inHdr not yet read
	in     []byte  // rest of the current record for go-nfs
	buf    []byte

	wmu     sync.Mutex
	wHeld   bool
	wHdr    [4]byte
	wHdrN   int
	wRemain int

	closeOnce sync.Once
	done      chan struct{}
	lastErr   atomic.Value
}

func newRPCConn(c net.Conn, idle time.Duration, handle func(callHeader) []byte) *rpcConn {
	return &rpcConn{Conn: c, br: bufio.NewReaderSize(c, 64<<10), idle: idle, maxRecord: maxRecord, handle: handle, done: make(chan struct{})}
}

// readRecord reads one complete RPC record.
func (c *rpcConn) readRecord() ([]byte, error) {
	rec := c.buf[:0]
	for {
		if c.idle > 0 {
			c.Conn.SetReadDeadline(time.Now().Add(c.idle))
		}
		var hdr [4]byte
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, errBadRecord
			}
			return nil, err
		}
		h := binary.BigEndian.Uint32(hdr[:])
		n := int(h & 0x7fffffff)
		if len(rec)+n > c.maxRecord {
			return nil, fmt.Errorf("%w: record over %d bytes", errBadRecord, c.maxRecord)
		}
		start := len(rec)
		rec = append(rec, make([]byte, n)...)
		if _, err := io.ReadFull(c.br, rec[start:]); err != nil {
			return nil, errBadRecord
		}
		if h&(1<<31) != 0 {
			c.buf = rec
			return rec, nil
		}
	}
}

// Read gives go-nfs the calls bakery does not answer itself, one record at
// a time: it never returns bytes of the next record before go-nfs has
// consumed the current one, which it does only after handling it.
func (c *rpcConn) Read(p []byte) (int, error) {
	for c.inHdrN == 0 && len(c.in) == 0 {
		rec, err := c.readRecord()
		if err != nil {
			c.finish(err)
			return 0, err
		}
		call, err := parseCall(rec)
		if err != nil {
			c.finish(err)
			return 0, err
		}
		if reply := c.handle(call); reply != nil {
			if err := c.writeRecord(reply); err != nil {
				c.finish(err)
				return 0, err
			}
			continue
		}
		// go-nfs wants a single last fragment: re-frame the reassembled record.
		binary.BigEndian.PutUint32(c.inHdr[:], uint32(len(rec))|1<<31)
		c.inHdrN, c.in = 4, rec
	}
	n := 0
	if c.inHdrN > 0 {
		n = copy(p, c.inHdr[4-c.inHdrN:])
		c.inHdrN -= n
	}
	m := copy(p[n:], c.in)
	c.in = c.in[m:]
	return n + m, nil
}

// writeRecord writes one whole reply of bakery's, between go-nfs's records.
func (c *rpcConn) writeRecord(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.Conn.Write(b)
	return err
}

// Write passes go-nfs's output through, holding the write lock from the
// first byte of a record to its last.
func (c *rpcConn) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		if !c.wHeld {
			c.wmu.Lock()
			c.wHeld, c.wHdrN, c.wRemain = true, 0, -1
		}
		if c.wRemain < 0 {
			k := copy(c.wHdr[c.wHdrN:], p)
			c.wHdrN += k
			if _, err := c.Conn.Write(p[:k]); err != nil {
				c.releaseWrite()
				return written, err
			}
			p, written = p[k:], written+k
			if c.wHdrN < 4 {
				continue
			}
			c.wRemain = int(binary.BigEndian.Uint32(c.wHdr[:]) & 0x7fffffff)
		}
		k := min(len(p), c.wRemain)
		if k > 0 {
			if _, err := c.Conn.Write(p[:k]); err != nil {
				c.releaseWrite()
				return written, err
			}
		}
		p, written, c.wRemain = p[k:], written+k, c.wRemain-k
		if c.wRemain == 0 {
			if binary.BigEndian.Uint32(c.wHdr[:])&(1<<31) != 0 {
				c.releaseWrite()
			} else {
				c.wHdrN, c.wRemain = 0, -1 // another fragment follows
			}
		}
	}
	return written, nil
}

func (c *rpcConn) releaseWrite() {
	if c.wHeld {
		c.wHeld = false
		c.wmu.Unlock()
	}
}

func (c *rpcConn) finish(err error) {
	if err != nil {
		c.lastErr.CompareAndSwap(nil, err)
	}
	c.closeOnce.Do(func() {
		close(c.done)
		c.Conn.Close()
	})
}

// Close closes the connection.
func (c *rpcConn) Close() error {
	c.finish(nil)
	return nil
}

// oneConnListener hands go-nfs a single connection, then blocks until it
// is finished, so that nfs.Server.Serve runs per connection with a handler
// bound to the machine behind it.
type oneConnListener struct {
	c      *rpcConn
	served atomic.Bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if l.served.CompareAndSwap(false, true) {
		return l.c, nil
	}
	<-l.c.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.c.LocalAddr() }
