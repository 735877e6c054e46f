// Package image ties a disk, its partition table and the filesystems inside
// together, and knows which partition is the boot and which the root.
// UsedRanges lists the bytes of the whole disk that flashing must write
// even where the image file has holes (partition table structures plus
// each filesystem's fs.UsedMapper extents).
package image

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode"

	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/fs/ext4"
	"github.com/bakeryhq/bakery/internal/fs/fat"
)

// Partition roles.
const (
	RoleBoot = "boot"
	RoleRoot = "root"
)

// Filesystem family names as reported by Probe before a filesystem is opened.
const (
	FSExt  = "ext"
	FSFAT  = "fat"
	FSNone = ""
)

// ErrUnknownFilesystem is returned when a partition holds nothing we can open.
var ErrUnknownFilesystem = errors.New("unknown or no filesystem")

// Partition is a partition plus what we learned about its contents.
type Partition struct {
	disk.Partition
	Filesystem string `json:"filesystem,omitempty"` // ext4, fat32, ... once opened; "" if unknown
	Label      string `json:"label,omitempty"`
	FSUUID     string `json:"fs_uuid,omitempty"`
	Role       string `json:"role,omitempty"`
	// problem is why its filesystem did not open, for error messages
	// that say why a role was not found.
	problem string
}

// Options configure Open.
type Options struct {
	Writable bool
	// FS are the options every filesystem is opened with.
	FS fs.Options
}

// Image is an open disk image with its partitions classified.
type Image struct {
	Disk       *disk.Disk
	Table      *disk.Table
	Partitions []Partition

	opts Options
	mu   sync.Mutex
	open map[int]fs.Filesystem
}

// Open opens an image file or block device, reads its partition table,
// probes every partition's filesystem and assigns the boot and root roles.
func Open(path string, opts Options) (*Image, error) {
	d, err := disk.Open(path, disk.OpenOptions{Writable: opts.Writable})
	if err != nil {
		return nil, err
	}
	im, err := FromDisk(d, opts)
	if err != nil {
		d.Close()
		return nil, err
	}
	return im, nil
}

// FromDisk classifies an already open disk.
func FromDisk(d *disk.Disk, opts Options) (*Image, error) {
	tbl, err := d.ReadTable()
	if err != nil {
		return nil, err
	}
	opts.FS.ReadOnly = opts.FS.ReadOnly || !opts.Writable
	im := &Image{Disk: d, Table: tbl, opts: opts, open: map[int]fs.Filesystem{}}
	for _, p := range tbl.Partitions {
		im.Partitions = append(im.Partitions, Partition{Partition: p})
	}
	im.classify()
	return im, nil
}

// classify opens each partition's filesystem to read its type and label and
// decide roles. A partition whose filesystem fails to open is left unknown
// rather than failing the whole image: inspect must still show it.
func (im *Image) classify() {
	for i := range im.Partitions {
		p := &im.Partitions[i]
		f, err := im.Filesystem(p.Index)
		if err != nil {
			p.problem = err.Error()
			continue
		}
		p.Filesystem = f.Type()
		p.Label = f.Label()
		p.FSUUID = f.UUID()
		if p.Role != "" {
			continue
		}
		switch {
		case strings.HasPrefix(p.Filesystem, "fat") && hasAny(f, "/config.txt", "/cmdline.txt", "/EFI"):
			if im.indexOfRole(RoleBoot) == 0 {
				p.Role = RoleBoot
			}
		case hasAny(f, "/etc/os-release", "/usr/lib/os-release"):
			if im.indexOfRole(RoleRoot) == 0 {
				p.Role = RoleRoot
			}
		}
	}
}

func hasAny(f fs.Filesystem, paths ...string) bool {
	for _, p := range paths {
		if _, err := f.Lstat(p); err == nil {
			return true
		}
	}
	return false
}

func (im *Image) indexOfRole(role string) int {
	for _, p := range im.Partitions {
		if p.Role == role {
			return p.Index
		}
	}
	return 0
}

// Resolve turns a partition selector ("1", "2", "boot", "root") into an index.
func (im *Image) Resolve(sel string) (int, error) {
	switch sel {
	case RoleBoot, RoleRoot:
		if i := im.indexOfRole(sel); i != 0 {
			return i, nil
		}
		return 0, fmt.Errorf("%s: no %s partition found (partitions: %s)", im.Disk.Path(), sel, im.Describe())
	}
	n, err := strconv.Atoi(sel)
	if err != nil {
		return 0, fmt.Errorf("partition %q: want a number or %q/%q", sel, RoleBoot, RoleRoot)
	}
	if _, err := im.Table.Partition(n); err != nil {
		return 0, fmt.Errorf("%s: %w", im.Disk.Path(), err)
	}
	return n, nil
}

