//go:build !linux

package tftp

import "net"

// udpSegments: UDP segmentation offload is Linux-only; elsewhere windows
// go out with sendmmsg where the platform has it.
func udpSegments(*net.UDPConn, int) int { return 0 }
