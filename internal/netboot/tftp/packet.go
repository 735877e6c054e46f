package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Opcodes (RFC 1350, RFC 2347).
const (
	opRRQ   = 1
	opWRQ   = 2
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

// Error codes (RFC 1350, RFC 2347).
const (
	ErrCodeUndefined    = 0
	ErrCodeNotFound     = 1
	ErrCodeAccess       = 2
	ErrCodeIllegalOp    = 4
	ErrCodeUnknownTID   = 5
	ErrCodeOptionRefuse = 8
)

// Option limits (RFC 2348, RFC 2349, RFC 7440).
const (
	MinBlockSize   = 8
	MaxBlockSize   = 65464
	DefaultBlock   = 512
	MaxWindowSize  = 65535
	maxRequestSize = 1024 // longer requests are refused
)

var errMalformed = errors.New("malformed TFTP packet")

// ReadRequest is a parsed RRQ or WRQ.
type ReadRequest struct {
	Write    bool
	Filename string
	Mode     string            // lower case: octet or netascii
	Options  map[string]string // names lower case, in the order irrelevant
}

// ParseRequest parses an RRQ/WRQ packet: opcode, then NUL-terminated file
// name, mode and option name/value pairs. Every string must be terminated;
// repeated options keep the first value, as RFC 2347 leaves it open.
func ParseRequest(p []byte) (ReadRequest, error) {
	if len(p) < 4 {
		return ReadRequest{}, fmt.Errorf("%w: %d bytes", errMalformed, len(p))
	}
	if len(p) > maxRequestSize {
		return ReadRequest{}, fmt.Errorf("%w: request of %d bytes", errMalformed, len(p))
	}
	var rq ReadRequest
	switch binary.BigEndian.Uint16(p) {
	case opRRQ:
	case opWRQ:
		rq.Write = true
	default:
		return ReadRequest{}, fmt.Errorf("%w: opcode %d is not a request", errMalformed, binary.BigEndian.Uint16(p))
	}
	rest := p[2:]
	var fields []string
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, 0)
		if i < 0 {
			return ReadRequest{}, fmt.Errorf("%w: unterminated string", errMalformed)
		}
		fields = append(fields, string(rest[:i]))
		rest = rest[i+1:]
	}
	if len(fields) < 2 {
		return ReadRequest{}, fmt.Errorf("%w: no mode", errMalformed)
	}
	if len(fields)%2 != 0 {
		return ReadRequest{}, fmt.Errorf("%w: option %q has no value", errMalformed, fields[len(fields)-1])
	}
	rq.Filename, rq.Mode = fields[0], strings.ToLower(fields[1])
	if rq.Filename == "" {
		return ReadRequest{}, fmt.Errorf("%w: empty file name", errMalformed)
	}
	for i := 2; i+1 < len(fields); i += 2 {
		name := strings.ToLower(fields[i])
		if rq.Options == nil {
			rq.Options = map[string]string{}
		}
		if _, dup := rq.Options[name]; !dup {
			rq.Options[name] = fields[i+1]
		}
	}
	return rq, nil
}

// Negotiated holds the options a transfer runs with.
type Negotiated struct {
	BlockSize  int
	WindowSize int
	TimeoutSec int  // 0: the server's default
	TSize      bool // answer tsize with the file size
	// Acked lists the options to put in the OACK, in a fixed order.
	Acked []string
}

// Negotiate applies RFC 2348 (blksize, clamped to maxBlock), RFC 2349
// (tsize, timeout) and RFC 7440 (windowsize, clamped to maxWindow). Options
// that are malformed or unknown are left out of the OACK, which tells the
// client we did not take them.
func Negotiate(opts map[string]string, maxBlock, maxWindow int) Negotiated {
	n := Negotiated{BlockSize: DefaultBlock, WindowSize: 1}
	if v, ok := opts["blksize"]; ok {
		if b, err := strconv.Atoi(v); err == nil && b >= MinBlockSize && b <= MaxBlockSize {
			n.BlockSize = min(b, maxBlock)
			n.Acked = append(n.Acked, "blksize")
		}
	}
	if v, ok := opts["tsize"]; ok {
		if t, err := strconv.ParseInt(v, 10, 64); err == nil && t >= 0 {
			n.TSize = true
			n.Acked = append(n.Acked, "tsize")
		}
	}
	if v, ok := opts["timeout"]; ok {
		if t, err := strconv.Atoi(v); err == nil && t >= 1 && t <= 255 {
			n.TimeoutSec = t
			n.Acked = append(n.Acked, "timeout")
		}
	}
	if v, ok := opts["windowsize"]; ok {
		if w, err := strconv.Atoi(v); err == nil && w >= 1 && w <= MaxWindowSize {
			n.WindowSize = min(w, maxWindow)
			n.Acked = append(n.Acked, "windowsize")
		}
	}
	return n
}

// oack builds the OACK for the negotiated options.
func (n Negotiated) oack(size int64) []byte {
	b := []byte{0, opOACK}
	for _, name := range n.Acked {
		var v string
		switch name {
		case "blksize":
			v = strconv.Itoa(n.BlockSize)
		case "tsize":
			v = strconv.FormatInt(size, 10)
		case "timeout":
			v = strconv.Itoa(n.TimeoutSec)
		case "windowsize":
			v = strconv.Itoa(n.WindowSize)
		}
		b = append(b, name...)
		b = append(b, 0)
		b = append(b, v...)
		b = append(b, 0)
	}
	return b
}

func errorPacket(code uint16, msg string) []byte {
	b := make([]byte, 4, 5+len(msg))
	binary.BigEndian.PutUint16(b, opERROR)
	binary.BigEndian.PutUint16(b[2:], code)
	b = append(b, msg...)
	return append(b, 0)
}
