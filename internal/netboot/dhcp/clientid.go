package dhcp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// PiClientID is what a Raspberry Pi 4 or 5 bootloader puts in DHCP option 97
// (client machine identifier): a type byte 0 followed by 16 bytes holding the
// model code, the board revision, the low four bytes of the MAC address and
// the serial number. Revision and serial are little-endian.
//
//	00 | "RPi4" (or "4iPR" on some bootloader versions) | rev u32le | mac[2:6] | serial u32le
type PiClientID struct {
	Model    string // "RPi4" or "RPi5"
	BoardRev uint32 // e.g. 0xd03114 for a Pi 4 8GB rev 1.4
	MACLow   [4]byte
	Serial   string // 8 lower-case hex digits, the TFTP prefix
}

// option97Len is the length of option 97 as the Pi bootloader sends it.
const option97Len = 17

var (
	errNotPiClientID = errors.New("option 97 is not a Raspberry Pi client id")
	// pi3UUID is the fixed UUID a Pi 3 bootloader sends in option 97:
	// 44444444-4444-4444-4444-444444444444. It carries no serial.
	pi3UUID = bytes.Repeat([]byte{0x44}, 16)
)

var piModels = map[string]string{
	"RPi4": "RPi4", "4iPR": "RPi4",
	"RPi5": "RPi5", "5iPR": "RPi5",
}

// ParsePiClientID parses option 97 as sent by a Pi 4 or 5. It returns an
// error for anything else, including the Pi 3's fixed UUID (see IsPi3ClientID).
func ParsePiClientID(b []byte) (PiClientID, error) {
	if len(b) != option97Len {
		return PiClientID{}, fmt.Errorf("%w: length %d, want %d", errNotPiClientID, len(b), option97Len)
	}
	if b[0] != 0 {
		return PiClientID{}, fmt.Errorf("%w: type byte %#x, want 0", errNotPiClientID, b[0])
	}
	model, ok := piModels[string(b[1:5])]
	if !ok {
		return PiClientID{}, fmt.Errorf("%w: model code %q", errNotPiClientID, b[1:5])
	}
	id := PiClientID{Model: model, BoardRev: binary.LittleEndian.Uint32(b[5:9])}
	copy(id.MACLow[:], b[9:13])
	id.Serial = fmt.Sprintf("%08x", binary.LittleEndian.Uint32(b[13:17]))
	return id, nil
}

// Bytes encodes the client id the way the bootloader does (model code in
// reading order). Tests and the udhcpc end-to-end test use it.
func (id PiClientID) Bytes() ([]byte, error) {
	if id.Model != "RPi4" && id.Model != "RPi5" {
		return nil, fmt.Errorf("model %q: want RPi4 or RPi5", id.Model)
	}
	var serial uint32
	if _, err := fmt.Sscanf(id.Serial, "%08x", &serial); err != nil || len(id.Serial) != 8 {
		return nil, fmt.Errorf("serial %q: want 8 hex digits", id.Serial)
	}
	b := make([]byte, option97Len)
	copy(b[1:5], id.Model)
	binary.LittleEndian.PutUint32(b[5:9], id.BoardRev)
	copy(b[9:13], id.MACLow[:])
	binary.LittleEndian.PutUint32(b[13:17], serial)
	return b, nil
}

// IsPi3ClientID reports whether option 97 is the Pi 3 bootloader's fixed UUID.
func IsPi3ClientID(b []byte) bool {
	return len(b) == option97Len && b[0] == 0 && bytes.Equal(b[1:], pi3UUID)
}
