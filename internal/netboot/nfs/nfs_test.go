package nfs

import (
	"bytes"
	"os"
	"sort"
	"strings"
	"testing"

	"github.com/bakeryhq/bakery/internal/netboot/overlay"
	"github.com/bakeryhq/bakery/internal/netboot/overlay/overlaytest"
	"github.com/bakeryhq/bakery/internal/testimage"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	"github.com/willscott/go-nfs-client/nfs/xdr"
	"golang.org/x/sys/unix"
)

// TestReadImageOverNFS: go-nfs-client (a client nobody on this project
// wrote) sees the image's files, modes (setuid, setgid, sticky), owners,
// symlinks, device numbers and contents exactly.
func TestReadImageOverNFS(t *testing.T) {
	h := newHarness(t, nil)
	tgt := h.mustMount(machA, rootAuth())
	c := h.dial()
	if _, err := h.mount(c, machA, rootAuth()); err != nil {
		t.Fatal(err)
	}
	for _, want := range overlaytest.Tree {
		if want.Target != "" && want.Mode&unix.S_IFMT == unix.S_IFREG {
			continue // hard link: checked below
		}
		if strings.HasPrefix(want.Path, "/etc/ssh/ssh_host_") || want.Path == "/var/lib/dbus/machine-id" {
			continue // removed by provisioning
		}
		fh := lookupFH(t, tgt, want.Path)
		st, a := getattr(t, c, rootAuth(), fh)
		if st != 0 {
			t.Fatalf("getattr %s: status %d", want.Path, st)
		}
		if a.FileMode&0o7777 != want.Mode&0o7777 || a.UID != want.UID || a.GID != want.GID {
			t.Errorf("%s: mode %o uid %d gid %d; want %o %d %d", want.Path, a.FileMode&0o7777, a.UID, a.GID, want.Mode&0o7777, want.UID, want.GID)
		}
		wantType := map[uint32]uint32{unix.S_IFREG: nfsc.NF3Reg, unix.S_IFDIR: nfsc.NF3Dir, unix.S_IFLNK: nfsc.NF3Lnk,
			unix.S_IFCHR: nfsc.NF3Chr, unix.S_IFBLK: nfsc.NF3Blk, unix.S_IFIFO: nfsc.NF3FIFO, unix.S_IFSOCK: nfsc.NF3Sock}[want.Mode&unix.S_IFMT]
		if a.Type != wantType {
			t.Errorf("%s: type %d, want %d", want.Path, a.Type, wantType)
		}
		switch want.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			f, _ := tgt.Open(want.Path)
			if got, err := f.Readlink(); err != nil || got != want.Target {
				t.Errorf("readlink %s: %q %v", want.Path, got, err)
			}
		case unix.S_IFCHR, unix.S_IFBLK:
			if a.SpecData != [2]uint32{unix.Major(want.Rdev), unix.Minor(want.Rdev)} {
				t.Errorf("%s: specdata %v", want.Path, a.SpecData)
			}
		case unix.S_IFREG:
			if want.Path == overlaytest.SparsePath {
				if got := readFile(t, tgt, want.Path); got != string(overlaytest.SparseContent()) {
					t.Errorf("sparse file differs")
				}
			} else if got := readFile(t, tgt, want.Path); got != want.Content && !strings.HasPrefix(want.Path, "/etc/") {
				t.Errorf("%s: %q", want.Path, got)
			}
		}
	}
	// The machine's adjustments show; the rest is the image.
	if got := readFile(t, tgt, "/etc/hostname"); got != "host-3a7f\n" {
		t.Errorf("hostname %q", got)
	}
	if _, _, err := tgt.Lookup("/etc/ssh/ssh_host_ed25519_key"); err == nil {
		t.Error("the image's ssh host key is visible")
	}
	_, perl, _ := tgt.Lookup("/usr/bin/perl")
	_, perl5, _ := tgt.Lookup("/usr/bin/perl5.36.0")
	_, pa := getattr(t, c, rootAuth(), perl)
	_, pb := getattr(t, c, rootAuth(), perl5)
	if pa.Fileid != pb.Fileid || pa.Nlink != 2 {
		t.Errorf("hard link: fileids %d %d nlink %d", pa.Fileid, pb.Fileid, pa.Nlink)
	}
	ents, err := tgt.ReadDirPlus("/usr/bin")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if e.FileName != "." && e.FileName != ".." {
			names = append(names, e.FileName)
		}
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "crontab,perl,perl5.36.0,ssh-keygen,sudo" {
		t.Errorf("readdirplus /usr/bin: %v", names)
	}
}

