package build

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/build/step"
	"github.com/bakeryhq/bakery/internal/disk"
	"github.com/bakeryhq/bakery/internal/fs/ext4"
	"github.com/bakeryhq/bakery/internal/spec"
	"github.com/bakeryhq/bakery/internal/units"
)

// alignment of new and grown partitions, as parted and Pi OS use.
const alignment = 1 << 20

// mbrLimit is the largest address an MBR entry can describe (512-byte
// sectors, 32-bit LBA).
const mbrLimit = int64(1<<32) * 512

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// layoutPlan is the partition layout a build will write.
type layoutPlan struct {
	table      *disk.Table // nil: the table is not rewritten
	size       int64       // the image's new size
	wipeGPT    bool        // a GPT is replaced by an MBR: clear its headers
	rootIndex  int
	rootGrowTo int64 // new root partition size (0: unchanged)
	formats    []formatJob
	result     *step.LayoutResult
}

type formatJob struct {
	name        string
	start, size int64
	label       string
	uuid        [16]byte
}

// gptTypes maps MBR partition types to GPT type GUIDs, and back.
var mbrToGPT = map[string]string{
	"0b": disk.GPTTypeBasicData, "0c": disk.GPTTypeBasicData, "0e": disk.GPTTypeBasicData, "06": disk.GPTTypeBasicData,
	"01": disk.GPTTypeBasicData, "ef": disk.GPTTypeEFI, "83": disk.GPTTypeLinuxFS,
	"82": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F", "8e": "E6D6D379-F507-44C2-A23C-238F2A3DF928",
}

var gptToMBR = map[string]string{
	disk.GPTTypeBasicData: "0c", disk.GPTTypeEFI: "ef", disk.GPTTypeLinuxFS: "83",
	"0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "82", "E6D6D379-F507-44C2-A23C-238F2A3DF928": "8e",
	"B921B045-1DF0-41C3-AF44-4C6F280D3FAE": "83", "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "83",
	"69DAD710-2CE4-4E3C-B16C-21A1D49ABED3": "83", "44479540-F297-41B2-9AF7-D131D5F0458A": "83",
}

