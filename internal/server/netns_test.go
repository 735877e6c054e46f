package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/client"
	"github.com/bakeryhq/bakery/internal/netboot/bootfiles"
	"github.com/bakeryhq/bakery/internal/netboot/dhcp"
	"github.com/bakeryhq/bakery/internal/testimage"
	"golang.org/x/sys/unix"
)

// The end-to-end tests run bakery serve in one network namespace and real
// clients (busybox udhcpc, curl, atftp) in another, joined by a veth pair.
// The server is this test binary re-executed inside the server namespace
// (TestNetnsServerHelper), so that every socket it opens, including the
// per-transfer TFTP sockets, lives there.

const helperEnv = "BAKERY_NETNS_SERVE"

// TestNetnsServerHelper is not a test: it is the server process of the
// namespace tests, run only when helperEnv is set.
func TestNetnsServerHelper(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process for the netns tests")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv, err := New(Config{
		DataDir: os.Getenv("BAKERY_NETNS_DATA"), Listen: os.Getenv("BAKERY_NETNS_LISTEN"),
		Interface: os.Getenv("BAKERY_NETNS_IFACE"), DHCPReplyDelay: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "HELPER-ERROR", err)
		os.Exit(3)
	}
	fmt.Println("HELPER-READY")
	if err := srv.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "HELPER-ERROR", err)
		os.Exit(3)
	}
	os.Exit(0)
}

// netLab is two namespaces and a veth pair: server 10.77.N.1, client 10.77.N.2.
type netLab struct {
	t              *testing.T
	srvNS, cliNS   string
	srvIf, cliIf   string
	srvIP, cliIP   string
	data, api      string
	admin          string
	serverLog      *syncBuffer
	client         *client.Client
	stopServerFunc func()
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newNetLab(t *testing.T) *netLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespace tests need root")
	}
	testimage.Need(t, "ip")
	if err := exec.Command("ip", "netns", "list").Run(); err != nil {
		t.Skipf("ip netns unavailable: %v", err)
	}
	n := os.Getpid() % 200
	l := &netLab{
		t: t, srvNS: fmt.Sprintf("bks%d", os.Getpid()), cliNS: fmt.Sprintf("bkc%d", os.Getpid()),
		srvIf: fmt.Sprintf("bks%d", n), cliIf: fmt.Sprintf("bkc%d", n),
		srvIP: fmt.Sprintf("10.77.%d.1", n), cliIP: fmt.Sprintf("10.77.%d.2", n),
	}
	run(t, "ip", "netns", "add", l.srvNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.srvNS).Run() })
	run(t, "ip", "netns", "add", l.cliNS)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.cliNS).Run() })
	run(t, "ip", "link", "add", l.srvIf, "type", "veth", "peer", "name", l.cliIf)
	run(t, "ip", "link", "set", l.srvIf, "netns", l.srvNS)
	run(t, "ip", "link", "set", l.cliIf, "netns", l.cliNS)
	run(t, "ip", "-n", l.srvNS, "addr", "add", l.srvIP+"/24", "dev", l.srvIf)
	run(t, "ip", "-n", l.cliNS, "addr", "add", l.cliIP+"/24", "dev", l.cliIf)
	for _, ns := range []struct{ ns, ifc string }{{l.srvNS, l.srvIf}, {l.cliNS, l.cliIf}} {
		run(t, "ip", "-n", ns.ns, "link", "set", ns.ifc, "up")
		run(t, "ip", "-n", ns.ns, "link", "set", "lo", "up")
	}
	return l
}

// startServer runs bakery serve in the server namespace.
func (l *netLab) startServer() {
	t := l.t
	if l.data == "" {
		l.data = t.TempDir()
	}
	l.api = "http://" + l.srvIP + ":8080"
	cmd := exec.Command("ip", "netns", "exec", l.srvNS, os.Args[0], "-test.run=^TestNetnsServerHelper$")
	cmd.Env = append(os.Environ(), helperEnv+"=1", "BAKERY_NETNS_DATA="+l.data,
		"BAKERY_NETNS_LISTEN="+l.srvIP+":8080", "BAKERY_NETNS_IFACE="+l.srvIf)
	l.serverLog = &syncBuffer{}
	cmd.Stderr = l.serverLog
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		ok := false
		for sc.Scan() {
			if sc.Text() == "HELPER-READY" && !ok {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	if !<-ready {
		cmd.Wait()
		t.Fatalf("server did not start:\n%s", l.serverLog.String())
	}
	stopped := false
	l.stopServerFunc = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server exit: %v\n%s", err, l.serverLog.String())
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Errorf("server did not stop on SIGTERM")
		}
	}
	t.Cleanup(l.stopServerFunc)
	tok, err := os.ReadFile(filepath.Join(l.data, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	l.admin = strings.TrimSpace(string(tok))
	c, err := client.New(l.api, l.admin)
	if err != nil {
		t.Fatal(err)
	}
	c.HTTP = &http.Client{Transport: &http.Transport{DialContext: l.dialInClientNS}}
	l.client = c
}

// dialInClientNS opens a TCP connection from inside the client namespace:
// a socket belongs to the namespace of the thread that created it.
func (l *netLab) dialInClientNS(ctx context.Context, network, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + l.cliNS)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, err
	}
	defer func() {
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			panic("cannot return to the original network namespace: " + err.Error())
		}
	}()
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// inClient runs a command in the client namespace.
func (l *netLab) inClient(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.cliNS, name}, args...)...)
}