// TestWritesStayWithTheMachine: changes through NFS are visible to the
// machine that made them, not to another machine of the same image; the
// image file never changes; a reset restores the image state.
func TestWritesStayWithTheMachine(t *testing.T) {
	h := newHarness(t, nil)
	before := testimage.FileSHA256(t, h.img)
	a := h.mustMount(machA, rootAuth())
	writeFile(t, a, "/etc/motd", "hello from A\n")
	motd := lookupFH(t, a, "/etc/motd")
	if _, err := a.Mkdir("/opt", 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, a, "/opt/app.conf", "x=1\n")
	if err := a.Remove("/usr/share/doc/readme.txt"); err != nil {
		t.Fatal(err)
	}
	if err := a.Rename("/usr/share", "/usr/share-a"); err != nil {
		t.Fatal(err)
	}
	if err := a.Symlink("/opt/app.conf", "/etc/app.conf"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, a, "/etc/app.conf"); got != "x=1\n" {
		t.Fatalf("through the new symlink: %q", got)
	}
	// A file bigger than one transfer (1 MiB, FSINFO) goes in several WRITEs.
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<16+100)
	bf, err := a.OpenFile("/var/big.bin", 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := bf.Write(big); err != nil || n != len(big) {
		t.Fatalf("write 3 MiB: %d %v", n, err)
	}
	if got := readFile(t, a, "/var/big.bin"); got != string(big) {
		t.Fatalf("3 MiB file read back differs (%d bytes)", len(got))
	}
	f, _ := a.OpenFile("/home/pi/notes.txt", 0)
	f.Write([]byte("PI"))
	if got := readFile(t, a, "/home/pi/notes.txt"); got != "PI's notes\n" {
		t.Fatalf("A: %q", got)
	}

	// Machine B over the same image sees none of it.
	h.be.setIP("127.0.0.1", machB)
	b := h.mustMount(machB, rootAuth())
	if got := readFile(t, b, "/home/pi/notes.txt"); got != "pi's notes\n" {
		t.Fatalf("B sees %q", got)
	}
	for _, p := range []string{"/etc/motd", "/opt", "/usr/share-a"} {
		if _, _, err := b.Lookup(p); err == nil {
			t.Errorf("B sees A's %s", p)
		}
	}
	if got := readFile(t, b, "/usr/share/doc/readme.txt"); got != "read me\n" {
		t.Errorf("B: %q", got)
	}
	h.be.mgr.Flush()
	if after := testimage.FileSHA256(t, h.img); after != before {
		t.Fatal("the image file changed")
	}

	// Reset A: a fresh layer, the image's state again.
	h.be.setIP("127.0.0.1", machA)
	if _, _, err := h.be.mgr.Provision(machA, imageKey, overlay.Adjustments{}); err != nil {
		t.Fatal(err)
	}
	a2 := h.mustMount(machA, rootAuth())
	if got := readFile(t, a2, "/home/pi/notes.txt"); got != "pi's notes\n" {
		t.Fatalf("after reset: %q", got)
	}
	if _, _, err := a2.Lookup("/etc/motd"); err == nil {
		t.Fatal("reset kept a file")
	}
	if got := readFile(t, a2, "/usr/share/doc/readme.txt"); got != "read me\n" {
		t.Fatalf("after reset: %q", got)
	}
	// A handle from before the reset is stale.
	if st, _ := getattr(t, h.dial(), rootAuth(), motd); st != nfsc.NFS3ErrStale {
		t.Fatalf("old handle after reset: status %d", st)
	}
}

