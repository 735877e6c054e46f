// Command tftpbench measures bakery's TFTP server against dnsmasq's: N
// clients at once each fetch a Raspberry Pi 4 boot set (about 30 MB of
// placeholder files of realistic sizes) from both servers, serving the same
// files, in the same run. It prints aggregate throughput, the ratio to
// dnsmasq, and the windowsize (RFC 7440) gain over lock-step. Run it through
// bench/tftp.sh.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/bakeryhq/bakery/internal/netboot/tftp"
)

// serve runs bakery's TFTP server on dir until stdin closes.
func serve(dir, listen, profile string) error {
	files := memResolver{}
	for _, f := range bootSet {
		b, err := os.ReadFile(filepath.Join(dir, f.name))
		if err != nil {
			return err
		}
		files[f.name] = b
	}
	conn, err := net.ListenPacket("udp4", listen)
	if err != nil {
		return err
	}
	srv, err := tftp.New(tftp.Config{Conn: conn, Resolver: files, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxWindowSize: 64})
	if err != nil {
		return err
	}
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { io.Copy(io.Discard, os.Stdin); cancel() }()
	fmt.Println(conn.LocalAddr().String())
	return srv.Serve(ctx)
}

var cpuProfile string

// bootSet is a Pi 4 boot: file name and size.
var bootSet = []struct {
	name string
	size int
}{
	{"start4.elf", 2_275_000},
	{"fixup4.dat", 5_400},
	{"config.txt", 1_200},
	{"bcm2711-rpi-4-b.dtb", 52_600},
	{"overlays/overlay_map.dtb", 5_300},
	{"overlays/vc4-kms-v3d.dtbo", 3_000},
	{"cmdline.txt", 110},
	{"kernel8.img", 8_600_000},
	{"initramfs8", 19_200_000},
}

type memResolver map[string][]byte

func (m memResolver) Resolve(_ context.Context, rq tftp.Request) (tftp.Content, error) {
	b, ok := m[rq.Path.File]
	if !ok {
		return tftp.Content{}, tftp.ErrNotFound
	}
	return tftp.Content{R: bytes.NewReader(b), Size: int64(len(b))}, nil
}

func main() {
	clients := flag.Int("clients", 50, "concurrent clients")
	blksize := flag.Int("blksize", 1024, "block size (a Pi 4 asks 1024)")
	window := flag.Int("windowsize", 64, "windowsize for the windowed run (RFC 7440 finds gains level off near 64)")
	host := flag.String("host", "127.0.0.1", "address both servers listen on")
	scale := flag.Int("scale", 1, "divide file sizes by this (quick runs)")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the bakery server")
	serveDir := flag.String("serve", "", "internal: serve this directory on -listen and wait for stdin to close")
	listen := flag.String("listen", "127.0.0.1:0", "internal: address for -serve")
	flag.Parse()
	if *serveDir != "" {
		if err := serve(*serveDir, *listen, *profile); err != nil {
			fmt.Fprintln(os.Stderr, "tftpbench:", err)
			os.Exit(1)
		}
		return
	}
	cpuProfile = *profile
	for i := range bootSet {
		bootSet[i].size /= *scale
	}
	if err := run(*clients, *blksize, *window, *host); err != nil {
		fmt.Fprintln(os.Stderr, "tftpbench:", err)
		os.Exit(1)
	}
}