// piBootTree is a Pi 4 boot partition with placeholder files.
func piBootTree(t *testing.T, cmdline string) (string, map[string][]byte) {
	dir := t.TempDir()
	files := map[string][]byte{
		"start4.elf": bytes.Repeat([]byte("S4"), 1100000), "fixup4.dat": bytes.Repeat([]byte("F"), 5400),
		"bcm2711-rpi-4-b.dtb": bytes.Repeat([]byte("D"), 52000), "overlays/vc4-kms-v3d.dtbo": bytes.Repeat([]byte("O"), 3000),
		"kernel8.img": bytes.Repeat([]byte("K"), 3<<20), "bootcode.bin": bytes.Repeat([]byte("B"), 52000),
		"config.txt": []byte("[all]\narm_64bit=1\nkernel=kernel8.img\n"), "cmdline.txt": []byte(cmdline),
	}
	for name, b := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, files
}

func piImage(t *testing.T, cmdline string) (string, map[string][]byte) {
	boot, files := piBootTree(t, cmdline)
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "os-release"), []byte("PRETTY_NAME=\"Test OS\"\nID=debian\n"), 0o644)
	return testimage.PiImage(t, testimage.Layout{BootTree: boot, RootTree: root, RootMiB: 32}), files
}

// udhcpc runs busybox udhcpc as a Pi 4 would ask (vendor class and option
// 97) and returns the environment its script saw, or nil without a lease.
func (l *netLab) udhcpc(serial, mac string) map[string]string {
	t := l.t
	run(t, "ip", "-n", l.cliNS, "link", "set", l.cliIf, "address", mac)
	id, err := dhcp.PiClientID{Model: "RPi4", BoardRev: 0xd03114, Serial: serial}.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "script.sh")
	os.WriteFile(script, []byte("#!/bin/sh\n[ \"$1\" = bound ] && env > \"$0.env\"\nexit 0\n"), 0o755)
	out, _ := l.inClient("busybox", "udhcpc", "-i", l.cliIf, "-n", "-q", "-f", "-t", "3", "-T", "1",
		"-V", dhcp.PiVendorClass, "-x", "0x61:"+hex.EncodeToString(id), "-O", "43", "-O", "66", "-s", script).CombinedOutput()
	raw, err := os.ReadFile(script + ".env")
	if err != nil {
		t.Logf("udhcpc got no lease:\n%s", out)
		return nil
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			env[k] = v
		}
	}
	return env
}

