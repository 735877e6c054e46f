package deb_test

import (
	"context"
	"io"
	iofs "io/fs"
	"testing"

	"github.com/bakeryhq/bakery/internal/deb"
)

func TestWalkFiles(t *testing.T) {
	path := dpkgDebBuild(t, "xz", map[string]string{
		"DEBIAN/control":   "Package: walk\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@example.com>\nDescription: test\n",
		"etc/walk.conf":    "a = 1\n",
		"usr/bin/walk":     "#!/bin/sh\n",
		"usr/share/doc/ok": "",
	}, nil, map[string]string{"usr/bin/walk-link": "walk"})
	p, f, err := deb.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]string{}
	err = p.WalkFiles(context.Background(), func(name string, size int64, r io.Reader) error {
		b, err := io.ReadAll(r)
		if int64(len(b)) != size {
			t.Errorf("%s: read %d bytes, size %d", name, len(b), size)
		}
		got[name] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Regular files only: no directories, no symlink, no control files.
	want := map[string]string{"/etc/walk.conf": "a = 1\n", "/usr/bin/walk": "#!/bin/sh\n", "/usr/share/doc/ok": ""}
	if len(got) != len(want) {
		t.Errorf("files: %q", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	// SkipAll stops the walk without an error.
	n := 0
	err = p.WalkFiles(context.Background(), func(string, int64, io.Reader) error { n++; return iofs.SkipAll })
	if err != nil || n != 1 {
		t.Errorf("SkipAll: %d calls, %v", n, err)
	}
	// A cancelled context stops it.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.WalkFiles(ctx, func(string, int64, io.Reader) error { return nil }); err == nil {
		t.Error("cancelled walk succeeded")
	}
}
