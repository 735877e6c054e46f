//go:build linux

package tftp

import (
	"bytes"
	"net"
	"testing"
)

// TestWindowThroughGSO: on Linux a window leaves as one segmented buffer;
// the client must still see one datagram per block, each with its own
// header and exactly blksize bytes (the last one short), across windows
// of 64 blocks, more than one GSO buffer carries (63 of 1028 bytes).
func TestWindowThroughGSO(t *testing.T) {
	conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if n := udpSegments(conn, 4+1024); n < 2 {
		t.Skipf("UDP GSO unavailable here (%d segments); the sendmmsg path is tested elsewhere", n)
	}
	files := testFiles(t)
	ts := startServer(t, &memResolver{files: files, serial: "3a7f91c2"}, Config{})
	c := newRaw(t, ts.addr)
	// start4.elf is 2 MiB + 17 bytes: 2049 blocks of 1024, the last 17 bytes.
	c.rrq("3a7f91c2/start4.elf", "blksize", "1024", "windowsize", "64")
	if op, _, _ := c.recv(); op != opOACK {
		t.Fatal("no OACK")
	}
	c.send(opACK, 0)
	want := files["start4.elf"]
	var got []byte
	for next := uint16(1); ; {
		op, block, payload := c.recv()
		if op != opDATA || block != next {
			t.Fatalf("got op %d block %d, want DATA %d", op, block, next)
		}
		if len(payload) != 1024 && int(block) != len(want)/1024+1 {
			t.Fatalf("block %d carries %d bytes; want 1024", block, len(payload))
		}
		got = append(got, payload...)
		if len(payload) < 1024 {
			c.send(opACK, block)
			break
		}
		if block%64 == 0 {
			c.send(opACK, block)
		}
		next++
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}
}
