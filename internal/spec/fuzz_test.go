package spec

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// FuzzParse runs arbitrary text through the whole decoder: every block's
// decoding and checks must report problems, never panic, and give the same
// diagnostics twice.
func FuzzParse(f *testing.F) {
	paths, _ := filepath.Glob("testdata/*.hcl")
	more, _ := filepath.Glob("../../examples/*.hcl")
	for _, p := range append(paths, more...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`keyboard = { layout = 1 }` + "\nlayout {\n  root_size = -1\n  grow = null\n}\n"))
	f.Add([]byte("user \"a\" {\n  uid = 1e30\n  groups = [null]\n}\nfile \"/x\" {\n  mode = true\n  content = [1]\n}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, src []byte) {
		in := Inputs{Dir: dir, Vars: map[string]string{"wifi_psk": "fuzz-secret-1"}}
		s, d1 := Parse(context.Background(), "fuzz.hcl", src, in)
		if s == nil {
			t.Fatal("nil spec")
		}
		_, d2 := Parse(context.Background(), "fuzz.hcl", src, in)
		if !slices.Equal(diagLines(d1, ""), diagLines(d2, "")) {
			t.Fatalf("diagnostics differ between two runs:\n%q\n%q", diagLines(d1, ""), diagLines(d2, ""))
		}
		_ = s.String()
		Format("fuzz.hcl", src)
	})
}
