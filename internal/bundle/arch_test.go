package bundle_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/bundle/bundletest"
	"github.com/bakeryhq/bakery/internal/fs"
)

func TestELFArch(t *testing.T) {
	for _, a := range []bundle.Arch{bundle.ArchARM64, bundle.ArchAMD64, bundle.ArchARMv6, bundle.ArchARMv7} {
		b := bundletest.ELF(a, "x")
		got, err := bundle.ELFArch(bytes.NewReader(b), int64(len(b)), "test")
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if got != a {
			t.Errorf("ELFArch(%s) = %s", a, got)
		}
	}
	if _, err := bundle.ELFArch(bytes.NewReader([]byte("#!/bin/sh\n")), 10, "script"); err == nil {
		t.Error("a shell script was taken for an ELF file")
	}
}

func TestVendorArchNames(t *testing.T) {
	cases := []struct {
		a                   bundle.Arch
		hashicorp, promethe string
	}{
		{bundle.ArchARM64, "arm64", "arm64"},
		{bundle.ArchAMD64, "amd64", "amd64"},
		{bundle.ArchARMv6, "arm", "armv6"},
		{bundle.ArchARMv7, "arm", "armv7"},
	}
	for _, c := range cases {
		if c.a.HashiCorp() != c.hashicorp || c.a.Prometheus() != c.promethe {
			t.Errorf("%s: HashiCorp %q Prometheus %q", c.a, c.a.HashiCorp(), c.a.Prometheus())
		}
	}
	if !bundle.Compatible(bundle.ArchARMv6, bundle.ArchARMv7) || bundle.Compatible(bundle.ArchARMv7, bundle.ArchARMv6) {
		t.Error("ARMv6 code runs on ARMv7, not the other way round")
	}
	for _, s := range []string{"arm64", "aarch64", "armhf", "armv7", "amd64", "x86_64"} {
		if _, err := bundle.ParseArch(s); err != nil {
			t.Error(err)
		}
	}
	if _, err := bundle.ParseArch("riscv64"); err == nil {
		t.Error("riscv64 accepted")
	}
}

func TestDetectArchFollowsSymlinks(t *testing.T) {
	for _, a := range []bundle.Arch{bundle.ArchARM64, bundle.ArchARMv7} {
		root, _ := ext4Root(t, debianTree(t, a))
		got, err := bundle.DetectArch(root)
		if err != nil {
			t.Fatal(err)
		}
		if got != a {
			t.Errorf("DetectArch = %s, want %s", got, a)
		}
	}
}

func TestDetectArchWithoutShell(t *testing.T) {
	root, _ := ext4Root(t, t.TempDir())
	_, err := bundle.DetectArch(root)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("want a clear error, got %v", err)
	}
}

// TestArchErrorTarget: the message names what asked for the architecture,
// the image by default, --arch when bakery pkg sets it.
func TestArchErrorTarget(t *testing.T) {
	e := &bundle.ArchError{What: "consul", Got: bundle.ArchAMD64, Want: bundle.ArchARMv6}
	if got, want := e.Error(), "consul is built for amd64, but the image is armhf (ARMv6): use the release for armhf (ARMv6)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	e.Target = "--arch"
	if got, want := e.Error(), "consul is built for amd64, but --arch is armhf (ARMv6): use the release for armhf (ARMv6)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
