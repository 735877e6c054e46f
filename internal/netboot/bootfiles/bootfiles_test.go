package bootfiles

import (
	"bytes"
	"errors"
	"io"
	iofs "io/fs"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bakeryhq/bakery/internal/fs"
)

// memFS is a read-only in-memory filesystem with just the calls the library
// makes; the rest of fs.Filesystem panics through the nil embedded value.
type memFS struct {
	fs.Filesystem
	typ   string
	files map[string][]byte // absolute path -> content; directories implied
	links map[string]string
	opens *atomic.Int64
}

func (m *memFS) Type() string { return m.typ }

func (m *memFS) resolve(p string) string {
	if t, ok := m.links[p]; ok {
		if !strings.HasPrefix(t, "/") {
			t = p[:strings.LastIndexByte(p, '/')+1] + t
		}
		return t
	}
	return p
}

func (m *memFS) Stat(p string) (fs.FileInfo, error) {
	p = m.resolve(p)
	if b, ok := m.files[p]; ok {
		return fs.FileInfo{Name: p[strings.LastIndexByte(p, '/')+1:], Mode: 0o644, Size: int64(len(b))}, nil
	}
	for k := range m.files {
		if strings.HasPrefix(k, p+"/") {
			return fs.FileInfo{Name: p, Mode: iofs.ModeDir | 0o755}, nil
		}
	}
	return fs.FileInfo{}, &iofs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
}

func (m *memFS) ReadDir(dir string) ([]fs.FileInfo, error) {
	prefix := strings.TrimSuffix(dir, "/") + "/"
	seen := map[string]fs.FileInfo{}
	add := func(k string) {
		if !strings.HasPrefix(k, prefix) {
			return
		}
		rest := k[len(prefix):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seen[rest[:i]] = fs.FileInfo{Name: rest[:i], Mode: iofs.ModeDir | 0o755}
		} else {
			seen[rest] = fs.FileInfo{Name: rest, Mode: 0o644}
		}
	}
	for k := range m.files {
		add(k)
	}
	for k := range m.links {
		add(k)
	}
	var out []fs.FileInfo
	for _, fi := range seen {
		out = append(out, fi)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

type memFile struct {
	*bytes.Reader
	size int64
}

func (f memFile) Close() error { return nil }
func (f memFile) Size() int64  { return f.size }

func (m *memFS) Open(p string) (fs.File, error) {
	p = m.resolve(p)
	b, ok := m.files[p]
	if !ok {
		return nil, &iofs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
	}
	if m.opens != nil {
		m.opens.Add(1)
	}
	return memFile{bytes.NewReader(b), int64(len(b))}, nil
}

type memImage struct {
	parts  map[string]*memFS
	closed atomic.Bool
}

func (m *memImage) Filesystem(part string) (fs.Filesystem, error) {
	if f, ok := m.parts[part]; ok {
		return f, nil
	}
	return nil, errors.New("no " + part + " partition")
}
func (m *memImage) Close() error { m.closed.Store(true); return nil }

func TestLibraryCacheAndStreaming(t *testing.T) {
	var opens atomic.Int64
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	boot := &memFS{typ: "fat32", opens: &opens, files: map[string][]byte{"/start4.elf": []byte("firmware"), "/kernel8.img": big}}
	im := &memImage{parts: map[string]*memFS{PartBoot: boot}}
	var imageOpens int
	lib := NewLibrary(func(string) (Image, error) { imageOpens++; return im, nil }, 1<<20) // caches files up to 256 KiB

	for i := 0; i < 3; i++ {
		f, err := lib.Open("sha", "/x.img", Location{PartBoot, "/start4.elf"})
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, f.Size)
		f.ReadAt(b, 0)
		f.Close()
		if string(b) != "firmware" {
			t.Fatalf("read %q", b)
		}
	}
	if opens.Load() != 1 || imageOpens != 1 {
		t.Fatalf("small file opened %d times, image %d times; want 1 and 1 (cache)", opens.Load(), imageOpens)
	}
	// Big files stream from the image concurrently.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := lib.Open("sha", "/x.img", Location{PartBoot, "/kernel8.img"})
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			got, _ := io.ReadAll(io.NewSectionReader(f, 0, f.Size))
			if !bytes.Equal(got, big) {
				t.Error("big file differs")
			}
		}()
	}
	wg.Wait()
	if st := lib.Stats(); st.Hits != 2 || st.Entries != 1 || st.OpenImages != 1 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := lib.Open("sha", "/x.img", Location{PartBoot, "/missing"}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if !lib.Exists("sha", "/x.img", Location{PartBoot, "/kernel8.img"}) || lib.Exists("sha", "/x.img", Location{PartRoot, "/x"}) {
		t.Fatal("Exists")
	}
	// Forget closes the image once no transfer holds it.
	f, _ := lib.Open("sha", "/x.img", Location{PartBoot, "/kernel8.img"})
	lib.Forget("sha")
	if im.closed.Load() {
		t.Fatal("image closed under a running transfer")
	}
	f.Close()
	if !im.closed.Load() {
		t.Fatal("image not closed after the last transfer")
	}
	if st := lib.Stats(); st.Entries != 0 || st.OpenImages != 0 {
		t.Fatalf("after Forget: %+v", st)
	}
}

