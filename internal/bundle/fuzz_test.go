package bundle_test

import (
	"bytes"
	"encoding/hex"
	"testing"

	"github.com/bakeryhq/bakery/internal/bundle"
	"github.com/bakeryhq/bakery/internal/bundle/bundletest"
)

// FuzzELFArch reads the architecture of whatever /bin/sh an image holds:
// errors are fine, panics are not.
func FuzzELFArch(f *testing.F) {
	for _, a := range []bundle.Arch{bundle.ArchARM64, bundle.ArchARMv7, bundle.ArchARMv6, bundle.ArchAMD64} {
		f.Add(bundletest.ELF(a, "sh"))
	}
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		bundle.ELFArch(bytes.NewReader(data), int64(len(data)), "/bin/sh")
	})
}

// FuzzLookupSum parses downloaded SHA256SUMS files: a sum it returns is
// always 64 lower-case hex digits.
func FuzzLookupSum(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef  consul_1.20.1_linux_arm64.zip\n"), "consul_1.20.1_linux_arm64.zip")
	f.Add([]byte("XYZ *./a\n\n  \n"), "a")
	f.Fuzz(func(t *testing.T, sums []byte, file string) {
		sum, err := bundle.LookupSum(sums, file)
		if err != nil {
			return
		}
		if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 || hex.EncodeToString(b) != sum {
			t.Fatalf("LookupSum returned %q", sum)
		}
	})
}
