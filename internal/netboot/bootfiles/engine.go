package bootfiles

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/image"
)

// EngineOpener opens an image read-only with bakery's image engine.
func EngineOpener(path string) (Image, error) {
	im, err := image.Open(path, image.Options{})
	if err != nil {
		return nil, err
	}
	return engineImage{im}, nil
}

type engineImage struct{ im *image.Image }

func (e engineImage) Filesystem(part string) (fs.Filesystem, error) { return e.im.Role(part) }
func (e engineImage) Close() error                                  { return e.im.Close() }

// Kinds of netboot image.
const (
	KindPi    = "pi"
	KindPXE   = "pxe"
	KindPiPXE = "pi+pxe"
)

// Info is what validation learned about an image.
type Info struct {
	BootFiles []string
	Kind      string
	Kernel    string // Location string, for iPXE
	Initrd    string
}

// ErrNotBootable is wrapped by Inspect for images that cannot netboot.
var ErrNotBootable = errors.New("image cannot netboot")

// Inspect validates an image file for netboot: a sane partition table and a
// FAT boot partition with Raspberry Pi boot files, or a kernel (in the boot
// partition or the root's /boot) for iPXE clients.
func Inspect(imgPath string) (Info, error) {
	im, err := image.Open(imgPath, image.Options{})
	if err != nil {
		return Info{}, fmt.Errorf("%w: not a readable disk image: %v", ErrNotBootable, err)
	}
	defer im.Close()
	if len(im.Partitions) == 0 {
		return Info{}, fmt.Errorf("%w: no partitions", ErrNotBootable)
	}
	if err := im.Table.Validate(im.Disk.Size()); err != nil {
		return Info{}, fmt.Errorf("%w: partition table: %v", ErrNotBootable, err)
	}
	return InspectImage(engineImage{im})
}

// InspectImage does the file checks of Inspect on an opened image.
func InspectImage(im Image) (Info, error) {
	var info Info
	boot, bootErr := im.Filesystem(PartBoot)
	root, _ := im.Filesystem(PartRoot)
	pi := false
	if bootErr == nil {
		if !strings.HasPrefix(boot.Type(), "fat") {
			return Info{}, fmt.Errorf("%w: boot partition is %s, not FAT", ErrNotBootable, boot.Type())
		}
		entries, err := boot.ReadDir("/")
		if err != nil {
			return Info{}, fmt.Errorf("%w: boot partition: %v", ErrNotBootable, err)
		}
		for _, e := range entries {
			name := strings.ToLower(e.Name)
			switch {
			case e.IsDir() && name == "overlays":
				info.BootFiles = append(info.BootFiles, e.Name+"/")
			case !e.IsRegular():
			case isPiFirmware(name):
				pi = true
				info.BootFiles = append(info.BootFiles, e.Name)
			case isBootFile(name):
				info.BootFiles = append(info.BootFiles, e.Name)
			}
		}
		sort.Strings(info.BootFiles)
	}
	if k, i := findKernel(boot, PartBoot, "/"); k != "" {
		info.Kernel, info.Initrd = k, i
	} else if k, i := findKernel(root, PartRoot, "/boot"); k != "" {
		info.Kernel, info.Initrd = k, i
	} else if k, i := findKernel(root, PartRoot, "/"); k != "" {
		info.Kernel, info.Initrd = k, i
	}
	switch {
	case pi && info.Kernel != "":
		info.Kind = KindPiPXE
	case pi:
		info.Kind = KindPi
	case info.Kernel != "":
		info.Kind = KindPXE
	case bootErr != nil:
		return Info{}, fmt.Errorf("%w: no FAT boot partition with config.txt, cmdline.txt or EFI, and no kernel in the root's /boot", ErrNotBootable)
	default:
		return Info{}, fmt.Errorf("%w: boot partition has no Raspberry Pi boot files (start*.elf, bootcode.bin, kernel*.img) and no kernel was found", ErrNotBootable)
	}
	return info, nil
}

// isPiFirmware matches the files that make a Pi boot partition.
func isPiFirmware(name string) bool {
	switch {
	case name == "bootcode.bin", name == "config.txt":
		return true
	case strings.HasPrefix(name, "start") && strings.HasSuffix(name, ".elf"):
		return true
	case strings.HasPrefix(name, "kernel") && strings.HasSuffix(name, ".img"):
		return true
	}
	return false
}

func isBootFile(name string) bool {
	for _, p := range []string{"fixup", "cmdline.txt", "initramfs", "initrd", "vmlinuz", "image", "bcm27", "bcm28"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return strings.HasSuffix(name, ".dtb")
}

// findKernel looks for a Linux kernel and its initrd in dir of f, preferring
// the unversioned links distributions keep (vmlinuz, initrd.img) and else
// the highest version.
func findKernel(f fs.Filesystem, part, dir string) (kernel, initrd string) {
	if f == nil {
		return "", ""
	}
	entries, err := f.ReadDir(dir)
	if err != nil {
		return "", ""
	}
	names := map[string]bool{}
	var versioned []string
	for _, e := range entries {
		names[e.Name] = true
		if strings.HasPrefix(e.Name, "vmlinuz-") {
			versioned = append(versioned, e.Name)
		}
	}
	loc := func(name string) string {
		// Stat follows links such as /boot/vmlinuz -> vmlinuz-6.1.0-18-amd64.
		p := path.Join(dir, name)
		if fi, err := f.Stat(p); err != nil || !fi.IsRegular() {
			return ""
		}
		return Location{Part: part, Path: p}.String()
	}
	for _, k := range []string{"vmlinuz", "Image", "bzImage"} {
		if names[k] {
			if kernel = loc(k); kernel != "" {
				for _, i := range []string{"initrd.img", "initrd", "initramfs.img"} {
					if names[i] {
						if initrd = loc(i); initrd != "" {
							break
						}
					}
				}
				return kernel, initrd
			}
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(versioned)))
	for _, k := range versioned {
		if kernel = loc(k); kernel == "" {
			continue
		}
		ver := strings.TrimPrefix(k, "vmlinuz-")
		for _, i := range []string{"initrd.img-" + ver, "initramfs-" + ver + ".img", "initrd-" + ver} {
			if names[i] {
				if initrd = loc(i); initrd != "" {
					break
				}
			}
		}
		return kernel, initrd
	}
	return "", ""
}
