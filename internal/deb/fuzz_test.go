package deb_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"path"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/deb"
)

// FuzzParse feeds arbitrary bytes to the .deb reader (ar members,
// control.tar, the control paragraph): it must fail cleanly, never panic
// or read without bound.
func FuzzParse(f *testing.F) {
	f.Add(craftDeb(f, testControl, []entry{{name: "./usr/bin/x", typ: tar.TypeReg, body: "x"}}))
	f.Add(craftDeb(f, "Package: a\nVersion: 1:2.0-1\nArchitecture: arm64\nMulti-Arch: same\nDescription: x\n y\n", nil))
	f.Add([]byte("!<arch>\ndebian-binary   0           0     0     100644  4         `\n2.0\n"))
	f.Add([]byte("!<arch>\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := deb.Parse(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		if p.Name() == "" || p.Version() == "" || p.Architecture() == "" {
			t.Fatalf("parsed a package without name, version or architecture: %+v", p.Control)
		}
		p.Conffiles()
		p.InfoName()
		// Reading the data (as the validate-time secret scan does) must
		// fail cleanly too, and name only paths inside the root.
		p.WalkFiles(context.Background(), func(name string, size int64, r io.Reader) error {
			if !strings.HasPrefix(name, "/") || path.Clean(name) != name {
				t.Fatalf("WalkFiles named %q", name)
			}
			_, err := io.Copy(io.Discard, r)
			return err
		})
	})
}

// FuzzParagraphs checks the deb822 parser (control files, the status
// file) and that rendering a parsed paragraph parses back the same.
func FuzzParagraphs(f *testing.F) {
	f.Add([]byte(baseStatus))
	f.Add([]byte("Package: a\nConffiles:\n /etc/a 0123\n /etc/b newconffile\n"))
	f.Add([]byte("A: b\n\n\nC: d\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		paras, err := deb.ParseParagraphs(b)
		if err != nil {
			return
		}
		for _, p := range paras {
			again, err := deb.ParseParagraph(p.Bytes())
			if err != nil {
				t.Fatalf("rendered paragraph does not parse: %v\n%q", err, p.Bytes())
			}
			for _, fld := range p.Fields {
				if strings.TrimSpace(again.Get(fld.Name)) != strings.TrimSpace(fld.Value) {
					t.Fatalf("field %s changed: %q -> %q", fld.Name, fld.Value, again.Get(fld.Name))
				}
			}
		}
	})
}

// FuzzCleanName checks that no member name leaves the root.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"./usr/bin/x", "../etc", "/abs", "./", "a/../../b", "a//b/./c", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		p, err := deb.CleanName(name)
		if err != nil {
			return
		}
		if !strings.HasPrefix(p, "/") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/..") || strings.ContainsRune(p, 0) {
			t.Fatalf("CleanName(%q) = %q", name, p)
		}
	})
}