// TestHandlesSurviveRestart: a handle a client got before bakery serve
// restarted still works afterwards (no "stale file handle"), for image
// files, layer files and files in renamed image directories, with nothing
// cached in the new process.
func TestHandlesSurviveRestart(t *testing.T) {
	h := newHarness(t, nil)
	a := h.mustMount(machA, rootAuth())
	writeFile(t, a, "/etc/new.conf", "layer file\n")
	if err := a.Rename("/usr/share", "/usr/moved"); err != nil {
		t.Fatal(err)
	}
	c := h.dial()
	fhs := map[string][]byte{
		"image file":                lookupFH(t, a, "/usr/bin/sudo"),
		"layer file":                lookupFH(t, a, "/etc/new.conf"),
		"file in a renamed dir":     lookupFH(t, a, "/usr/moved/doc/readme.txt"),
		"copied-up and changed dir": lookupFH(t, a, "/etc"),
	}
	want := map[string]string{"image file": "sudo binary\n", "layer file": "layer file\n", "file in a renamed dir": "read me\n"}
	for what, fh := range fhs {
		if st, _ := getattr(t, c, rootAuth(), fh); st != 0 {
			t.Fatalf("%s before restart: %d", what, st)
		}
	}
	h.restart()
	// The same client connection reconnects by itself.
	for what, fh := range fhs {
		st, attr := getattr(t, c, rootAuth(), fh)
		if st != 0 {
			t.Fatalf("%s after restart: status %d (stale handle)", what, st)
		}
		if w, ok := want[what]; ok {
			if st, got := readFH(t, c, rootAuth(), fh, 4096); st != 0 || got != w {
				t.Fatalf("%s after restart: read %d %q", what, st, got)
			}
		} else if attr.Type != nfsc.NF3Dir {
			t.Fatalf("%s: type %d", what, attr.Type)
		}
	}
}

type linkArgs struct {
	rpc.Header
	File []byte
	Dir  []byte
	Name string
}

type mknodArgs struct {
	rpc.Header
	Dir   []byte
	Name  string
	Type  uint32
	Attr  nfsc.Sattr3
	Major uint32
	Minor uint32
}

type mknodPipeArgs struct {
	rpc.Header
	Dir  []byte
	Name string
	Type uint32
	Attr nfsc.Sattr3
}

type setattrArgs struct {
	rpc.Header
	FH    []byte
	Attr  nfsc.Sattr3
	Guard uint32
}

type accessArgs struct {
	rpc.Header
	FH     []byte
	Access uint32
}

type dirOpArgs struct {
	rpc.Header
	Dir  []byte
	Name string
}

type renameArgs struct {
	rpc.Header
	From     []byte
	FromName string
	To       []byte
	ToName   string
}

