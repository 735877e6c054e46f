package bundle

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/bakeryhq/bakery/internal/fs"
)

// Arch is a target CPU architecture in Debian's terms, with the ARM
// architecture version for 32-bit ARM: Raspberry Pi OS's armhf is ARMv6
// (Pi Zero and 1), Debian's armhf is ARMv7.
type Arch struct {
	// Name is "arm64", "armhf" or "amd64".
	Name string
	// ARM is 6 or 7 for armhf, 0 otherwise.
	ARM int
}

// The architectures bakery installs bundles for.
var (
	ArchARM64 = Arch{Name: "arm64"}
	ArchAMD64 = Arch{Name: "amd64"}
	ArchARMv6 = Arch{Name: "armhf", ARM: 6}
	ArchARMv7 = Arch{Name: "armhf", ARM: 7}
)

func (a Arch) String() string {
	if a.Name == "armhf" {
		return fmt.Sprintf("armhf (ARMv%d)", a.ARM)
	}
	return a.Name
}

// HashiCorp is the architecture in HashiCorp's release file names. Their
// 32-bit ARM builds ("arm") are ARMv6 hard-float and run on both.
func (a Arch) HashiCorp() string {
	if a.Name == "armhf" {
		return "arm"
	}
	return a.Name
}

// Prometheus is the architecture in Prometheus' release file names, which
// distinguish armv6 from armv7.
func (a Arch) Prometheus() string {
	if a.Name == "armhf" {
		if a.ARM >= 7 {
			return "armv7"
		}
		return "armv6"
	}
	return a.Name
}

// Debian is the Debian architecture (also the one nfpm uses for deb).
func (a Arch) Debian() string { return a.Name }

// GOARCH is Go's name for the architecture.
func (a Arch) GOARCH() string {
	if a.Name == "armhf" {
		return "arm"
	}
	return a.Name
}

// ParseArch accepts Debian names (arm64, armhf, amd64), the variants armv6
// and armv7, and the kernel's names (aarch64, x86_64). A bare armhf means
// ARMv6, which runs on every 32-bit Pi.
func ParseArch(s string) (Arch, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "arm64", "aarch64":
		return ArchARM64, nil
	case "amd64", "x86_64":
		return ArchAMD64, nil
	case "armhf", "arm", "armv6", "armv6l", "armv6hf":
		return ArchARMv6, nil
	case "armv7", "armv7l", "armv7hf":
		return ArchARMv7, nil
	}
	return Arch{}, fmt.Errorf("architecture %q: want arm64, armhf (or armv6, armv7) or amd64", s)
}

// maxELFBytes bounds how much of an ELF file we are willing to parse.
const maxELFBytes = 512 << 20

// ArchError reports an ELF file for another architecture than expected.
type ArchError struct {
	What string // the file
	Got  Arch
	Want Arch
	// Target says where Want comes from, completing "but … is Want":
	// empty means the image being built; bakery pkg sets "--arch".
	Target string
}

func (e *ArchError) Error() string {
	target := e.Target
	if target == "" {
		target = "the image"
	}
	return fmt.Sprintf("%s is built for %s, but %s is %s: use the release for %s", e.What, e.Got, target, e.Want, e.Want)
}

// ELFArch reads the architecture of an ELF file. For 32-bit ARM it reads
// the build attributes (Tag_CPU_arch in .ARM.attributes) to tell ARMv6
// from ARMv7; without them (Go binaries) it reports ARMv6, the lowest.
func ELFArch(r io.ReaderAt, size int64, what string) (Arch, error) {
	if size > maxELFBytes {
		size = maxELFBytes
	}
	f, err := elf.NewFile(io.NewSectionReader(r, 0, size))
	if err != nil {
		return Arch{}, fmt.Errorf("%s is not an ELF executable: %w", what, err)
	}
	defer f.Close()
	switch {
	case f.Machine == elf.EM_AARCH64 && f.Class == elf.ELFCLASS64:
		return ArchARM64, nil
	case f.Machine == elf.EM_X86_64 && f.Class == elf.ELFCLASS64:
		return ArchAMD64, nil
	case f.Machine == elf.EM_ARM && f.Class == elf.ELFCLASS32:
		a := ArchARMv6
		if v := armCPUArch(f); v >= 10 { // 10 = ARMv7
			a = ArchARMv7
		}
		return a, nil
	}
	return Arch{}, fmt.Errorf("%s is an ELF file for %s (%s), which bakery does not support (want arm64, armhf or amd64)", what, f.Machine, f.Class)
}

// armCPUArch returns Tag_CPU_arch from the "aeabi" subsection of
// .ARM.attributes, or -1. Values: 6 = ARMv6, 7 = ARMv6KZ, 9 = ARMv6K,
// 10 = ARMv7, 14 = ARMv8.
func armCPUArch(f *elf.File) int {
	sec := f.Section(".ARM.attributes")
	if sec == nil || sec.Size > 1<<16 {
		return -1
	}
	data, err := sec.Data()
	if err != nil || len(data) < 1 || data[0] != 'A' {
		return -1
	}
	data = data[1:]
	for len(data) >= 4 {
		n := int(binary.LittleEndian.Uint32(data))
		if n < 4 || n > len(data) {
			return -1
		}
		sub := data[4:n]
		data = data[n:]
		name, rest, ok := bytes.Cut(sub, []byte{0})
		if !ok || string(name) != "aeabi" {
			continue
		}
		// Tag_File (1), size, then attributes.
		if len(rest) < 5 || rest[0] != 1 {
			return -1
		}
		attrs := rest[5:]
		for len(attrs) > 0 {
			tag, n := uleb(attrs)
			if n == 0 {
				return -1
			}
			attrs = attrs[n:]
			if tag == 4 || tag == 5 || tag == 67 { // NTBS-valued
				_, after, ok := bytes.Cut(attrs, []byte{0})
				if !ok {
					return -1
				}
				attrs = after
				continue
			}
			v, n := uleb(attrs)
			if n == 0 {
				return -1
			}
			attrs = attrs[n:]
			if tag == 6 {
				return int(v)
			}
		}
	}
	return -1
}

func uleb(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1
		}
	}
	return 0, 0
}

// DetectArch finds an image's architecture from the ELF header of its
// /bin/sh, following the symlink chain inside the image (/bin/sh -> dash,
// /bin -> usr/bin on merged-/usr systems) without leaving its root.
func DetectArch(root fs.Filesystem) (Arch, error) {
	for _, p := range []string{"/bin/sh", "/usr/bin/sh", "/bin/busybox"} {
		fh, err := root.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Arch{}, fmt.Errorf("detect the image's architecture: %w", err)
		}
		a, err := ELFArch(fh, fh.Size(), "the image's "+p)
		fh.Close()
		return a, err
	}
	return Arch{}, errors.New("detect the image's architecture: the root filesystem has no /bin/sh")
}

// Compatible reports whether a binary for have runs on want: exactly the
// same architecture, or ARMv6 code on an ARMv7 system.
func Compatible(have, want Arch) bool {
	if have.Name != want.Name {
		return false
	}
	return have.Name != "armhf" || have.ARM <= want.ARM
}
