package step

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
)

// IDs derives every identifier a build invents (partition and filesystem
// UUIDs, NetworkManager connection UUIDs, the cloud-init instance-id) from
// what the build is made of: the spec (with its variables) and the base
// image, and, for identifiers that must change with file contents (the
// instance-id), the contents of the spec's source files too (WithSources).
// The same inputs give the same identifiers, so builds are byte-for-byte
// reproducible; a change in the inputs gives new ones.
type IDs struct {
	seed [32]byte
}

// NewIDs makes an ID source from the spec's digest and the base image's
// identity (its checksum).
func NewIDs(specDigest [32]byte, base string) *IDs {
	h := sha256.New()
	h.Write([]byte("bakery build ids v1\x00"))
	h.Write(specDigest[:])
	h.Write([]byte("\x00" + base))
	var ids IDs
	copy(ids.seed[:], h.Sum(nil))
	return &ids
}

// WithSources derives an ID source that also depends on the contents of
// the source files (path as the spec names it -> SHA-256 of the content).
func (i *IDs) WithSources(sources map[string][32]byte) *IDs {
	h := sha256.New()
	h.Write(i.seed[:])
	names := make([]string, 0, len(sources))
	for n := range sources {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sum := sources[n]
		fmt.Fprintf(h, "%d:%s", len(n), n)
		h.Write(sum[:])
	}
	var out IDs
	copy(out.seed[:], h.Sum(nil))
	return &out
}

// Bytes returns 32 bytes for purpose.
func (i *IDs) Bytes(purpose string) [32]byte {
	m := hmac.New(sha256.New, i.seed[:])
	m.Write([]byte(purpose))
	var out [32]byte
	copy(out[:], m.Sum(nil))
	return out
}

// UUID returns a random-looking (version 4 layout) UUID for purpose.
func (i *IDs) UUID(purpose string) [16]byte {
	b := i.Bytes(purpose)
	var u [16]byte
	copy(u[:], b[:16])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// UUIDString is UUID formatted lower-case with dashes.
func (i *IDs) UUIDString(purpose string) string { return FormatUUID(i.UUID(purpose)) }

// Hex returns n hex digits for purpose.
func (i *IDs) Hex(purpose string, n int) string {
	b := i.Bytes(purpose)
	s := hex.EncodeToString(b[:])
	return s[:min(n, len(s))]
}

// Uint32 returns a number for purpose (MBR disk ids, FAT serials).
func (i *IDs) Uint32(purpose string) uint32 {
	b := i.Bytes(purpose)
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// FormatUUID formats 16 bytes as a lower-case UUID.
func FormatUUID(u [16]byte) string {
	s := hex.EncodeToString(u[:])
	return strings.Join([]string{s[:8], s[8:12], s[12:16], s[16:20], s[20:]}, "-")
}
