//go:build linux

package tftp

import (
	"net"

	"golang.org/x/sys/unix"
)

// udpSegments turns on UDP generic segmentation offload for a transfer
// socket: a window then goes to the kernel as one buffer, which it cuts
// into datagrams of size bytes, instead of one trip through the UDP stack
// per block. It returns how many datagrams one write may carry, or 0
// when GSO is unavailable (the caller then uses sendmmsg).
func udpSegments(conn *net.UDPConn, size int) int {
	// The kernel takes at most 64 segments (UDP_MAX_SEGMENTS on older
	// kernels) and one buffer must fit in an IPv4 datagram.
	n := min(64, (65535-20-8)/size)
	if n < 2 {
		return 0
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return 0
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT, size)
	}); err != nil || serr != nil {
		return 0
	}
	return n
}
