package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	iofs "io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/netboot/bootfiles"
)

// dirFS serves a host directory read-only as an fs.Filesystem, standing in
// for an image partition in unit tests (the end-to-end tests use real images
// through the engine). Unused methods panic through the nil embedded value.
type dirFS struct {
	fs.Filesystem
	root string
	typ  string
}

func (d dirFS) Type() string { return d.typ }

func (d dirFS) host(p string) (string, error) {
	clean, err := fs.Clean(p)
	if err != nil {
		return "", err
	}
	return filepath.Join(d.root, filepath.FromSlash(clean)), nil
}

func (d dirFS) Stat(p string) (fs.FileInfo, error) {
	h, err := d.host(p)
	if err != nil {
		return fs.FileInfo{}, err
	}
	fi, err := os.Stat(h)
	if err != nil {
		return fs.FileInfo{}, err
	}
	return fs.FileInfo{Name: fi.Name(), Mode: fi.Mode(), Size: fi.Size()}, nil
}

func (d dirFS) ReadDir(p string) ([]fs.FileInfo, error) {
	h, err := d.host(p)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(h)
	if err != nil {
		return nil, err
	}
	var out []fs.FileInfo
	for _, e := range ents {
		fi, _ := e.Info()
		out = append(out, fs.FileInfo{Name: e.Name(), Mode: fi.Mode(), Size: fi.Size()})
	}
	return out, nil
}

type osFile struct{ *os.File }

func (f osFile) Size() int64 { fi, _ := f.Stat(); return fi.Size() }

func (d dirFS) Open(p string) (fs.File, error) {
	h, err := d.host(p)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(h)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

type dirImage struct{ parts map[string]dirFS }

func (d dirImage) Filesystem(part string) (fs.Filesystem, error) {
	if f, ok := d.parts[part]; ok {
		return f, nil
	}
	return nil, &iofs.PathError{Op: "partition", Path: part, Err: iofs.ErrNotExist}
}
func (d dirImage) Close() error { return nil }

// fakeImages maps the SHA-256 of uploaded bytes to directory trees.
type fakeImages struct {
	mu    sync.Mutex
	trees map[string]map[string]string // sha -> part -> dir
}

func (f *fakeImages) add(t *testing.T, payload []byte, parts map[string]map[string]string) string {
	t.Helper()
	sum := sha256.Sum256(payload)
	sha := hex.EncodeToString(sum[:])
	dirs := map[string]string{}
	for part, files := range parts {
		dir := t.TempDir()
		for name, content := range files {
			p := filepath.Join(dir, filepath.FromSlash(name))
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		dirs[part] = dir
	}
	f.mu.Lock()
	f.trees[sha] = dirs
	f.mu.Unlock()
	return sha
}

func (f *fakeImages) open(path string) (bootfiles.Image, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	f.mu.Lock()
	dirs, ok := f.trees[hex.EncodeToString(sum[:])]
	f.mu.Unlock()
	if !ok {
		return nil, bootfiles.ErrNotBootable
	}
	im := dirImage{parts: map[string]dirFS{}}
	for part, dir := range dirs {
		typ := "ext4"
		if part == bootfiles.PartBoot {
			typ = "fat32"
		}
		im.parts[part] = dirFS{root: dir, typ: typ}
	}
	return im, nil
}

func (f *fakeImages) inspect(path string) (bootfiles.Info, error) {
	im, err := f.open(path)
	if err != nil {
		return bootfiles.Info{}, err
	}
	return bootfiles.InspectImage(im)
}

// testServer is a server on loopback sockets with fake images.
type testServer struct {
	*Server
	t      *testing.T
	url    string
	admin  string
	images *fakeImages
	logs   *syncBuffer
	stop   func()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type options struct {
	dataDir  string
	dhcp     net.PacketConn
	replyTo  *net.UDPAddr
	images   *fakeImages
	neighbor func(netip.Addr) (string, bool)
	mutate   func(*Config)
	// nfs runs the NFS server (on loopback); the issue 5 tests run without.
	nfs bool
}

func startTest(t *testing.T, o options) *testServer {
	t.Helper()
	if o.dataDir == "" {
		o.dataDir = t.TempDir()
	}
	if o.images == nil {
		o.images = &fakeImages{trees: map[string]map[string]string{}}
	}
	logs := &syncBuffer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tconn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		DataDir: o.dataDir, Listener: ln, TFTPConn: tconn, TFTPTimeout: 200 * time.Millisecond, DisableNFS: !o.nfs,
		DHCPConn: o.dhcp, DHCPReplyTo: o.replyTo, DHCPReplyDelay: time.Millisecond,
		Advertise: netip.MustParseAddr("127.0.0.1"), Version: "test",
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OpenImage: o.images.open, InspectImage: o.images.inspect,
		Neighbor: o.neighbor,
	}
	if cfg.Neighbor == nil {
		cfg.Neighbor = func(netip.Addr) (string, bool) { return "", false }
	}
	if o.nfs {
		nfsLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.NFSListener = nfsLn
	}
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	ts := &testServer{Server: srv, t: t, url: "http://" + ln.Addr().String(), images: o.images, logs: logs}
	ts.stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(ts.stop)
	b, err := os.ReadFile(filepath.Join(o.dataDir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	ts.admin = strings.TrimSpace(string(b))
	return ts
}

// do sends a request and decodes a JSON answer into out (if non-nil).
func (ts *testServer) do(method, path, token string, body io.Reader, out any) int {
	ts.t.Helper()
	req, err := http.NewRequest(method, ts.url+path, body)
	if err != nil {
		ts.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		ts.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			ts.t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	if resp.StatusCode >= 400 {
		ts.t.Logf("%s %s -> %d %s", method, path, resp.StatusCode, strings.TrimSpace(string(raw)))
	}
	return resp.StatusCode
}

func (ts *testServer) putJSON(path, token string, v any, out any) int {
	b, _ := json.Marshal(v)
	return ts.do(http.MethodPut, path, token, bytes.NewReader(b), out)
}

// piTree is a Raspberry Pi 4 boot partition.
func piTree(cmdline string) map[string]map[string]string {
	return map[string]map[string]string{bootfiles.PartBoot: {
		"start4.elf": "start4 firmware", "fixup4.dat": "fixup", "bcm2711-rpi-4-b.dtb": "dtb",
		"overlays/vc4-kms-v3d.dtbo": "overlay", "kernel8.img": "kernel image", "bootcode.bin": "bootcode for pi 3",
		"config.txt": "[all]\narm_64bit=1\n", "cmdline.txt": cmdline,
	}}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