// planLayout works out the new table from the base's table, the root
// partition and the spec's layout block. Nothing moves: root can only
// grow into free space after it, and new partitions go after the last
// one; the image file is extended (sparsely) as needed.
func planLayout(s *spec.Spec, tbl *disk.Table, rootIndex int, imageSize int64, ids *step.IDs) (*layoutPlan, error) {
	l := s.Layout
	if l == nil {
		l = &spec.Layout{Table: spec.TableKeep, Grow: "root"}
	}
	lb := &l.Block
	ss := int64(tbl.SectorSize)
	root, err := tbl.Partition(rootIndex)
	if err != nil {
		return nil, err
	}
	parts := append([]disk.Partition(nil), tbl.Partitions...)
	sort.Slice(parts, func(i, j int) bool { return parts[i].Start < parts[j].Start })
	var follower *disk.Partition
	for i := range parts {
		if parts[i].Start >= root.End() {
			follower = &parts[i]
			break
		}
	}
	plan := &layoutPlan{size: imageSize, rootIndex: rootIndex,
		result: &step.LayoutResult{Table: tbl.Type, RootIndex: rootIndex}}

	target := tbl.Type
	if l.Table == spec.TableMBR || l.Table == spec.TableGPT {
		target = l.Table
	}
	if tbl.Type == disk.TableNone {
		if target != disk.TableNone || l.RootSize > 0 || len(l.Partitions) > 0 {
			return nil, lb.Errorf("", "the base image has no partition table (it is a bare filesystem), so its layout cannot be changed")
		}
		plan.result.Table = disk.TableNone
		return plan, nil
	}
	changed := target != tbl.Type

	// Grow root.
	newRoot := root
	if l.RootSize > 0 {
		want := roundUp(int64(l.RootSize), alignment)
		switch {
		case want < root.Size:
			return nil, lb.Errorf("root_size", "root_size %s is smaller than the base's root partition (%s); shrinking is not supported", l.RootSize, units.Format(root.Size))
		case want > root.Size:
			if follower != nil && root.Start+want > follower.Start {
				return nil, lb.Errorf("root_size", "root_size %s does not fit: partition %d starts %s after the root partition, and root can only grow into free space (room for at most %s)",
					l.RootSize, follower.Index, units.Format(follower.Start-root.Start), units.Format(follower.Start-root.Start))
			}
			newRoot.Size = want
			plan.rootGrowTo = want
			plan.result.RootGrown = want
			changed = true
		}
	}
	var end int64
	for _, p := range parts {
		if p.Index == rootIndex {
			p = newRoot
		}
		end = max(end, p.End())
	}

	newTbl := &disk.Table{Type: target, SectorSize: tbl.SectorSize, DiskID: tbl.DiskID}
	maxIndex := 0
	for _, p := range tbl.Partitions {
		maxIndex = max(maxIndex, p.Index)
		if p.Index == rootIndex {
			p = newRoot
		}
		newTbl.Partitions = append(newTbl.Partitions, p)
	}

	// Added partitions.
	for i := range l.Partitions {
		p := &l.Partitions[i]
		idx := maxIndex + 1 + i
		start := roundUp(end, alignment)
		size := roundUp(int64(p.Size), alignment)
		np := disk.Partition{Index: idx, Start: start, Size: size, Name: p.Name}
		a := step.AddedPartition{Spec: p, Name: p.Name, Index: idx, Start: start, Size: size}
		if p.Filesystem != spec.FSNone {
			u := ids.UUID("filesystem of partition " + p.Name)
			a.FSUUID = step.FormatUUID(u)
			if p.Filesystem == spec.FSExt4 {
				plan.formats = append(plan.formats, formatJob{name: p.Name, start: start, size: size, label: p.Label, uuid: u})
			}
		}
		newTbl.Partitions = append(newTbl.Partitions, np)
		plan.result.Added = append(plan.result.Added, a)
		end = start + size
		changed = true
	}

	// The table itself.
	reserve := int64(0)
	if target == disk.TableGPT {
		reserve = alignment // the backup GPT needs 33 sectors; keep alignment
	}
	if need := roundUp(end, alignment) + reserve; need > plan.size {
		plan.size = need
		changed = true
	} else if target == disk.TableGPT && end+33*ss > plan.size {
		plan.size = roundUp(end, alignment) + reserve
		changed = true
	}
	oldRefs := map[int]string{}
	for _, p := range tbl.Partitions {
		oldRefs[p.Index] = partRef(tbl, p)
	}
	switch target {
	case disk.TableMBR:
		if len(newTbl.Partitions) > 4 || maxIndex+len(l.Partitions) > 4 {
			return nil, lb.Errorf(firstPartitionKey(l), "an MBR table holds 4 primary partitions, and this layout needs %d; use table = \"gpt\"", max(len(newTbl.Partitions), maxIndex+len(l.Partitions)))
		}
		if plan.size > mbrLimit {
			return nil, lb.Errorf(firstPartitionKey(l), "the layout needs a %s image, beyond the 2 TiB an MBR table can address; use table = \"gpt\"", units.Format(plan.size))
		}
		if tbl.Type == disk.TableGPT {
			newTbl.DiskID = fmt.Sprintf("%08x", ids.Uint32("mbr disk id"))
			plan.wipeGPT = true
		}
		for i := range newTbl.Partitions {
			p := &newTbl.Partitions[i]
			if tbl.Type == disk.TableGPT && p.Index <= maxIndex {
				mt, ok := gptToMBR[strings.ToUpper(p.Type)]
				if !ok {
					return nil, lb.Errorf("table", "partition %d has GPT type %s, which has no MBR equivalent; keep table = \"gpt\"", p.Index, p.Type)
				}
				p.Type, p.Name, p.Attributes = mt, "", 0
			} else if p.Index > maxIndex {
				p.Type = disk.MBRTypeLinux
			}
			p.Bootable = p.Bootable && tbl.Type == disk.TableMBR
		}
	case disk.TableGPT:
		if tbl.Type == disk.TableMBR {
			newTbl.DiskID = strings.ToUpper(ids.UUIDString("gpt disk guid"))
			if first := parts[0]; first.Start < 34*ss {
				return nil, lb.Errorf("table", "the first partition starts at sector %d, inside the space a GPT needs (34 sectors); the table cannot be converted", first.Start/ss)
			}
		}
		for i := range newTbl.Partitions {
			p := &newTbl.Partitions[i]
			if tbl.Type == disk.TableMBR && p.Index <= maxIndex {
				gt, ok := mbrToGPT[strings.ToLower(p.Type)]
				if !ok {
					return nil, lb.Errorf("table", "partition %d has MBR type %s, which bakery cannot map to a GPT type; keep table = \"mbr\"", p.Index, p.Type)
				}
				p.Type, p.Bootable = gt, false
				switch p.Index {
				case rootIndex:
					p.Name = "rootfs"
				default:
					if gt == disk.GPTTypeBasicData || gt == disk.GPTTypeEFI {
						p.Name = "bootfs"
					}
				}
			} else if p.Index > maxIndex {
				p.Type = disk.GPTTypeLinuxFS
			}
			if p.UUID == "" || tbl.Type == disk.TableMBR {
				p.UUID = strings.ToUpper(ids.UUIDString(fmt.Sprintf("gpt partition %d", p.Index)))
			}
		}
		if plan.size-33*ss < end {
			return nil, lb.Errorf("", "internal: no room for the backup GPT")
		}
	}
	plan.result.ImageSize = plan.size
	if !changed {
		return plan, nil
	}
	plan.table = newTbl
	plan.result.Table = target
	plan.result.Converted = target != tbl.Type
	for i := range plan.result.Added {
		a := &plan.result.Added[i]
		p, _ := newTbl.Partition(a.Index)
		a.PartUUID = partRef(newTbl, p)
	}
	if plan.result.Converted {
		plan.result.PartUUIDs = map[string]string{}
		for _, p := range newTbl.Partitions {
			if old, ok := oldRefs[p.Index]; ok {
				plan.result.PartUUIDs[old] = partRef(newTbl, p)
			}
		}
	}
	return plan, nil
}

