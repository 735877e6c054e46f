package nfs

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// rawCall builds an RPC call with an AUTH_SYS root credential.
func rawCall(xid, prog, vers, proc, flavor uint32, args []byte) []byte {
	w := &xdrWriter{}
	w.u32(0)
	w.u32(xid)
	w.u32(msgCall)
	w.u32(2)
	w.u32(prog)
	w.u32(vers)
	w.u32(proc)
	w.u32(flavor)
	cred := &xdrWriter{}
	if flavor == authSys {
		cred.u32(1)
		cred.opaque([]byte("node"))
		cred.u32(0)
		cred.u32(0)
		cred.u32(0)
	}
	w.opaque(cred.Bytes())
	w.u32(authNull)
	w.u32(0)
	w.Write(args)
	return frame(w.Bytes())
}

func readReply(t *testing.T, c net.Conn) *xdrReader {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("read reply: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:])&0x7fffffff)
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatal(err)
	}
	return &xdrReader{b: body}
}

// TestRPCFraming checks what bakery's connection layer answers itself:
// fragmented records, version and program mismatches, unsupported
// credentials, the export list, and garbage (the connection is closed).
func TestRPCFraming(t *testing.T) {
	h := newHarness(t, nil)
	conn := func() net.Conn {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	c := conn()

	// MNT in two fragments.
	path := &xdrWriter{}
	path.opaque([]byte(ExportPath(machA)))
	msg := rawCall(1, progMount, 3, 1, authSys, path.Bytes())[4:]
	first, second := msg[:10], msg[10:]
	var frag bytes.Buffer
	binary.Write(&frag, binary.BigEndian, uint32(len(first)))
	frag.Write(first)
	binary.Write(&frag, binary.BigEndian, uint32(len(second))|1<<31)
	frag.Write(second)
	c.Write(frag.Bytes())
	r := readReply(t, c)
	if xid, typ, stat := r.u32(), r.u32(), r.u32(); xid != 1 || typ != msgReply || stat != replyAccepted {
		t.Fatalf("fragmented MNT: %d %d %d", xid, typ, stat)
	}
	r.u32()
	r.opaque(400)
	if acc, mstat := r.u32(), r.u32(); acc != acceptSuccess || mstat != 0 {
		t.Fatalf("fragmented MNT: accept %d, mount status %d", acc, mstat)
	}

	expectAccept := func(xid, want uint32, detail ...uint32) {
		t.Helper()
		r := readReply(t, c)
		if got := r.u32(); got != xid {
			t.Fatalf("xid %d, want %d", got, xid)
		}
		r.u32()
		if stat := r.u32(); stat != replyAccepted {
			t.Fatalf("xid %d: reply stat %d", xid, stat)
		}
		r.u32()
		r.opaque(400)
		if got := r.u32(); got != want {
			t.Fatalf("xid %d: accept stat %d, want %d", xid, got, want)
		}
		for _, d := range detail {
			if got := r.u32(); got != d {
				t.Fatalf("xid %d: detail %d, want %d", xid, got, d)
			}
		}
	}
	c.Write(rawCall(2, progNFS, 4, 0, authSys, nil))
	expectAccept(2, acceptProgMismatch, 3, 3)
	c.Write(rawCall(3, 100000, 2, 3, authSys, nil))
	expectAccept(3, acceptProgUnavail)
	c.Write(rawCall(4, progNFS, 3, 0, 6, nil)) // RPCSEC_GSS
	r = readReply(t, c)
	if xid, _, stat, rej, auth := r.u32(), r.u32(), r.u32(), r.u32(), r.u32(); xid != 4 || stat != replyDenied || rej != rejectAuthError || auth != authTooWeak {
		t.Fatalf("RPCSEC_GSS: %d %d %d %d", xid, stat, rej, auth)
	}
	c.Write(rawCall(5, progMount, 3, mountExport, authSys, nil))
	r = readReply(t, c)
	r.u32()
	r.u32()
	r.u32()
	r.u32()
	r.opaque(400)
	r.u32()
	if more := r.u32(); more != 1 {
		t.Fatal("empty export list")
	}
	if p := string(r.opaque(1024)); p != ExportPath(machA) {
		t.Fatalf("export %q", p)
	}

	// Garbage closes the connection; so does a record over the limit.
	for _, bad := range [][]byte{
		frame(append(make([]byte, 4), bytes.Repeat([]byte{0xff}, 40)...)),
		{0xff, 0xff, 0xff, 0xff},
	} {
		g := conn()
		g.Write(bad)
		g.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := g.Read(make([]byte, 1)); err == nil || strings.Contains(err.Error(), "timeout") {
			t.Fatalf("connection not closed after garbage: %v", err)
		}
	}
	// The server still serves.
	c.Write(rawCall(6, progNFS, 3, 0, authSys, nil))
	expectAccept(6, acceptSuccess)
}

func TestParseExport(t *testing.T) {
	for in, want := range map[string][2]string{
		"/machines/3a7f91c2":            {"3a7f91c2", ""},
		"/machines/DC-A6-32-01-02-03/":  {"dc:a6:32:01:02:03", ""},
		"/machines/3a7f91c2/disks/data": {"3a7f91c2", "data"},
		"/machines/../etc":              {},
		"/machines/3a7f91c2/disks/":     {},
		"/machines/3a7f91c2/other":      {},
		"/srv":                          {},
	} {
		m, d, ok := parseExport(in)
		if ok != (want[0] != "") || m != want[0] || d != want[1] {
			t.Errorf("%s: %q %q %v", in, m, d, ok)
		}
	}
	if ExportPath("dc:a6:32:01:02:03") != "/machines/dc-a6-32-01-02-03" {
		t.Fatal(ExportPath("dc:a6:32:01:02:03"))
	}
}

func TestPathconf(t *testing.T) {
	h := newHarness(t, nil)
	tgt := h.mustMount(machA, rootAuth())
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	args := &xdrWriter{}
	args.opaque(lookupFH(t, tgt, "/etc"))
	c.Write(rawCall(9, progNFS, 3, procPathconf, authSys, args.Bytes()))
	r := readReply(t, c)
	r.u32()
	r.u32()
	r.u32()
	r.u32()
	r.opaque(400)
	if acc, st := r.u32(), r.u32(); acc != 0 || st != 0 {
		t.Fatalf("pathconf: %d %d", acc, st)
	}
	if r.u32() == 1 { // attributes follow
		r.b = r.b[84:]
	}
	if linkmax, namemax, notrunc, chown := r.u32(), r.u32(), r.u32(), r.u32(); linkmax != 65000 || namemax != 255 || notrunc != 1 || chown != 1 {
		t.Fatalf("pathconf %d %d %d %d", linkmax, namemax, notrunc, chown)
	}
}
