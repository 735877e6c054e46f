package image

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/bakeryhq/bakery/internal/fs"
)

// maxBootFileBytes bounds how much of cmdline.txt/config.txt inspect reads
// from an untrusted image.
const maxBootFileBytes = 64 << 10

// Report is what `bakery inspect` prints.
type Report struct {
	Path       string            `json:"path"`
	Table      string            `json:"table"`
	SectorSize int               `json:"sector_size"`
	Size       int64             `json:"size"`
	DiskID     string            `json:"disk_id,omitempty"`
	Partitions []Partition       `json:"partitions"`
	OSRelease  map[string]string `json:"os_release,omitempty"`
	Boot       *BootFiles        `json:"boot,omitempty"`
	Warnings   []string          `json:"warnings,omitempty"`
}

// BootFiles are the Raspberry Pi boot configuration files.
type BootFiles struct {
	Cmdline string `json:"cmdline,omitempty"`
	Config  string `json:"config,omitempty"`
}

// Inspect describes the image: table, partitions with roles, os-release and
// the Pi boot files. Problems reading a part become warnings, not failures.
func (im *Image) Inspect() *Report {
	r := &Report{
		Path:       im.Disk.Path(),
		Table:      im.Table.Type,
		SectorSize: im.Table.SectorSize,
		Size:       im.Disk.Size(),
		DiskID:     im.Table.DiskID,
		Partitions: im.Partitions,
	}
	if err := im.Table.Validate(im.Disk.Size()); err != nil {
		r.Warnings = append(r.Warnings, err.Error())
	}
	for _, p := range im.Partitions {
		if p.Filesystem == "" {
			if _, err := im.Filesystem(p.Index); err != nil {
				r.Warnings = append(r.Warnings, err.Error())
			}
		}
	}
	if im.indexOfRole(RoleRoot) != 0 {
		if osr, err := im.OSRelease(); err == nil {
			r.OSRelease = osr
		} else {
			r.Warnings = append(r.Warnings, fmt.Sprintf("os-release: %v", err))
		}
	}
	if im.indexOfRole(RoleBoot) != 0 {
		if boot, err := im.Role(RoleBoot); err == nil {
			bf := &BootFiles{}
			bf.Cmdline = readSmall(boot, "/cmdline.txt")
			bf.Config = readSmall(boot, "/config.txt")
			if bf.Cmdline != "" || bf.Config != "" {
				r.Boot = bf
			}
		}
	}
	return r
}

// readSmall reads at most maxBootFileBytes of a file; missing files read as "".
func readSmall(f fs.Filesystem, path string) string {
	b, err := fs.ReadLimited(f, path, maxBootFileBytes)
	if err != nil {
		return ""
	}
	return string(b)
}

// WriteText prints the report for humans.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "Image:      %s\n", r.Path)
	fmt.Fprintf(w, "Size:       %s (%d bytes)\n", HumanBytes(r.Size), r.Size)
	fmt.Fprintf(w, "Table:      %s (%d-byte sectors", r.Table, r.SectorSize)
	if r.DiskID != "" {
		fmt.Fprintf(w, ", id %s", r.DiskID)
	}
	fmt.Fprintln(w, ")")
	if pn := r.OSRelease["PRETTY_NAME"]; pn != "" {
		fmt.Fprintf(w, "OS:         %s\n", pn)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSTART\tSIZE\tTYPE\tFILESYSTEM\tLABEL\tROLE")
	for _, p := range r.Partitions {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", p.Index, p.Start, HumanBytes(p.Size),
			typeName(p.Type), orDash(p.Filesystem), orDash(fs.Printable(p.Label)), orDash(p.Role))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Boot != nil {
		if r.Boot.Cmdline != "" {
			fmt.Fprintf(w, "\ncmdline.txt:\n  %s\n", fs.Printable(strings.TrimSpace(r.Boot.Cmdline)))
		}
		if r.Boot.Config != "" {
			fmt.Fprintln(w, "\nconfig.txt:")
			for _, line := range strings.Split(strings.TrimRight(r.Boot.Config, "\n"), "\n") {
				fmt.Fprintf(w, "  %s\n", fs.Printable(line))
			}
		}
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "\nwarning: %s\n", warn)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

var typeNames = map[string]string{
	"0b": "W95 FAT32", "0c": "W95 FAT32 (LBA)", "06": "FAT16", "0e": "W95 FAT16 (LBA)", "01": "FAT12",
	"83": "Linux", "82": "Linux swap", "8e": "Linux LVM", "ef": "EFI (FAT)", "ee": "GPT protective", "05": "Extended", "0f": "W95 Ext'd (LBA)",
	"C12A7328-F81F-11D2-BA4B-00A0C93EC93B": "EFI System",
	"EBD0A0A2-B9E5-4433-87C0-68B6B72699C7": "Microsoft basic data",
	"0FC63DAF-8483-4772-8E79-3D69D8477DE4": "Linux filesystem",
	"B921B045-1DF0-41C3-AF44-4C6F280D3FAE": "Linux root (ARM-64)",
	"4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709": "Linux root (x86-64)",
	"69DAD710-2CE4-4E3C-B16C-21A1D49ABED3": "Linux root (ARM)",
	"0657FD6D-A4AB-43C4-84E5-0933C84B4F4F": "Linux swap",
	"21686148-6449-6E6F-744E-656564454649": "BIOS boot",
}

func typeName(t string) string {
	if n, ok := typeNames[t]; ok {
		return fmt.Sprintf("%s (%s)", t, n)
	}
	return t
}

// HumanBytes formats a byte count with binary units.
func HumanBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}
