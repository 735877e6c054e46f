package bmap

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// FuzzParse feeds mutated .bmap documents to the parser. Whatever it
// accepts must be internally consistent, and a map with checksums must
// survive Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.bmap"))
	for _, name := range files {
		f.Add(readFile(f, name))
	}
	// A fresh bmaptool-made file, when bmaptool is installed.
	if _, err := exec.LookPath("bmaptool"); err == nil {
		img := smallImage(f)
		out := filepath.Join(f.TempDir(), "fresh.bmap")
		if exec.Command("bmaptool", "create", "-o", out, img).Run() == nil {
			if b, err := os.ReadFile(out); err == nil {
				f.Add(b)
			}
		}
	}
	f.Add([]byte(`<bmap version="1.0"><ImageSize>512</ImageSize><BlockSize>512</BlockSize><BlocksCount>1</BlocksCount><MappedBlocksCount>1</MappedBlocksCount><BlockMap><Range>0</Range></BlockMap></bmap>`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if b, err := ParseBytes(data); err == nil {
			if err := b.Validate(); err != nil {
				t.Fatalf("accepted an invalid map: %v", err)
			}
		}
		// Most mutations break the file checksum; check the rest of the
		// parser on them too.
		raw, err := scan(data)
		if err != nil {
			return
		}
		b, err := interpret(raw)
		if err != nil || b.Validate() != nil {
			return
		}
		var total int64
		for _, r := range b.Ranges {
			br := b.ByteRange(r)
			if br.Off < 0 || br.Len <= 0 || br.End() > b.ImageSize {
				t.Fatalf("range %+v maps bytes %+v outside the %d-byte image", r, br, b.ImageSize)
			}
			total += br.Len
		}
		if total != b.MappedBytes() {
			t.Fatal("MappedBytes disagrees with the ranges")
		}
		if !b.HasChecksums() {
			return
		}
		out, err := b.Marshal()
		if err != nil {
			t.Fatalf("marshal of an accepted map: %v", err)
		}
		again, err := ParseBytes(out)
		if err != nil {
			t.Fatalf("re-parse of our own output: %v\n%s", err, out)
		}
		if len(again.Ranges) != len(b.Ranges) || again.ImageSize != b.ImageSize || again.BlockSize != b.BlockSize {
			t.Fatal("marshal/parse round trip changed the map")
		}
		for i := range b.Ranges {
			if again.Ranges[i] != b.Ranges[i] {
				t.Fatalf("range %d changed: %+v -> %+v", i, b.Ranges[i], again.Ranges[i])
			}
		}
	})
}