func TestLRUEviction(t *testing.T) {
	c := newLRU(10)
	c.put("a", []byte("aaaa"))
	c.put("b", []byte("bbbb"))
	c.get("a")
	c.put("c", []byte("cccc")) // evicts b, the least recently used
	if _, ok := c.get("b"); ok {
		t.Fatal("b not evicted")
	}
	if _, ok := c.get("a"); !ok {
		t.Fatal("a evicted")
	}
	c.put("huge", make([]byte, 11))
	if _, ok := c.get("huge"); ok || c.size > 10 {
		t.Fatalf("oversized entry cached, size %d", c.size)
	}
}

func TestRenderCmdline(t *testing.T) {
	base := []byte("console=serial0,115200 console=tty1 root=PARTUUID=x rootwait\n")
	if got := RenderCmdline(base); !bytes.Equal(got, base) {
		t.Fatalf("no additions changed the file: %q", got)
	}
	got := RenderCmdline(base, "quiet  ", "", "systemd.unit=rescue.target\nevil")
	want := "console=serial0,115200 console=tty1 root=PARTUUID=x rootwait quiet systemd.unit=rescue.target evil\n"
	if string(got) != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	if got := RenderCmdline([]byte("a b \r\nsecond line ignored by the kernel\n"), "c"); string(got) != "a b c\n" {
		t.Fatalf("multi-line base: %q", got)
	}
	if got := RenderCmdline(nil, "ip=dhcp"); string(got) != "ip=dhcp\n" {
		t.Fatalf("empty base: %q", got)
	}
}

func TestRenderConfig(t *testing.T) {
	base := []byte("[pi4]\narm_boost=1\n[cm4]\notg_mode=1")
	if got := RenderConfig(base, " \n"); !bytes.Equal(got, base) {
		t.Fatalf("blank addition changed the file: %q", got)
	}
	got := RenderConfig(base, "dtoverlay=disable-wifi\r\nenable_uart=1\n")
	want := "[pi4]\narm_boost=1\n[cm4]\notg_mode=1\n\n# added by bakery serve for this machine\n[all]\ndtoverlay=disable-wifi\nenable_uart=1\n"
	if string(got) != want {
		t.Fatalf("got %q\nwant %q", got, want)
	}
}

func TestInspectImage(t *testing.T) {
	pi := &memImage{parts: map[string]*memFS{PartBoot: {typ: "fat32", files: map[string][]byte{
		"/start4.elf": {1}, "/fixup4.dat": {1}, "/config.txt": {1}, "/cmdline.txt": {1}, "/bcm2711-rpi-4-b.dtb": {1},
		"/overlays/vc4.dtbo": {1}, "/kernel8.img": {1}, "/notes.txt": {1}}}}}
	info, err := InspectImage(pi)
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != KindPi || strings.Join(info.BootFiles, ",") != "bcm2711-rpi-4-b.dtb,cmdline.txt,config.txt,fixup4.dat,kernel8.img,overlays/,start4.elf" {
		t.Fatalf("%+v", info)
	}
	vm := &memImage{parts: map[string]*memFS{
		PartBoot: {typ: "fat32", files: map[string][]byte{"/EFI/BOOT/BOOTX64.EFI": {1}}},
		PartRoot: {typ: "ext4", files: map[string][]byte{"/boot/vmlinuz-6.1.0-9": {1}, "/boot/vmlinuz-6.1.0-18": {1},
			"/boot/initrd.img-6.1.0-18": {1}, "/etc/os-release": {1}}},
	}}
	if info, err := InspectImage(vm); err != nil || info.Kind != KindPXE || info.Kernel != "root:/boot/vmlinuz-6.1.0-9" && info.Kernel != "root:/boot/vmlinuz-6.1.0-18" {
		t.Fatalf("%+v %v", info, err)
	}
	linked := &memImage{parts: map[string]*memFS{PartRoot: {typ: "ext4",
		files: map[string][]byte{"/boot/vmlinuz-6.1.0-18": {1}, "/boot/initrd.img-6.1.0-18": {1}},
		links: map[string]string{"/boot/vmlinuz": "vmlinuz-6.1.0-18", "/boot/initrd.img": "initrd.img-6.1.0-18"}}}}
	if info, err := InspectImage(linked); err != nil || info.Kernel != "root:/boot/vmlinuz" || info.Initrd != "root:/boot/initrd.img" {
		t.Fatalf("links: %+v %v", info, err)
	}
	empty := &memImage{parts: map[string]*memFS{PartBoot: {typ: "fat32", files: map[string][]byte{"/readme.txt": {1}}}}}
	if _, err := InspectImage(empty); !errors.Is(err, ErrNotBootable) {
		t.Fatalf("empty boot partition: %v", err)
	}
	notFat := &memImage{parts: map[string]*memFS{PartBoot: {typ: "ext4", files: map[string][]byte{"/start4.elf": {1}}}}}
	if _, err := InspectImage(notFat); !errors.Is(err, ErrNotBootable) {
		t.Fatalf("ext4 boot partition: %v", err)
	}
}