// TestProceduresGoNFSGetsWrong: LINK, MKNOD (character devices too),
// SETATTR with setuid, ACCESS, RMDIR of a non-empty directory and RENAME
// give the answers a kernel NFS server gives.
func TestProceduresGoNFSGetsWrong(t *testing.T) {
	h := newHarness(t, nil)
	a := h.mustMount(machA, rootAuth())
	c := h.dial()
	if _, err := h.mount(c, machA, rootAuth()); err != nil {
		t.Fatal(err)
	}
	root := rootAuth()
	tmp := lookupFH(t, a, "/tmp")
	writeFile(t, a, "/tmp/orig", "linked")
	orig := lookupFH(t, a, "/tmp/orig")

	if st, _ := call(t, c, &linkArgs{hdr(15, root), orig, tmp, "hard"}); st != 0 {
		t.Fatalf("link: status %d", st)
	}
	if got := readFile(t, a, "/tmp/hard"); got != "linked" {
		t.Fatalf("through the hard link: %q", got)
	}
	if _, at := getattr(t, c, root, orig); at.Nlink != 2 {
		t.Fatalf("nlink %d", at.Nlink)
	}

	mode := func(m uint32) nfsc.Sattr3 { return nfsc.Sattr3{Mode: nfsc.SetMode{SetIt: true, Mode: m}} }
	if st, _ := call(t, c, &mknodArgs{hdr(11, root), tmp, "null", nfsc.NF3Chr, mode(0o666), 1, 3}); st != 0 {
		t.Fatalf("mknod chr: %d", st)
	}
	if st, _ := call(t, c, &mknodArgs{hdr(11, root), tmp, "sda", nfsc.NF3Blk, mode(0o660), 8, 0}); st != 0 {
		t.Fatalf("mknod blk: %d", st)
	}
	if st, _ := call(t, c, &mknodPipeArgs{hdr(11, root), tmp, "fifo", nfsc.NF3FIFO, mode(0o600)}); st != 0 {
		t.Fatalf("mknod fifo: %d", st)
	}
	if st, _ := call(t, c, &mknodPipeArgs{hdr(11, root), tmp, "sock", nfsc.NF3Sock, mode(0o755)}); st != 0 {
		t.Fatalf("mknod sock: %d", st)
	}
	for name, w := range map[string][3]uint32{"null": {nfsc.NF3Chr, 1, 3}, "sda": {nfsc.NF3Blk, 8, 0}, "fifo": {nfsc.NF3FIFO}, "sock": {nfsc.NF3Sock}} {
		_, at := getattr(t, c, root, lookupFH(t, a, "/tmp/"+name))
		if at.Type != w[0] || at.SpecData != [2]uint32{w[1], w[2]} {
			t.Errorf("%s: type %d spec %v", name, at.Type, at.SpecData)
		}
	}
	if st, _ := call(t, c, &mknodArgs{hdr(11, userAuth(1000, 1000)), lookupFH(t, a, "/home/pi"), "evil", nfsc.NF3Chr, mode(0o666), 1, 1}); st != nfsc.NFS3ErrPerm {
		t.Errorf("mknod chr by a user: %d", st)
	}

	// SETATTR keeps setuid, setgid and sticky bits (go-nfs drops them).
	sudoCopy := lookupFH(t, a, "/tmp/orig")
	if st, _ := call(t, c, &setattrArgs{hdr(2, root), sudoCopy, mode(0o4755), 0}); st != 0 {
		t.Fatalf("setattr: %d", st)
	}
	if _, at := getattr(t, c, root, sudoCopy); at.FileMode&0o7777 != 0o4755 {
		t.Fatalf("mode after chmod 4755: %o", at.FileMode&0o7777)
	}
	own := nfsc.Sattr3{UID: nfsc.SetUID{SetIt: true, UID: 1000}, GID: nfsc.SetUID{SetIt: true, UID: 1000}}
	if st, _ := call(t, c, &setattrArgs{hdr(2, userAuth(1000, 1000)), sudoCopy, own, 0}); st != nfsc.NFS3ErrPerm {
		t.Fatalf("chown by a user: %d", st)
	}
	if st, _ := call(t, c, &setattrArgs{hdr(2, root), sudoCopy, own, 0}); st != 0 {
		t.Fatalf("chown by root: %d", st)
	}
	if _, at := getattr(t, c, root, sudoCopy); at.UID != 1000 || at.GID != 1000 || at.FileMode&0o7777 != 0o755 {
		t.Fatalf("after chown: %d:%d %o (chown clears setuid)", at.UID, at.GID, at.FileMode&0o7777)
	}
	size := nfsc.Sattr3{Size: nfsc.SetSize{SetIt: true, Size: 3}}
	if st, _ := call(t, c, &setattrArgs{hdr(2, root), sudoCopy, size, 0}); st != 0 {
		t.Fatalf("truncate: %d", st)
	}
	if got := readFile(t, a, "/tmp/orig"); got != "lin" {
		t.Fatalf("after truncate: %q", got)
	}

	// ACCESS answers from the mode bits for the caller.
	accessOf := func(auth rpc.Auth, p string) uint32 {
		st, res := call(t, c, &accessArgs{hdr(4, auth), lookupFH(t, a, p), 0x3f})
		if st != 0 {
			t.Fatalf("access %s: %d", p, st)
		}
		var post nfsc.PostOpAttr
		xdr.Read(res, &post)
		m, _ := xdr.ReadUint32(res)
		return m
	}
	if m := accessOf(userAuth(1000, 1000), "/etc/hostname"); m != 0x01 {
		t.Errorf("user access to /etc/hostname: %#x, want read only", m)
	}
	if m := accessOf(root, "/etc/hostname"); m != 0x0d {
		t.Errorf("root access to /etc/hostname: %#x", m)
	}
	if m := accessOf(userAuth(1000, 1000), "/home/pi"); m != 0x1f {
		t.Errorf("pi access to /home/pi: %#x", m)
	}
	if m := accessOf(userAuth(2000, 2000), "/home/pi"); m != 0 {
		t.Errorf("stranger access to /home/pi: %#x", m)
	}

	// Exact errors: RMDIR of a non-empty directory, REMOVE of a directory.
	usr := lookupFH(t, a, "/usr")
	if st, _ := call(t, c, &dirOpArgs{hdr(13, root), usr, "share"}); st != nfsc.NFS3ErrNotEmpty {
		t.Errorf("rmdir non-empty: %d", st)
	}
	if st, _ := call(t, c, &dirOpArgs{hdr(12, root), usr, "share"}); st != nfsc.NFS3ErrIsDir {
		t.Errorf("remove a directory: %d", st)
	}
	if st, _ := call(t, c, &renameArgs{hdr(14, root), usr, "share", lookupFH(t, a, "/usr/share/doc"), "x"}); st != nfsc.NFS3ErrInval {
		t.Errorf("rename into itself: %d", st)
	}
	if st, _ := call(t, c, &dirOpArgs{hdr(12, userAuth(1000, 1000)), lookupFH(t, a, "/etc"), "hosts"}); st != nfsc.NFS3ErrAcces {
		t.Errorf("user removes /etc/hosts: %d", st)
	}
}

