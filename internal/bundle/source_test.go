package bundle_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/bundle/bundletest"
	"github.com/bakeryhq/bakery/internal/fetch"
)

func newSource(t *testing.T) *bundle.Source {
	return &bundle.Source{Cache: &fetch.Fetcher{CacheDir: t.TempDir(), MaxAttempts: 1}}
}

func TestEmbeddedHashiCorpKey(t *testing.T) {
	kr, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(bundle.HashiCorpKey()))
	if err != nil {
		t.Fatal(err)
	}
	if len(kr) != 1 {
		t.Fatalf("%d keys, want 1", len(kr))
	}
	if got := fmt.Sprintf("%X", kr[0].PrimaryKey.Fingerprint); got != bundle.HashiCorpFingerprint {
		t.Fatalf("fingerprint %s, want %s", got, bundle.HashiCorpFingerprint)
	}
	if kr[0].PrimaryKey.KeyIdString() != "34365D9472D7468F" {
		t.Fatalf("key id %s", kr[0].PrimaryKey.KeyIdString())
	}
}

func TestFetchHashiCorpAndPrometheus(t *testing.T) {
	m := bundletest.NewMirror(t)
	m.Release(t, "consul", "1.20.1", []bundle.Arch{bundle.ArchARM64, bundle.ArchAMD64, bundle.ArchARMv6}, nil)
	m.Release(t, "node_exporter", "1.8.2", []bundle.Arch{bundle.ArchARM64, bundle.ArchARMv6, bundle.ArchARMv7}, nil)
	src := newSource(t)
	ctx := context.Background()
	for _, c := range []struct {
		set  bundle.Settings
		arch bundle.Arch
		file string
	}{
		{bundle.Settings{Name: "consul", Version: "1.20.1"}, bundle.ArchARM64, "consul_1.20.1_linux_arm64.zip"},
		{bundle.Settings{Name: "consul", Version: "1.20.1"}, bundle.ArchARMv7, "consul_1.20.1_linux_arm.zip"},
		{bundle.Settings{Name: "node_exporter", Version: "1.8.2"}, bundle.ArchARMv7, "node_exporter-1.8.2.linux-armv7.tar.gz"},
		{bundle.Settings{Name: "node_exporter", Version: "1.8.2"}, bundle.ArchARMv6, "node_exporter-1.8.2.linux-armv6.tar.gz"},
	} {
		c.set.Mirror = m.Template()
		c.set.PGPKey = m.Key.Armored
		art, err := src.Fetch(ctx, c.set, c.arch)
		if err != nil {
			t.Fatalf("%s %s: %v", c.set.Name, c.arch, err)
		}
		if art.Files.Archive != c.file {
			t.Errorf("archive %s, want %s", art.Files.Archive, c.file)
		}
		b, err := os.ReadFile(art.BinaryPath)
		if err != nil || !bytes.HasPrefix(b, []byte("\x7fELF")) {
			t.Fatalf("binary %s: %v", art.BinaryPath, err)
		}
		if c.set.Name == "consul" && !strings.Contains(art.Signer, "Test Releases") {
			t.Errorf("signer %q", art.Signer)
		}
	}
	// A second fetch is served from the cache: the archive is not
	// downloaded again (the small checksum files are).
	set := bundle.Settings{Name: "consul", Version: "1.20.1", Mirror: m.Template(), PGPKey: m.Key.Armored}
	if _, err := src.Fetch(ctx, set, bundle.ArchARM64); err != nil {
		t.Fatal(err)
	}
	if n := m.Count("consul", "1.20.1", "consul_1.20.1_linux_arm64.zip"); n != 1 {
		t.Errorf("archive downloaded %d times, want 1", n)
	}
}

func TestFetchRefusesChecksumMismatch(t *testing.T) {
	m := bundletest.NewMirror(t)
	m.Release(t, "nomad", "1.9.3", []bundle.Arch{bundle.ArchARM64}, nil)
	zip := m.Get("nomad", "1.9.3", "nomad_1.9.3_linux_arm64.zip")
	bad := append(bytes.Clone(zip[:len(zip)-1]), zip[len(zip)-1]^0xff)
	m.Put("nomad", "1.9.3", "nomad_1.9.3_linux_arm64.zip", bad)
	_, err := newSource(t).Fetch(context.Background(), bundle.Settings{Name: "nomad", Version: "1.9.3", Mirror: m.Template(), PGPKey: m.Key.Armored}, bundle.ArchARM64)
	var ce *fetch.ChecksumError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "checksum mismatch") || !strings.Contains(err.Error(), "nomad_1.9.3_linux_arm64.zip") {
		t.Fatalf("want a checksum mismatch naming the archive, got %v", err)
	}
}

