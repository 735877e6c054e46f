package nfs

import (
	"testing"
)

// FuzzParseCall feeds arbitrary records to the call parser and the
// argument decoders of the procedures bakery answers itself.
func FuzzParseCall(f *testing.F) {
	f.Add(rawCall(1, progNFS, 3, procAccess, authSys, make([]byte, 12))[4:])
	f.Add(rawCall(2, progMount, 3, 1, authNull, []byte{0, 0, 0, 4, '/', 'm', 'n', 't'})[4:])
	sattr := &xdrWriter{}
	for _, v := range []uint32{1, 0o4755, 1, 0, 1, 0, 1} {
		sattr.u32(v)
	}
	sattr.u64(3)
	sattr.u32(2)
	sattr.u32(5)
	sattr.u32(6)
	sattr.u32(1)
	f.Add(rawCall(3, progNFS, 3, procSetattr, authSys, append([]byte{0, 0, 0, 2, 1, 1, 0, 0}, sattr.Bytes()...))[4:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, rec []byte) {
		c, err := parseCall(rec)
		if err != nil {
			return
		}
		r := &xdrReader{b: c.args}
		r.opaque(64)
		readSattr(r)
		r.u64()
		r = &xdrReader{b: c.args}
		r.opaque(64)
		r.opaque(1024)
		r.u32()
		readSattr(r)
		if len(c.gids) > 16 {
			t.Fatalf("%d groups", len(c.gids))
		}
	})
}