func TestParseLocation(t *testing.T) {
	if l, err := ParseLocation("root:/boot/../x"); err == nil {
		t.Fatalf("accepted %v", l)
	}
	if l, err := ParseLocation("boot:/a//b"); err != nil || l.Path != "/a/b" {
		t.Fatalf("%v %v", l, err)
	}
}

func TestIPXEScript(t *testing.T) {
	got := IPXEScript("http://s/k", "http://s/i", "console=ttyS0 ")
	want := "#!ipxe\nkernel http://s/k initrd=initrd console=ttyS0\ninitrd --name initrd http://s/i\nboot\n"
	if got != want {
		t.Fatalf("got %q", got)
	}
}

func TestRenderNFSRootCmdline(t *testing.T) {
	base := []byte("console=serial0,115200 console=tty1 root=PARTUUID=5452574f-02 rootfstype=ext4 fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\nignored\n")
	root := NFSRoot{Server: "192.168.1.10", Export: "/machines/3a7f91c2", Port: 2049}
	got := string(RenderNFSRootCmdline(base, root, "systemd.unit=rescue.target"))
	want := "console=serial0,115200 console=tty1 fsck.repair=yes quiet root=/dev/nfs nfsroot=192.168.1.10:/machines/3a7f91c2,vers=3,tcp,port=2049,mountport=2049,nolock rw ip=dhcp rootwait systemd.unit=rescue.target\n"
	if got != want {
		t.Fatalf("got  %q\nwant %q", got, want)
	}
	imager := []byte("console=tty1 root=PARTUUID=x rootfstype=ext4 rootwait quiet init=/usr/lib/raspi-config/init_resize.sh systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target")
	if got := string(RenderNFSRootCmdline(imager, root)); got != "console=tty1 quiet "+root.Args()+"\n" {
		t.Fatalf("imager: %q", got)
	}
	if got := string(RenderNFSRootCmdline(nil, root)); got != root.Args()+"\n" {
		t.Fatalf("no base: %q", got)
	}
}

// FuzzRenderCmdline renders a machine's cmdline.txt from an image's: the
// result is always one line, ends in a newline when anything was added,
// and carries every added argument.
func FuzzRenderCmdline(f *testing.F) {
	f.Add([]byte("console=serial0,115200 root=PARTUUID=1234-02 rootwait init=/usr/lib/raspberrypi-sys-mods/firstboot\n"), "quiet")
	f.Add([]byte("\n\n root=/dev/nfs nfsroot=x\r\n"), "a\nb")
	f.Fuzz(func(t *testing.T, base []byte, extra string) {
		for _, out := range [][]byte{
			RenderCmdline(base, extra),
			RenderNFSRootCmdline(base, NFSRoot{Server: "10.0.0.1", Export: "/machines/3a7f91c2", Port: 2049}, extra),
		} {
			if strings.TrimSpace(extra) == "" {
				continue
			}
			if i := bytes.IndexByte(out, '\n'); i != len(out)-1 {
				t.Fatalf("not one line: %q", out)
			}
			for _, a := range strings.Fields(extra) {
				if !bytes.Contains(out, []byte(a)) {
					t.Fatalf("%q lost %q", out, a)
				}
			}
		}
	})
}