// Describe lists the partitions for messages: "1=vfat, 2=ext4", with why a
// filesystem did not open where one did not.
func (im *Image) Describe() string {
	var parts []string
	for _, p := range im.Partitions {
		s := strconv.Itoa(p.Index)
		if p.Filesystem != "" {
			s += "=" + p.Filesystem
		}
		if p.problem != "" {
			s += " (" + p.problem + ")"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// Partition returns the classified partition with the given index.
func (im *Image) Partition(index int) (Partition, error) {
	for _, p := range im.Partitions {
		if p.Index == index {
			return p, nil
		}
	}
	_, err := im.Table.Partition(index)
	return Partition{}, fmt.Errorf("%s: %w", im.Disk.Path(), err)
}

// Filesystem opens (once) and returns the filesystem in partition index.
func (im *Image) Filesystem(index int) (fs.Filesystem, error) {
	im.mu.Lock()
	defer im.mu.Unlock()
	if f, ok := im.open[index]; ok {
		return f, nil
	}
	p, err := im.Table.Partition(index)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", im.Disk.Path(), err)
	}
	region, err := im.Disk.Region(p.Start, p.Size)
	if err != nil {
		return nil, fmt.Errorf("%s partition %d: %w", im.Disk.Path(), index, err)
	}
	var f fs.Filesystem
	switch Probe(region) {
	case FSExt:
		f, err = ext4.Open(region, im.opts.FS)
	case FSFAT:
		f, err = fat.Open(region, im.opts.FS)
	default:
		return nil, fmt.Errorf("%s partition %d: %w", im.Disk.Path(), index, ErrUnknownFilesystem)
	}
	if err != nil {
		return nil, fmt.Errorf("%s partition %d: %w", im.Disk.Path(), index, err)
	}
	im.open[index] = f
	return f, nil
}

// Role opens the filesystem of the boot or root partition.
func (im *Image) Role(role string) (fs.Filesystem, error) {
	i, err := im.Resolve(role)
	if err != nil {
		return nil, err
	}
	return im.Filesystem(i)
}

// Probe recognises the filesystem family in a region from its magic numbers.
func Probe(r interface {
	ReadAt([]byte, int64) (int, error)
}) string {
	b := make([]byte, 2048)
	n, _ := r.ReadAt(b, 0)
	if n >= 1024+58 && binary.LittleEndian.Uint16(b[1024+56:]) == 0xef53 {
		return FSExt
	}
	if n >= 512 && b[510] == 0x55 && b[511] == 0xaa {
		bps := binary.LittleEndian.Uint16(b[11:13])
		if (bps == 512 || bps == 1024 || bps == 2048 || bps == 4096) && b[13] != 0 && b[16] != 0 {
			return FSFAT
		}
	}
	return FSNone
}

// Commit flushes every open filesystem and writes the buffered changes to
// the image. On error nothing further is written; call Close to discard.
func (im *Image) Commit() error {
	im.mu.Lock()
	defer im.mu.Unlock()
	var errs []error
	for idx, f := range im.open {
		if err := f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("partition %d: %w", idx, err))
		}
		delete(im.open, idx)
	}
	if err := errors.Join(errs...); err != nil {
		im.Disk.Discard()
		return err
	}
	_, err := im.Disk.Commit()
	return err
}

// Close discards uncommitted changes and closes the disk.
func (im *Image) Close() error {
	im.mu.Lock()
	im.open = map[int]fs.Filesystem{}
	im.mu.Unlock()
	return im.Disk.Close()
}

// OSRelease parses /etc/os-release (or /usr/lib/os-release) of the root.
func (im *Image) OSRelease() (map[string]string, error) {
	root, err := im.Role(RoleRoot)
	if err != nil {
		return nil, err
	}
	b, err := fs.ReadLimited(root, "/etc/os-release", maxBootFileBytes)
	if err != nil {
		if b, err = fs.ReadLimited(root, "/usr/lib/os-release", maxBootFileBytes); err != nil {
			return nil, err
		}
	}
	return ParseOSRelease(b), nil
}

// ParseOSRelease parses the KEY=value format of os-release(5).
func ParseOSRelease(b []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			continue
		}
		if uq, err := strconv.Unquote(v); err == nil {
			v = uq
		} else {
			v = strings.Trim(v, `"'`)
		}
		// The image is untrusted and inspect prints these: no escape
		// sequences or line breaks reach a terminal through them.
		out[k] = strings.Map(func(r rune) rune {
			if unicode.IsControl(r) {
				return -1
			}
			return r
		}, v)
	}
	return out
}
