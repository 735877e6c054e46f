package disk

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed", name)
	}
}

func sparseFile(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return p
}

func sfdiskDump(t *testing.T, path string, extra ...string) string {
	t.Helper()
	args := append([]string{"--dump"}, extra...)
	out, err := exec.Command("sfdisk", append(args, path)...).CombinedOutput()
	if err != nil {
		t.Fatalf("sfdisk --dump %s: %v\n%s", path, err, out)
	}
	return string(out)
}

// sfdiskDumpSectorSize dumps a table with 4096-byte sectors through a loop
// device of that sector size, since this sfdisk has no --sector-size.
func sfdiskDumpSectorSize(t *testing.T, path string, ss int) string {
	t.Helper()
	if ss == 512 {
		return sfdiskDump(t, path)
	}
	out, err := exec.Command("losetup", "-b", itoa(ss), "-f", "--show", path).Output()
	if err != nil {
		t.Skipf("no loop device with %d-byte sectors: %v", ss, err)
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "-d", dev).Run()
	return sfdiskDump(t, dev)
}

func sfdiskWrite(t *testing.T, path, script string, extra ...string) {
	t.Helper()
	cmd := exec.Command("sfdisk", append(extra, "--no-reread", "--no-tell-kernel", path)...)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
}

func TestWriteMBRMatchesSfdisk(t *testing.T) {
	needTool(t, "sfdisk")
	p := sparseFile(t, 64<<20)
	d, err := Open(p, OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	tbl := &Table{Type: TableMBR, DiskID: "1234abcd", Partitions: []Partition{
		{Index: 1, Start: 4 << 20, Size: 16 << 20, Type: MBRTypeFAT32LBA, Bootable: true},
		{Index: 2, Start: 20 << 20, Size: 40 << 20, Type: MBRTypeLinux},
	}}
	if err := d.WriteTable(tbl); err != nil {
		t.Fatal(err)
	}
	// Nothing reaches the file before Commit.
	if out, _ := exec.Command("sfdisk", "--dump", p).CombinedOutput(); strings.Contains(string(out), "type=c") {
		t.Fatalf("table visible before commit:\n%s", out)
	}
	if _, err := d.Commit(); err != nil {
		t.Fatal(err)
	}
	d.Close()
	dump := sfdiskDump(t, p)
	for _, want := range []string{
		"label: dos",
		"label-id: 0x1234abcd",
		"start=        8192, size=       32768, type=c, bootable",
		"start=       40960, size=       81920, type=83",
	} {
		if !strings.Contains(dump, want) {
			t.Errorf("sfdisk dump lacks %q:\n%s", want, dump)
		}
	}
}

func TestWriteGPTMatchesSfdisk(t *testing.T) {
	needTool(t, "sfdisk")
	for _, ss := range []int{512, 4096} {
		p := sparseFile(t, 64<<20)
		d, err := Open(p, OpenOptions{Writable: true, SectorSize: ss})
		if err != nil {
			t.Fatal(err)
		}
		tbl := &Table{Type: TableGPT, DiskID: "5B8B0F6E-2E1C-4C1A-9C1E-7C1F3E0B9A11", Partitions: []Partition{
			{Index: 1, Start: 1 << 20, Size: 16 << 20, Type: GPTTypeEFI, Name: "bootfs", UUID: "11111111-2222-4333-8444-555555555555"},
			{Index: 2, Start: 17 << 20, Size: 40 << 20, Type: GPTTypeLinuxFS, Name: "rootfs", UUID: "66666666-7777-4888-9999-AAAAAAAAAAAA"},
		}}
		if err := d.WriteTable(tbl); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Commit(); err != nil {
			t.Fatal(err)
		}
		d.Close()
		dump := sfdiskDumpSectorSize(t, p, ss)
		first := (1 << 20) / ss
		for _, want := range []string{
			"label: gpt",
			"label-id: 5B8B0F6E-2E1C-4C1A-9C1E-7C1F3E0B9A11",
			"start=" + pad(first) + ", size=" + pad((16<<20)/ss) + ", type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=11111111-2222-4333-8444-555555555555, name=\"bootfs\"",
			"type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=66666666-7777-4888-9999-AAAAAAAAAAAA, name=\"rootfs\"",
		} {
			if !strings.Contains(dump, want) {
				t.Errorf("sector size %d: sfdisk dump lacks %q:\n%s", ss, want, dump)
			}
		}
		// And we read back what we wrote.
		d, err = Open(p, OpenOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.ReadTable()
		d.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got.SectorSize != ss || got.Type != TableGPT || len(got.Partitions) != 2 || got.Partitions[1].Start != 17<<20 || got.Partitions[0].Name != "bootfs" {
			t.Errorf("sector size %d: read back %+v", ss, got)
		}
	}
}

func TestReadTablesMadeBySfdisk(t *testing.T) {
	needTool(t, "sfdisk")
	p := sparseFile(t, 128<<20)
	sfdiskWrite(t, p, "label: dos\nlabel-id: 0xdeadbeef\nstart=8192, size=131072, type=c\nstart=139264, type=83\n")
	d, err := Open(p, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := d.ReadTable()
	d.Close()
	if err != nil {
		t.Fatal(err)
	}
	if tbl.Type != TableMBR || tbl.DiskID != "deadbeef" || len(tbl.Partitions) != 2 {
		t.Fatalf("got %+v", tbl)
	}
	if p1 := tbl.Partitions[0]; p1.Start != 8192*512 || p1.Size != 131072*512 || p1.Type != "0c" || p1.UUID != "deadbeef-01" {
		t.Errorf("partition 1 = %+v", p1)
	}
	if p2 := tbl.Partitions[1]; p2.Start != 139264*512 || p2.End() != 128<<20 || p2.Type != "83" {
		t.Errorf("partition 2 = %+v", p2)
	}

	g := sparseFile(t, 128<<20)
	sfdiskWrite(t, g, "label: gpt\nsize=64MiB, type=uefi, name=ESP\ntype=linux, name=root\n")
	d, err = Open(g, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tbl, err = d.ReadTable()
	d.Close()
	if err != nil {
		t.Fatal(err)
	}
	if tbl.Type != TableGPT || len(tbl.Partitions) != 2 || tbl.Partitions[0].Type != GPTTypeEFI || tbl.Partitions[0].Name != "ESP" || tbl.Partitions[1].Size <= 0 {
		t.Fatalf("got %+v", tbl)
	}
}

func TestNotADiskImage(t *testing.T) {
	p := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(p, bytes.Repeat([]byte("hello\n"), 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Open(p, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = d.ReadTable()
	if !errors.Is(err, ErrNotDiskImage) || !strings.Contains(err.Error(), p) {
		t.Fatalf("want ErrNotDiskImage naming %s, got %v", p, err)
	}
}

func TestRefusesTablesPastTheEnd(t *testing.T) {
	p := sparseFile(t, 8<<20)
	d, err := Open(p, OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	err = d.WriteTable(&Table{Type: TableMBR, Partitions: []Partition{{Index: 1, Start: 1 << 20, Size: 16 << 20, Type: "83"}}})
	if err == nil || !strings.Contains(err.Error(), "past the end") {
		t.Fatalf("want past-the-end error, got %v", err)
	}
	err = d.WriteTable(&Table{Type: TableMBR, Partitions: []Partition{
		{Index: 1, Start: 1 << 20, Size: 4 << 20, Type: "83"},
		{Index: 2, Start: 2 << 20, Size: 4 << 20, Type: "83"}}})
	if err == nil || !strings.Contains(err.Error(), "overlaps") {
		t.Fatalf("want overlap error, got %v", err)
	}
}

func TestOverlayIsAllOrNothing(t *testing.T) {
	p := sparseFile(t, 1<<20)
	orig := bytes.Repeat([]byte{0xab}, 1<<20)
	if err := os.WriteFile(p, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := Open(p, OpenOptions{Writable: true})
	if err != nil {
		t.Fatal(err)
	}
	// Unaligned writes spanning pages read back through the buffer...
	if _, err := d.WriteAt([]byte("hello, world"), 4090); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 20)
	if _, err := d.ReadAt(buf, 4086); err != nil {
		t.Fatal(err)
	}
	if string(buf[4:16]) != "hello, world" || buf[0] != 0xab || buf[19] != 0xab {
		t.Fatalf("read through overlay = %q", buf)
	}
	// ...and a discard leaves the file untouched.
	d.Discard()
	if got, _ := os.ReadFile(p); !bytes.Equal(got, orig) {
		t.Fatal("discarded writes reached the file")
	}
	// A commit writes only pages whose bytes changed.
	d.WriteAt(bytes.Repeat([]byte{0xab}, 8192), 8192) // same bytes: no write
	d.WriteAt([]byte{1}, 100)
	n, err := d.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if n != overlayPage {
		t.Errorf("commit wrote %d bytes, want one page (%d)", n, overlayPage)
	}
	d.Close()
	got, _ := os.ReadFile(p)
	if got[100] != 1 || got[99] != 0xab || got[8192] != 0xab {
		t.Error("committed bytes wrong")
	}
}

func TestBareFilesystemImage(t *testing.T) {
	needTool(t, "mkfs.ext4")
	p := filepath.Join(t.TempDir(), "root.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", p, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	d, err := Open(p, OpenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tbl, err := d.ReadTable()
	if err != nil {
		t.Fatal(err)
	}
	if tbl.Type != TableNone || len(tbl.Partitions) != 1 || tbl.Partitions[0].Size != 8<<20 {
		t.Fatalf("got %+v", tbl)
	}
}

func itoa(i int) string {
	return strings.TrimSpace(pad(i))
}

// pad right-aligns a number the way sfdisk --dump prints start and size.
func pad(i int) string {
	s := []byte("            ")
	n := []byte{}
	for i > 0 || len(n) == 0 {
		n = append([]byte{byte('0' + i%10)}, n...)
		i /= 10
	}
	if len(n) >= 12 {
		return string(n)
	}
	return string(s[:12-len(n)]) + string(n)
}
