package tftp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"golang.org/x/net/ipv4"
)

// FetchOptions configure Fetch.
type FetchOptions struct {
	BlockSize  int // 0: no blksize option (512)
	WindowSize int // 0: no windowsize option (lock-step)
	TSize      bool
	Timeout    time.Duration // per packet; default 1s
	Retries    int           // default 5
}

// RemoteError is an ERROR packet from the server.
type RemoteError struct {
	Code    uint16
	Message string
}

func (e *RemoteError) Error() string { return fmt.Sprintf("tftp error %d: %s", e.Code, e.Message) }

// Fetch downloads name from the server at addr into w, acknowledging
// windows as RFC 7440 describes. It exists for the benchmark and for tests
// of loss recovery; interoperability tests use curl, atftp and pin/tftp.
func Fetch(ctx context.Context, addr, name string, o FetchOptions, w io.Writer) (int64, error) {
	if o.Timeout <= 0 {
		o.Timeout = time.Second
	}
	if o.Retries <= 0 {
		o.Retries = 5
	}
	ra, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return 0, err
	}
	conn, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	rrq := []byte{0, opRRQ}
	rrq = append(append(rrq, name...), 0)
	rrq = append(append(rrq, "octet"...), 0)
	opt := func(k, v string) { rrq = append(append(append(append(rrq, k...), 0), v...), 0) }
	if o.BlockSize > 0 {
		opt("blksize", strconv.Itoa(o.BlockSize))
	}
	if o.TSize {
		opt("tsize", "0")
	}
	if o.WindowSize > 0 {
		opt("windowsize", strconv.Itoa(o.WindowSize))
	}
	bs, ws := DefaultBlock, 1
	var peer *net.UDPAddr
	var total int64
	expect := uint16(1)
	inWindow := 0
	lastSent := []byte(nil) // the RRQ or our last ACK, resent on timeout
	send := func(p []byte, to *net.UDPAddr) error {
		lastSent = p
		_, err := conn.WriteToUDP(p, to)
		return err
	}
	ack := func(b uint16) []byte {
		p := make([]byte, 4)
		binary.BigEndian.PutUint16(p, opACK)
		binary.BigEndian.PutUint16(p[2:], b)
		return p
	}
	if err := send(rrq, ra); err != nil {
		return 0, err
	}
	// Packets are read in batches (recvmmsg where available): a window
	// arrives as a burst.
	pc := ipv4.NewPacketConn(conn)
	batch := max(1, min(64, o.WindowSize))
	size := max(o.BlockSize, DefaultBlock) + 4 // the server may lower blksize, never raise it
	msgs := make([]ipv4.Message, batch)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, size)}
	}
	retries := 0
	for {
		conn.SetReadDeadline(time.Now().Add(o.Timeout))
		nmsg, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			if ctx.Err() != nil {
				return total, ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if retries++; retries > o.Retries {
					return total, fmt.Errorf("tftp %s: timeout", name)
				}
				to := ra
				if peer != nil {
					to = peer
				}
				conn.WriteToUDP(lastSent, to)
				inWindow = 0
				continue
			}
			return total, err
		}
		for i := 0; i < nmsg; i++ {
			from, _ := msgs[i].Addr.(*net.UDPAddr)
			buf, n := msgs[i].Buffers[0], msgs[i].N
			if from == nil || n < 4 || (peer != nil && (!from.IP.Equal(peer.IP) || from.Port != peer.Port)) {
				continue
			}
			if peer == nil {
				peer = from
			}
			switch binary.BigEndian.Uint16(buf) {
			case opERROR:
				msg := string(buf[4:n])
				if j := len(msg) - 1; j >= 0 && msg[j] == 0 {
					msg = msg[:j]
				}
				return total, &RemoteError{Code: binary.BigEndian.Uint16(buf[2:]), Message: msg}
			case opOACK:
				if expect != 1 || total != 0 {
					continue
				}
				fields := splitNUL(buf[2:n])
				for j := 0; j+1 < len(fields); j += 2 {
					v, _ := strconv.Atoi(fields[j+1])
					switch fields[j] {
					case "blksize":
						bs = v
					case "windowsize":
						ws = v
					}
				}
				retries = 0
				if err := send(ack(0), peer); err != nil {
					return total, err
				}
			case opDATA:
				block := binary.BigEndian.Uint16(buf[2:])
				if block != expect {
					// A gap: acknowledge the last block we have so the server
					// resends from there (RFC 7440 section 4).
					if inWindow > 0 || block != expect-1 {
						send(ack(expect-1), peer)
						inWindow = 0
					}
					continue
				}
				retries = 0
				data := buf[4:n]
				if _, err := w.Write(data); err != nil {
					return total, err
				}
				total += int64(len(data))
				expect++
				inWindow++
				last := len(data) < bs
				if last || inWindow >= ws {
					inWindow = 0
					if err := send(ack(block), peer); err != nil {
						return total, err
					}
				}
				if last {
					return total, nil
				}
			}
		}
	}
}

func splitNUL(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == 0 {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	return out
}
