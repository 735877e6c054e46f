// Command nfsbench measures bakery's NFS roots (bench/nfs.sh runs it):
//
//   - provisioning a machine's root over images with a 1 GiB and a 4 GiB
//     root filesystem, against an rsync -a copy of the same root tree (the
//     seed system's way);
//   - sequential and small-file read throughput of a root served through
//     the copy-on-write layer, against go-nfs serving a plain directory with
//     the same files (go-nfs's own example server: osfs behind
//     helpers.NewCachingHandler), with the same client (go-nfs-client).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"math/rand"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/netboot/nfs"
	"github.com/bakeryhq/bakery/internal/netboot/overlay"
	osfs "github.com/go-git/go-billy/v5/osfs"
	gonfs "github.com/willscott/go-nfs"
	nfsc "github.com/willscott/go-nfs-client/nfs"
	"github.com/willscott/go-nfs-client/nfs/rpc"
	nfshelper "github.com/willscott/go-nfs/helpers"
)

func main() {
	work := flag.String("work", "", "scratch directory (default: a temporary one)")
	sizes := flag.String("sizes", "1,4", "root filesystem sizes in GiB for the provisioning benchmark")
	fill := flag.Float64("fill", 0.6, "fraction of each root filesystem filled with files")
	machines := flag.Int("machines", 20, "machines provisioned per image (the median is reported)")
	bigMiB := flag.Int("big", 256, "size of the sequential-read file in MiB")
	small := flag.Int("small", 2000, "number of 4 KiB files for the small-file test")
	rounds := flag.Int("rounds", 5, "rounds of each read test (the best is reported)")
	skipProv := flag.Bool("skip-provision", false, "only run the read benchmark")
	skipReads := flag.Bool("skip-reads", false, "only run the provisioning benchmark")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the read benchmark")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		check(err)
		check(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	dir := *work
	if dir == "" {
		d, err := os.MkdirTemp("", "nfsbench-")
		check(err)
		defer os.RemoveAll(d)
		dir = d
	}
	if !*skipProv {
		var gibs []int
		for _, s := range strings.Split(*sizes, ",") {
			var n int
			fmt.Sscan(s, &n)
			gibs = append(gibs, n)
		}
		provisioning(dir, gibs, *fill, *machines)
	}
	if !*skipReads {
		reads(dir, *bigMiB, *small, *rounds)
	}
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func run(name string, args ...string) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		log.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// genTree writes about total bytes in count files of log-uniform sizes
// (100 B to 4 MiB, like a distribution's root), 100 files per directory.
func genTree(root string, total int64, count int) {
	rng := rand.New(rand.NewSource(1))
	sizes := make([]float64, count)
	var sum float64
	for i := range sizes {
		sizes[i] = math.Exp(math.Log(100) + rng.Float64()*(math.Log(4<<20)-math.Log(100)))
		sum += sizes[i]
	}
	buf := make([]byte, 4<<20)
	rng.Read(buf)
	check(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	check(os.WriteFile(filepath.Join(root, "etc", "os-release"), []byte("ID=debian\nPRETTY_NAME=\"bench\"\n"), 0o644))
	for i, s := range sizes {
		n := min(int64(s*float64(total)/sum), int64(len(buf)))
		d := filepath.Join(root, "usr", fmt.Sprintf("d%03d", i/100/100), fmt.Sprintf("d%02d", i/100%100))
		if i%100 == 0 {
			check(os.MkdirAll(d, 0o755))
		}
		off := rng.Intn(len(buf) - int(n) + 1)
		check(os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d", i)), buf[off:off+int(n)], 0o644))
	}
}

// buildImage makes a Pi-style image (4 MiB gap, 64 MiB FAT, ext4 root made
// by mkfs.ext4 -d from tree).
func buildImage(path, tree string, rootMiB int) {
	f, err := os.Create(path)
	check(err)
	check(f.Truncate(int64(4+64+rootMiB+1) << 20))
	f.Close()
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", path)
	cmd.Stdin = strings.NewReader(fmt.Sprintf("label: dos\nstart=8192, size=%d, type=c\nsize=%d, type=83\n", 64*2048, rootMiB*2048))
	if out, err := cmd.CombinedOutput(); err != nil {
		log.Fatalf("sfdisk: %v\n%s", err, out)
	}
	boot, root := path+".boot", path+".root"
	run("mkfs.fat", "-F", "32", "-n", "BOOTFS", "-C", boot, fmt.Sprint(64*1024))
	run("mkfs.ext4", "-q", "-F", "-L", "rootfs", "-d", tree, root, fmt.Sprintf("%dM", rootMiB))
	run("dd", "if="+boot, "of="+path, "bs=1M", "seek=4", "conv=notrunc,sparse", "status=none")
	run("dd", "if="+root, "of="+path, "bs=1M", fmt.Sprintf("seek=%d", 4+64), "conv=notrunc,sparse", "status=none")
	os.Remove(boot)
	os.Remove(root)
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func duSize(dir string) (int64, int) {
	var bytes int64
	var files int
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				bytes += fi.Size()
				files++
			}
		}
		return nil
	})
	return bytes, files
}

func provisioning(work string, gibs []int, fill float64, machines int) {
	fmt.Printf("\n== Provisioning a machine's root: bakery (copy-on-write layer) vs rsync -a copy (the seed's way)\n")
	fmt.Printf("%-8s %-22s %-14s %-14s %-14s %-10s\n", "root", "tree", "bakery first", "bakery median", "rsync -a", "ratio")
	for _, g := range gibs {
		dir := filepath.Join(work, fmt.Sprintf("prov-%dg", g))
		tree := filepath.Join(dir, "tree")
		total := int64(float64(int64(g)<<30) * fill)
		genTree(tree, total, int(total/(36<<10)))
		img := filepath.Join(dir, "image.img")
		buildImage(img, tree, g<<10)
		bytes, files := duSize(tree)

		bases := overlay.NewBases(nil)
		mgr, err := overlay.NewManager(filepath.Join(dir, "machines"), bases, func(string) string { return img }, overlay.Options{})
		check(err)
		adj := overlay.Adjustments{Hostname: "bench", NodeToken: "bkr_x"}
		start := time.Now()
		_, _, err = mgr.Provision("00000000", "bench", adj)
		check(err)
		first := time.Since(start)
		var ds []time.Duration
		for i := 1; i <= machines; i++ {
			start := time.Now()
			_, _, err := mgr.Provision(fmt.Sprintf("%08x", i), "bench", adj)
			check(err)
			ds = append(ds, time.Since(start))
		}
		mgr.Close()
		bases.Close()

		// rsync twice: the second copy has a warm cache, the fairest case
		// for rsync.
		var rs time.Duration
		for i := 0; i < 2; i++ {
			dst := filepath.Join(dir, fmt.Sprintf("rsync-%d", i))
			start := time.Now()
			run("rsync", "-a", tree+"/", dst+"/")
			rs = time.Since(start)
			os.RemoveAll(dst)
		}
		med := median(ds)
		fmt.Printf("%-8s %-22s %-14s %-14s %-14s %.0fx\n", fmt.Sprintf("%d GiB", g),
			fmt.Sprintf("%d MiB, %d files", bytes>>20, files), first.Round(time.Microsecond), med.Round(time.Microsecond),
			rs.Round(time.Millisecond), float64(rs)/float64(med))
		os.RemoveAll(dir)
	}
}

// benchBackend serves one machine to 127.0.0.1.
type benchBackend struct{ mgr *overlay.Manager }

func (b benchBackend) MachineFor(ip netip.Addr) (string, bool) {
	return "00000001", ip == netip.MustParseAddr("127.0.0.1")
}
func (b benchBackend) Root(m string) (*overlay.Root, error) { return b.mgr.Root(m) }
func (b benchBackend) DiskPath(string, string) (string, error) {
	return "", os.ErrNotExist
}
func (b benchBackend) Disks(string) []string                           { return nil }
func (b benchBackend) Event(string, string, string, map[string]string) {}

func mount(addr net.Addr, path string) (*rpc.Client, *nfsc.Target) {
	a := addr.(*net.TCPAddr)
	c, err := nfsc.DialServiceAtPort(a.IP.String(), a.Port)
	check(err)
	tgt, err := (&nfsc.Mount{Client: c}).Mount(path, rpc.AuthUnix{Machinename: "bench"}.Auth())
	check(err)
	return c, tgt
}

func readSeq(tgt *nfsc.Target, p string, size int64) time.Duration {
	f, err := tgt.Open(p)
	check(err)
	buf := make([]byte, 1<<20) // Linux's default rsize against this server
	start := time.Now()
	var n int64
	for n < size {
		m, err := f.Read(buf)
		n += int64(m)
		if err == io.EOF {
			break
		}
		check(err)
	}
	d := time.Since(start)
	if n != size {
		log.Fatalf("read %d of %d bytes", n, size)
	}
	return d
}

func readSmall(tgt *nfsc.Target, names []string) time.Duration {
	buf := make([]byte, 64<<10)
	start := time.Now()
	for _, name := range names {
		f, err := tgt.Open(name)
		check(err)
		for {
			_, err := f.Read(buf)
			if err == io.EOF {
				break
			}
			check(err)
		}
	}
	return time.Since(start)
}

func reads(work string, bigMiB, small, rounds int) {
	dir := filepath.Join(work, "reads")
	tree := filepath.Join(dir, "tree")
	check(os.MkdirAll(filepath.Join(tree, "etc"), 0o755))
	check(os.WriteFile(filepath.Join(tree, "etc", "os-release"), []byte("ID=debian\n"), 0o644))
	rng := rand.New(rand.NewSource(2))
	big := make([]byte, bigMiB<<20)
	rng.Read(big)
	check(os.WriteFile(filepath.Join(tree, "big.bin"), big, 0o644))
	var names []string
	for i := 0; i < small; i++ {
		d := filepath.Join("small", fmt.Sprintf("d%02d", i/100))
		if i%100 == 0 {
			check(os.MkdirAll(filepath.Join(tree, d), 0o755))
		}
		name := filepath.Join(d, fmt.Sprintf("f%04d", i))
		check(os.WriteFile(filepath.Join(tree, name), big[i*4096:(i+1)*4096], 0o644))
		names = append(names, "/"+name)
	}
	img := filepath.Join(dir, "image.img")
	buildImage(img, tree, bigMiB+small*8/1024+128)

	bases := overlay.NewBases(nil)
	mgr, err := overlay.NewManager(filepath.Join(dir, "machines"), bases, func(string) string { return img }, overlay.Options{})
	check(err)
	_, _, err = mgr.Provision("00000001", "bench", overlay.Adjustments{})
	check(err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	srv, err := nfs.New(nfs.Config{Listener: ln1, Backend: benchBackend{mgr}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	check(err)
	go srv.Serve(ctx)
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	plain := nfshelper.NewCachingHandler(nfshelper.NewNullAuthHandler(osfs.New(tree)), 1024)
	go gonfs.Serve(ln2, plain)

	_, ours := mount(ln1.Addr(), nfs.ExportPath("00000001"))
	_, theirs := mount(ln2.Addr(), "/")
	size := int64(bigMiB) << 20
	// Warm both: the image and the plain files in the page cache, the
	// layer's directory cache filled.
	readSeq(ours, "/big.bin", size)
	readSeq(theirs, "/big.bin", size)
	readSmall(ours, names)
	readSmall(theirs, names)
	// Rounds alternate between the servers (the machine's load changes
	// over time), each after a GC; the best of each is kept.
	var seqOurs, seqTheirs, smallOurs, smallTheirs time.Duration
	keep := func(b *time.Duration, d time.Duration) {
		if *b == 0 || d < *b {
			*b = d
		}
	}
	for i := 0; i < rounds; i++ {
		runtime.GC()
		keep(&seqOurs, readSeq(ours, "/big.bin", size))
		runtime.GC()
		keep(&seqTheirs, readSeq(theirs, "/big.bin", size))
		runtime.GC()
		keep(&smallOurs, readSmall(ours, names))
		runtime.GC()
		keep(&smallTheirs, readSmall(theirs, names))
	}
	mbs := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
	fps := func(d time.Duration) float64 { return float64(len(names)) / d.Seconds() }
	fmt.Printf("\n== Reading a root over NFS: bakery (image through the copy-on-write layer) vs go-nfs serving a plain directory (osfs + CachingHandler)\n")
	fmt.Printf("%-36s %-16s %-16s %-8s\n", "test (go-nfs-client, loopback)", "bakery", "go-nfs plain", "ratio")
	fmt.Printf("%-36s %-16s %-16s %.2fx\n", fmt.Sprintf("sequential %d MiB, 1 MiB reads", bigMiB),
		fmt.Sprintf("%.0f MB/s", mbs(seqOurs)), fmt.Sprintf("%.0f MB/s", mbs(seqTheirs)), mbs(seqOurs)/mbs(seqTheirs))
	fmt.Printf("%-36s %-16s %-16s %.2fx\n", fmt.Sprintf("%d files of 4 KiB (lookup+read)", len(names)),
		fmt.Sprintf("%.0f files/s", fps(smallOurs)), fmt.Sprintf("%.0f files/s", fps(smallTheirs)), fps(smallOurs)/fps(smallTheirs))
	cancel()
	ln2.Close()
	mgr.Close()
	bases.Close()
}
