// Package demo makes a small Raspberry Pi OS-like base image offline, so that
// bakery can be tried, tested and benchmarked without downloading anything.
package demo

import (
	"context"
	"crypto/sha256"
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/fs/ext4"
	"github.com/bakeryhq/bakery/internal/fs/fat"
)

// Options shape the demo image.
type Options struct {
	// Size of the whole image in bytes (default 2 GiB).
	Size int64
	// Table is disk.TableMBR (default) or disk.TableGPT.
	Table string
	// Time stamps every file; default 2024-11-19, the demo's "release date".
	Time time.Time
}

// DefaultSize is the image size when none is given.
const DefaultSize = 2 << 30

// MinSize leaves room for the 512 MiB boot partition and a usable root.
const MinSize = bootStart + bootSize + 64<<20

// Build writes the demo image to path (via a temporary file and rename).
// The result is the same bytes for the same options.
func Build(ctx context.Context, path string, opts Options) error {
	if opts.Size == 0 {
		opts.Size = DefaultSize
	}
	if opts.Table == "" {
		opts.Table = disk.TableMBR
	}
	if opts.Time.IsZero() {
		opts.Time = time.Date(2024, 11, 19, 12, 0, 0, 0, time.UTC)
	}
	if opts.Size < MinSize {
		return fmt.Errorf("demo image size %d is below the minimum %d bytes (%d MiB)", opts.Size, int64(MinSize), MinSize>>20)
	}
	opts.Size &^= 1<<20 - 1 // whole MiB, so partitions stay aligned
	if opts.Table != disk.TableMBR && opts.Table != disk.TableGPT {
		return fmt.Errorf("demo image table %q: want %q or %q", opts.Table, disk.TableMBR, disk.TableGPT)
	}

	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("create demo image next to %s: %w", path, err)
	}
	tmpPath := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmpPath)
		}
	}()
	if err := tmp.Truncate(opts.Size); err != nil {
		tmp.Close()
		return fmt.Errorf("size demo image %s: %w", tmpPath, err)
	}
	tmp.Close()

	if err := populate(ctx, tmpPath, opts); err != nil {
		return err
	}
	if err := os.Chmod(tmpPath, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return fmt.Errorf("rename demo image to %s: %w", path, err)
	}
	ok = true
	return nil
}

// derived makes stable identifiers from a purpose string, so every demo
// image with the same options carries the same UUIDs.
func derived(purpose string) [16]byte {
	h := sha256.Sum256([]byte("bakery demo " + purpose))
	var u [16]byte
	copy(u[:], h[:16])
	u[6] = u[6]&0x0f | 0x40 // version 4 layout
	u[8] = u[8]&0x3f | 0x80
	return u
}

func populate(ctx context.Context, path string, opts Options) error {
	d, err := disk.Open(path, disk.OpenOptions{Writable: true})
	if err != nil {
		return err
	}
	defer d.Close()

	tbl := &disk.Table{Type: opts.Table}
	bootP := disk.Partition{Index: 1, Start: bootStart, Size: bootSize}
	rootP := disk.Partition{Index: 2, Start: bootStart + bootSize}
	rootP.Size = opts.Size - rootP.Start
	var bootRef, rootRef string
	if opts.Table == disk.TableGPT {
		rootP.Size -= 1 << 20 // room for the backup GPT
		tbl.DiskID = strings.ToUpper(uuid.UUID(derived("disk")).String())
		bootP.Type, bootP.Name = disk.GPTTypeBasicData, "bootfs"
		rootP.Type, rootP.Name = disk.GPTTypeLinuxFS, "rootfs"
		bootP.UUID = strings.ToUpper(uuid.UUID(derived("boot partition")).String())
		rootP.UUID = strings.ToUpper(uuid.UUID(derived("root partition")).String())
		bootRef, rootRef = strings.ToLower(bootP.UUID), strings.ToLower(rootP.UUID)
	} else {
		id := derived("disk")
		tbl.DiskID = fmt.Sprintf("%02x%02x%02x%02x", id[0], id[1], id[2], id[3])
		bootP.Type, rootP.Type = disk.MBRTypeFAT32LBA, disk.MBRTypeLinux
		bootRef, rootRef = tbl.DiskID+"-01", tbl.DiskID+"-02"
	}
	tbl.Partitions = []disk.Partition{bootP, rootP}
	if err := d.WriteTable(tbl); err != nil {
		return err
	}

	bootRegion, err := d.Region(bootP.Start, bootP.Size)
	if err != nil {
		return err
	}
	rootRegion, err := d.Region(rootP.Start, rootP.Size)
	if err != nil {
		return err
	}
	vol := derived("boot volume")
	if err := fat.Format(bootRegion, fat.FormatParams{
		Type: "fat32", Label: "bootfs", Time: opts.Time,
		VolumeID: uint32(vol[0])<<24 | uint32(vol[1])<<16 | uint32(vol[2])<<8 | uint32(vol[3]),
	}); err != nil {
		return fmt.Errorf("format demo boot partition: %w", err)
	}
	if err := ext4.Format(rootRegion, ext4.FormatParams{
		Label: "rootfs", UUID: derived("root filesystem"), Time: opts.Time,
	}); err != nil {
		return fmt.Errorf("format demo root partition: %w", err)
	}

	fsOpts := fs.Options{DefaultTime: opts.Time}
	boot, err := fat.Open(bootRegion, fsOpts)
	if err != nil {
		return err
	}
	if err := writeTree(ctx, boot, bootTree(rootRef)); err != nil {
		return fmt.Errorf("demo boot partition: %w", err)
	}
	if err := boot.Close(); err != nil {
		return err
	}
	root, err := ext4.Open(rootRegion, fsOpts)
	if err != nil {
		return err
	}
	if err := writeTree(ctx, root, rootTree(bootRef, rootRef)); err != nil {
		return fmt.Errorf("demo root partition: %w", err)
	}
	if err := root.Close(); err != nil {
		return err
	}
	if _, err := d.Commit(); err != nil {
		return err
	}
	return nil
}

func writeTree(ctx context.Context, f fs.Filesystem, entries []entry) error {
	dirAttr := fs.Attr{Mode: 0o755}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		attr := fs.Attr{Mode: e.mode.Perm() | e.mode&(iofs.ModeSetuid|iofs.ModeSetgid|iofs.ModeSticky), UID: e.uid, GID: e.gid}
		if parent := fs.Dir(e.path); parent != "/" {
			if err := f.MkdirAll(parent, dirAttr); err != nil {
				return err
			}
		}
		var err error
		switch {
		case e.mode.IsDir():
			if err = f.MkdirAll(e.path, attr); err == nil {
				// MkdirAll keeps an existing directory's attributes; the tree
				// states them explicitly.
				if err = f.Chmod(e.path, attr.Mode); err == nil && (e.uid != 0 || e.gid != 0) {
					err = f.Chown(e.path, e.uid, e.gid)
				}
			}
		case e.mode&iofs.ModeSymlink != 0:
			err = f.Symlink(e.content, e.path, attr)
		default:
			err = f.WriteFile(e.path, strings.NewReader(e.content), attr)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