func TestFetchRefusesBadSignature(t *testing.T) {
	m := bundletest.NewMirror(t)
	m.Release(t, "consul", "1.20.1", []bundle.Arch{bundle.ArchARM64}, nil)
	set := bundle.Settings{Name: "consul", Version: "1.20.1", Mirror: m.Template()}

	// The embedded HashiCorp key did not sign the test release.
	_, err := newSource(t).Fetch(context.Background(), set, bundle.ArchARM64)
	var ve *bundle.VerifyError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("want a signature error, got %v", err)
	}

	// Checksums altered after signing.
	sums := m.Get("consul", "1.20.1", "consul_1.20.1_SHA256SUMS")
	m.Put("consul", "1.20.1", "consul_1.20.1_SHA256SUMS", append(bytes.Clone(sums), []byte("0000000000000000000000000000000000000000000000000000000000000000  evil.zip\n")...))
	set.PGPKey = m.Key.Armored
	_, err = newSource(t).Fetch(context.Background(), set, bundle.ArchARM64)
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("want a verification failure, got %v", err)
	}

	// Signed by another key.
	other := bundletest.NewKey(t, "Mallory")
	m.Put("consul", "1.20.1", "consul_1.20.1_SHA256SUMS", sums)
	m.Put("consul", "1.20.1", "consul_1.20.1_SHA256SUMS.sig", other.Sign(t, sums))
	_, err = newSource(t).Fetch(context.Background(), set, bundle.ArchARM64)
	if !errors.As(err, &ve) {
		t.Fatalf("want a signature error, got %v", err)
	}
	// The missing signature is an error too, never a skipped check.
	m.Put("consul", "1.20.1", "consul_1.20.1_SHA256SUMS.sig", nil)
	if _, err := newSource(t).Fetch(context.Background(), set, bundle.ArchARM64); err == nil {
		t.Fatal("an empty signature was accepted")
	}
}

func TestFetchRefusesWrongArchitecture(t *testing.T) {
	m := bundletest.NewMirror(t)
	// The mirror serves amd64 binaries under the arm64 name.
	m.Release(t, "prometheus", "3.0.1", []bundle.Arch{bundle.ArchARM64}, func(bundle.Arch) bundle.Arch { return bundle.ArchAMD64 })
	_, err := newSource(t).Fetch(context.Background(), bundle.Settings{Name: "prometheus", Version: "3.0.1", Mirror: m.Template()}, bundle.ArchARM64)
	var ae *bundle.ArchError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "built for amd64, but the image is arm64") {
		t.Fatalf("want an architecture error, got %v", err)
	}
	// ARMv7 code on an ARMv6 Pi Zero.
	m.Release(t, "node_exporter", "1.8.2", []bundle.Arch{bundle.ArchARMv6}, func(bundle.Arch) bundle.Arch { return bundle.ArchARMv7 })
	_, err = newSource(t).Fetch(context.Background(), bundle.Settings{Name: "node_exporter", Version: "1.8.2", Mirror: m.Template()}, bundle.ArchARMv6)
	if !errors.As(err, &ae) {
		t.Fatalf("want an architecture error, got %v", err)
	}
}

func TestFetchMissingEntryAndVersion(t *testing.T) {
	m := bundletest.NewMirror(t)
	m.Release(t, "consul", "1.20.1", []bundle.Arch{bundle.ArchAMD64}, nil)
	_, err := newSource(t).Fetch(context.Background(), bundle.Settings{Name: "consul", Version: "1.20.1", Mirror: m.Template(), PGPKey: m.Key.Armored}, bundle.ArchARM64)
	if err == nil || !strings.Contains(err.Error(), "no checksum for consul_1.20.1_linux_arm64.zip") {
		t.Fatalf("got %v", err)
	}
	_, err = newSource(t).Fetch(context.Background(), bundle.Settings{Name: "consul", Version: "9.9.9", Mirror: m.Template()}, bundle.ArchARM64)
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("got %v", err)
	}
	_, err = newSource(t).Fetch(context.Background(), bundle.Settings{Name: "consul", Version: "v1.2.3"}, bundle.ArchARM64)
	if err == nil || !strings.Contains(err.Error(), "without the leading v") {
		t.Fatalf("got %v", err)
	}
}

func TestLookupSum(t *testing.T) {
	sums := []byte("abc  x\n" + strings.Repeat("a", 64) + " *consul.zip\n")
	if h, err := bundle.LookupSum(sums, "consul.zip"); err != nil || h != strings.Repeat("a", 64) {
		t.Fatalf("%q %v", h, err)
	}
	if _, err := bundle.LookupSum([]byte("abc  x\n"), "x"); err == nil {
		t.Fatal("a short hash was accepted")
	}
}