func firstPartitionKey(l *spec.Layout) string {
	if len(l.Partitions) > 0 {
		return "" // the layout block header
	}
	return "table"
}

// partRef is the PARTUUID a partition has for the kernel and udev:
// "DISKID-NN" for MBR, the lower-case GUID for GPT.
func partRef(t *disk.Table, p disk.Partition) string {
	if t.Type == disk.TableMBR {
		return fmt.Sprintf("%s-%02x", strings.ToLower(t.DiskID), p.Index)
	}
	return strings.ToLower(p.UUID)
}

// growTarget resolves the spec's grow setting to a partition.
func growTarget(s *spec.Spec, plan *layoutPlan, tbl *disk.Table) (*step.GrowTarget, error) {
	l := s.Layout
	grow := "root"
	if l != nil {
		grow = l.Grow
	}
	if grow == spec.GrowNone || tbl.Type == disk.TableNone {
		return nil, nil // a bare filesystem image has no partition to grow
	}
	if grow == "root" || grow == "" {
		root, _ := tbl.Partition(plan.rootIndex)
		for _, p := range tbl.Partitions {
			if p.Start >= root.End() {
				where := &s.Block
				key := "layout"
				if l != nil {
					where, key = &l.Block, "grow"
				}
				return nil, where.Errorf(key, "the root partition cannot fill the card at first boot: partition %d follows it in the base; set grow = \"none\" in the layout block", p.Index)
			}
		}
		return &step.GrowTarget{Index: plan.rootIndex, Name: "root", FS: "ext4", Mount: "/"}, nil
	}
	for _, a := range plan.result.Added {
		if a.Name == grow {
			fs := map[string]string{spec.FSExt4: "ext4", spec.FSXFSAtBoot: "xfs", spec.FSNone: "none"}[a.Spec.Filesystem]
			return &step.GrowTarget{Index: a.Index, Name: a.Name, FS: fs, Mount: a.Spec.Mount}, nil
		}
	}
	return nil, l.Errorf("grow", "grow = %q names no partition", grow)
}

// applyLayout extends the image file, writes the table, grows root's
// ext4 and formats the new ext4 partitions, and commits.
func applyLayout(ctx context.Context, path string, plan *layoutPlan, t time.Time) error {
	if plan.table == nil {
		return nil
	}
	if fi, err := os.Stat(path); err != nil {
		return err
	} else if plan.size > fi.Size() {
		if err := os.Truncate(path, plan.size); err != nil {
			return fmt.Errorf("extend the image to %s: %w", units.Format(plan.size), err)
		}
	}
	d, err := disk.Open(path, disk.OpenOptions{Writable: true})
	if err != nil {
		return err
	}
	defer d.Close()
	if plan.wipeGPT {
		ss := int64(d.SectorSize())
		zero := make([]byte, ss)
		for _, off := range []int64{ss, d.Size() - ss} {
			if _, err := d.WriteAt(zero, off); err != nil {
				return err
			}
		}
	}
	if err := d.WriteTable(plan.table); err != nil {
		return fmt.Errorf("layout: %w", err)
	}
	if plan.rootGrowTo > 0 {
		root, _ := plan.table.Partition(plan.rootIndex)
		region, err := d.Region(root.Start, root.Size)
		if err != nil {
			return err
		}
		if err := ext4.Grow(region, 0, ext4.GrowOptions{Time: t}); err != nil {
			return fmt.Errorf("layout: grow the root filesystem to %s: %w", units.Format(root.Size), err)
		}
	}
	for _, j := range plan.formats {
		if err := ctx.Err(); err != nil {
			return err
		}
		region, err := d.Region(j.start, j.size)
		if err != nil {
			return err
		}
		if err := ext4.Format(region, ext4.FormatParams{Label: j.label, UUID: j.uuid, Time: t}); err != nil {
			return fmt.Errorf("layout: format partition %q: %w", j.name, err)
		}
	}
	if _, err := d.Commit(); err != nil {
		return err
	}
	return nil
}
