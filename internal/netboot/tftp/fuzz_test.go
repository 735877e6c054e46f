package tftp

import (
	"strings"
	"testing"
)

// FuzzParsePath checks that no accepted name can leave the boot files: the
// file part never has "." or ".." components, a leading slash, backslashes
// or control bytes, and the prefix is a normalised serial or MAC.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"start4.elf", "3a7f91c2/start4.elf", "100000003A7F91C2/overlays/x.dtbo",
		"dc-a6-32-01-02-03/config.txt", "../x", "/etc/passwd", "a\\b", "a\x00b", "3a7f91c2/../../x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p, err := ParsePath(name)
		if err != nil {
			return
		}
		if p.File == "" || strings.HasPrefix(p.File, "/") || strings.ContainsAny(p.File, "\\\x00") {
			t.Fatalf("ParsePath(%q) accepted file %q", name, p.File)
		}
		for _, c := range strings.Split(p.File, "/") {
			if c == "" || c == "." || c == ".." {
				t.Fatalf("ParsePath(%q) accepted component %q", name, c)
			}
		}
		if p.Serial != "" && (len(p.Serial) != 8 || strings.ToLower(p.Serial) != p.Serial) {
			t.Fatalf("serial %q", p.Serial)
		}
		if p.Serial != "" && p.MAC != "" {
			t.Fatal("both prefixes")
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("\x00\x01a/b\x00octet\x00tsize\x000\x00blksize\x001024\x00"))
	f.Add([]byte("\x00\x02x\x00netascii\x00"))
	f.Add([]byte("\x00\x01x\x00octet\x00windowsize\x0065535\x00timeout\x00255\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rq, err := ParseRequest(b)
		if err != nil {
			return
		}
		n := Negotiate(rq.Options, 1468, 64)
		if n.BlockSize < MinBlockSize || n.BlockSize > 1468 || n.WindowSize < 1 || n.WindowSize > 64 {
			t.Fatalf("negotiated %+v from %q", n, b)
		}
		if len(n.oack(1<<40)) > 512 {
			t.Fatalf("OACK too long")
		}
	})
}