// TestCredentials: files created over NFS belong to the caller; a user
// cannot write what the mode forbids.
func TestCredentials(t *testing.T) {
	h := newHarness(t, nil)
	pi := h.mustMount(machA, userAuth(1000, 1000))
	writeFile(t, pi, "/home/pi/new.txt", "mine")
	c := h.dial()
	_, at := getattr(t, c, rootAuth(), lookupFH(t, pi, "/home/pi/new.txt"))
	if at.UID != 1000 || at.GID != 1000 || at.FileMode&0o777 != 0o644 {
		t.Fatalf("new file: %d:%d %o", at.UID, at.GID, at.FileMode&0o7777)
	}
	if _, err := pi.Mkdir("/home/pi/shared/sub", 0o755); err != nil {
		t.Fatal(err)
	}
	_, at = getattr(t, c, rootAuth(), lookupFH(t, pi, "/home/pi/shared/sub"))
	if at.FileMode&0o7777 != 0o2755 || at.GID != 1000 {
		t.Fatalf("setgid directory not inherited: %o gid %d", at.FileMode&0o7777, at.GID)
	}
	f, err := pi.OpenFile("/etc/hostname", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("evil")); err == nil {
		t.Fatal("user wrote /etc/hostname")
	}
	if _, err := pi.Create("/etc/evil", 0o644); err == nil {
		t.Fatal("user created a file in /etc")
	}
	if st, data := readFH(t, c, userAuth(1000, 1000), lookupFH(t, pi, "/etc/shadow"), 100); st == 0 {
		t.Fatalf("user read /etc/shadow: %q", data)
	}
	if got := readFile(t, h.mustMount(machA, rootAuth()), "/etc/hostname"); got != "host-3a7f\n" {
		t.Fatalf("hostname changed: %q", got)
	}
}

// TestExtraDisk: a disk is exported to its machine only, for root only,
// and reads and writes reach the sparse image file.
func TestExtraDisk(t *testing.T) {
	h := newHarness(t, nil)
	if _, err := h.be.mgr.PutDisk(machA, "data", 4<<20); err != nil {
		t.Fatal(err)
	}
	h.be.disks[machA] = []string{"data"}
	m := &nfsc.Mount{Client: h.dial()}
	d, err := m.Mount(DiskExportPath(machA, "data"), rootAuth())
	if err != nil {
		t.Fatal(err)
	}
	ents, err := d.ReadDirPlus("/")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range ents {
		if e.FileName == "data.img" {
			found = true
			if e.Attr.Attr.Filesize != 4<<20 || e.Attr.Attr.FileMode&0o777 != 0o600 {
				t.Fatalf("data.img attrs %+v", e.Attr.Attr)
			}
		}
	}
	if !found {
		t.Fatalf("listing: %+v", ents)
	}
	f, err := d.OpenFile("/data.img", 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Seek(1<<20, 0)
	if _, err := f.Write([]byte("superblock")); err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 10)
	hf, _ := os.Open(h.be.mgr.DiskPath(machA, "data"))
	hf.ReadAt(raw, 1<<20)
	hf.Close()
	if string(raw) != "superblock" {
		t.Fatalf("host file has %q", raw)
	}
	// A user on the machine may not read the disk.
	pm := &nfsc.Mount{Client: h.dial()}
	pd, err := pm.Mount(DiskExportPath(machA, "data"), userAuth(1000, 1000))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := readFH(t, h.dial(), userAuth(1000, 1000), lookupFH(t, pd, "/data.img"), 10); st == 0 {
		t.Fatal("a user read the disk")
	}
	// Machine B cannot mount A's disk.
	diskFH := lookupFH(t, d, "/data.img")
	h.be.setIP("127.0.0.1", machB)
	if _, err := (&nfsc.Mount{Client: h.dial()}).Mount(DiskExportPath(machA, "data"), rootAuth()); err == nil {
		t.Fatal("another machine mounted the disk")
	}
	// A handle of the disk taken before does not work for B.
	if st, _ := readFH(t, h.dial(), rootAuth(), diskFH, 10); st != nfsc.NFS3ErrStale {
		t.Fatalf("A's disk handle used by B: status %d", st)
	}
	if !bytes.Contains([]byte(h.be.eventsOf("nfs.refused")[0].msg), []byte("refused")) {
		t.Fatal("no refusal event")
	}
}