func run(clients, blksize, window int, host string) error {
	root, err := os.MkdirTemp("", "tftpbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	files := memResolver{}
	var total int64
	for i, f := range bootSet {
		b := make([]byte, f.size)
		for j := range b {
			b[j] = byte(i*31 + j*7)
		}
		p := filepath.Join(root, f.name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return err
		}
		files[f.name] = b
		total += int64(f.size)
	}

	// bakery's server in a process of its own, like dnsmasq, serving the
	// same files from memory (as its boot file cache does).
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"-serve", root, "-listen", net.JoinHostPort(host, "0")}
	if cpuProfile != "" {
		args = append(args, "-cpuprofile", cpuProfile)
	}
	srvCmd := exec.Command(self, args...)
	srvIn, _ := srvCmd.StdinPipe()
	srvOut, _ := srvCmd.StdoutPipe()
	srvCmd.Stderr = os.Stderr
	if err := srvCmd.Start(); err != nil {
		return err
	}
	defer func() { srvIn.Close(); srvCmd.Wait() }()
	var ours string
	if _, err := fmt.Fscanln(srvOut, &ours); err != nil {
		return fmt.Errorf("bakery server did not start: %w", err)
	}

	// dnsmasq's TFTP server on port 69 of the same address.
	dnsmasq := exec.Command("dnsmasq", "--no-daemon", "--port=0", "--enable-tftp", "--tftp-root="+root,
		"--listen-address="+host, "--bind-interfaces", "--tftp-max=1000", "--pid-file="+filepath.Join(root, "pid"), "--user=root")
	var dlog bytes.Buffer
	dnsmasq.Stderr = &dlog
	if err := dnsmasq.Start(); err != nil {
		return fmt.Errorf("start dnsmasq: %w", err)
	}
	defer func() { dnsmasq.Process.Kill(); dnsmasq.Wait() }()
	theirs := net.JoinHostPort(host, "69")
	if err := waitFor(theirs); err != nil {
		return fmt.Errorf("dnsmasq did not answer: %w\n%s", err, dlog.String())
	}

	fmt.Printf("boot set: %d files, %.1f MB per client; %d clients; blksize %d\n", len(bootSet), float64(total)/1e6, clients, blksize)
	lock := tftp.FetchOptions{BlockSize: blksize, TSize: true, Timeout: 2 * time.Second}
	win := lock
	win.WindowSize = window

	dn, err := measure(theirs, clients, lock, files)
	if err != nil {
		return fmt.Errorf("dnsmasq: %w", err)
	}
	us, err := measure(ours, clients, lock, files)
	if err != nil {
		return fmt.Errorf("bakery: %w", err)
	}
	uw, err := measure(ours, clients, win, files)
	if err != nil {
		return fmt.Errorf("bakery windowed: %w", err)
	}
	one, err := measure(ours, 1, lock, files)
	if err != nil {
		return err
	}
	oneW, err := measure(ours, 1, win, files)
	if err != nil {
		return err
	}
	fmt.Printf("dnsmasq  lock-step      %d clients: %8.1f MB/s\n", clients, dn)
	fmt.Printf("bakery   lock-step      %d clients: %8.1f MB/s\n", clients, us)
	fmt.Printf("bakery   windowsize %-3d %d clients: %8.1f MB/s\n", window, clients, uw)
	fmt.Printf("bakery   lock-step       1 client:  %8.1f MB/s\n", one)
	fmt.Printf("bakery   windowsize %-3d  1 client:  %8.1f MB/s\n", window, oneW)
	fmt.Printf("ratio bakery/dnsmasq (lock-step, %d clients): %.2fx (target >= 1.0x)\n", clients, us/dn)
	fmt.Printf("windowsize gain (%d clients): %.2fx; single client: %.2fx (target >= 4x)\n", clients, uw/us, oneW/one)
	return nil
}

// measure runs n clients, each fetching the whole boot set, and returns the
// aggregate throughput in MB/s. Every byte is checked.
func measure(addr string, n int, o tftp.FetchOptions, want memResolver) (float64, error) {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	var bytesMu sync.Mutex
	var got int64
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for _, f := range bootSet {
				buf.Reset()
				k, err := tftp.Fetch(context.Background(), addr, f.name, o, &buf)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", f.name, err)
					return
				}
				if !bytes.Equal(buf.Bytes(), want[f.name]) {
					errs <- fmt.Errorf("%s: content differs", f.name)
					return
				}
				bytesMu.Lock()
				got += k
				bytesMu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(got) / 1e6 / time.Since(start).Seconds(), nil
}

func waitFor(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := tftp.Fetch(context.Background(), addr, "cmdline.txt", tftp.FetchOptions{Timeout: 200 * time.Millisecond, Retries: 1}, io.Discard)
		if err == nil || strings.Contains(fmt.Sprint(err), "tftp error") {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