func TestNetnsDHCPAndTFTP(t *testing.T) {
	testimage.Need(t, "busybox", "curl")
	l := newNetLab(t)
	l.startServer()
	ctx := context.Background()
	cmdline := "console=serial0,115200 console=tty1 root=PARTUUID=5452574f-02 rootfstype=ext4 fsck.repair=yes rootwait\n"
	imgPath, files := piImage(t, cmdline)
	img, err := l.client.PushImageFile(ctx, "raspios", imgPath, nil, nil)
	if err != nil {
		t.Fatalf("push: %v\n%s", err, l.serverLog.String())
	}
	if img.Kind != "pi" || !strings.Contains(strings.Join(img.BootFiles, " "), "start4.elf") {
		t.Fatalf("image %+v", img)
	}
	const serial, mac = "3a7f91c2", "dc:a6:32:11:22:33"

	// 1. Unknown serial: no answer, and the Pi shows up as discovered.
	if env := l.udhcpc(serial, mac); env != nil {
		t.Fatalf("unknown Pi got a reply: %v", env)
	}
	m, err := l.client.Machine(ctx, serial)
	if err != nil || !m.Discovered || m.MAC != mac {
		t.Fatalf("discovered: %+v %v", m, err)
	}

	// 2. Assign the image: option 43 with "Raspberry Pi Boot" and our
	// TFTP address in option 66 / siaddr / option 54.
	if _, err := l.client.PutMachine(ctx, serial, client.MachineSpec{Image: img.ID, CmdlineAppend: "systemd.unit=rescue.target"}); err != nil {
		t.Fatal(err)
	}
	env := l.udhcpc(serial, mac)
	if env == nil {
		t.Fatalf("configured Pi got no reply\n%s", l.serverLog.String())
	}
	opt43, _ := hex.DecodeString(env["opt43"])
	if !bytes.Contains(opt43, []byte("Raspberry Pi Boot   ")) {
		t.Errorf("option 43 %q lacks the boot menu; env %v", opt43, env)
	}
	if sub, err := dhcp.ParseVendorOptions(opt43); err != nil || sub[dhcp.SubMenuPrompt] == nil || sub[dhcp.SubDiscoveryControl] == nil {
		t.Errorf("option 43 sub-options %v %v", sub, err)
	}
	for _, k := range []string{"siaddr", "serverid"} {
		if env[k] != l.srvIP {
			t.Errorf("%s = %q, want %s (env %v)", k, env[k], l.srvIP, env)
		}
	}
	if tftp := env["tftp"] + env["opt66"]; !strings.Contains(tftp, l.srvIP) && tftp != hex.EncodeToString([]byte(l.srvIP)) {
		t.Errorf("option 66 = %q, want %s", tftp, l.srvIP)
	}

	// 3. TFTP: the Pi 4 file sequence under <serial>/ with blksize 1024.
	dir := t.TempDir()
	fetch := func(name string) ([]byte, int) {
		out := filepath.Join(dir, "out")
		os.Remove(out)
		// --path-as-is: without it curl resolves "../" itself.
		cmd := l.inClient("curl", "-sS", "--path-as-is", "--tftp-blksize", "1024", "-o", out, "tftp://"+l.srvIP+"/"+name)
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(out)
		return b, 0
	}
	sequence := []struct {
		file string
		want []byte // nil: not found
	}{
		{"start4.elf", files["start4.elf"]}, {"config.txt", files["config.txt"]}, {"pieeprom.sig", nil}, {"recovery.elf", nil},
		{"start4.elf", files["start4.elf"]}, {"fixup4.dat", files["fixup4.dat"]}, {"config.txt", files["config.txt"]},
		{"bcm2711-rpi-4-b.dtb", files["bcm2711-rpi-4-b.dtb"]}, {"overlays/vc4-kms-v3d.dtbo", files["overlays/vc4-kms-v3d.dtbo"]},
		// The machine gets an NFS root (the default): cmdline.txt points
		// the kernel at the built-in NFS server on the standard port.
		{"cmdline.txt", bootfiles.RenderNFSRootCmdline([]byte(cmdline),
			bootfiles.NFSRoot{Server: l.srvIP, Export: "/machines/" + serial, Port: 2049}, "systemd.unit=rescue.target")},
		{"kernel8.img", files["kernel8.img"]},
	}
	for _, step := range sequence {
		got, code := fetch(serial + "/" + step.file)
		if step.want == nil {
			if code != 68 { // CURLE_TFTP_NOTFOUND
				t.Errorf("%s: curl exit %d, want 68 (file not found)", step.file, code)
			}
			continue
		}
		if code != 0 || !bytes.Equal(got, step.want) {
			t.Errorf("%s: curl exit %d, %d bytes; want %d bytes", step.file, code, len(got), len(step.want))
		}
	}
	// Unknown serial: not found. Traversal: refused (CURLE_TFTP_PERM).
	if _, code := fetch("deadbeef/start4.elf"); code != 68 {
		t.Errorf("unknown serial: curl exit %d, want 68", code)
	}
	for _, bad := range []string{serial + "/../deadbeef/start4.elf", serial + "/%2e%2e/x"} {
		if _, code := fetch(bad); code != 69 {
			t.Errorf("%s: curl exit %d, want 69 (access violation)", bad, code)
		}
	}
	// windowsize with a client we did not write.
	if _, err := exec.LookPath("atftp"); err == nil {
		out := filepath.Join(dir, "win")
		if b, err := l.inClient("atftp", "--option", "windowsize 16", "--option", "blksize 1428", "-g", "-r", serial+"/kernel8.img", "-l", out, l.srvIP).CombinedOutput(); err != nil {
			t.Errorf("atftp: %v\n%s", err, b)
		} else if got, _ := os.ReadFile(out); !bytes.Equal(got, files["kernel8.img"]) {
			t.Errorf("atftp windowsize: %d bytes", len(got))
		}
	}

	// 4. Local boot mode: nothing.
	if _, err := l.client.PutMachine(ctx, serial, client.MachineSpec{Image: img.ID, BootMode: "local"}); err != nil {
		t.Fatal(err)
	}
	if env := l.udhcpc(serial, mac); env != nil {
		t.Fatalf("local-mode machine got a reply: %v", env)
	}
	if _, code := fetch(serial + "/start4.elf"); code == 0 {
		t.Error("local-mode machine got a file over TFTP")
	}

	// The timeline has DHCP and TFTP in it.
	evs, err := l.client.Events(ctx, serial, 0)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range evs {
		kinds[e.Type]++
	}
	for _, k := range []string{"machine.discovered", "dhcp.ignored", "dhcp.answered", "tftp.served", "tftp.not_found", "api.machine.put"} {
		if kinds[k] == 0 {
			t.Errorf("no %s event in the timeline: %v", k, kinds)
		}
	}
	// Graceful shutdown on SIGTERM (checked by the cleanup), then restart
	// with the same data: the state is still there.
	l.stopServerFunc()
	l.startServer()
	if m, err := l.client.Machine(ctx, serial); err != nil || m.Image != img.ID {
		t.Fatalf("after restart: %+v %v", m, err)
	}
	if _, err := l.client.Image(ctx, img.ID); err != nil {
		t.Fatalf("image after restart: %v", err)
	}
}
