package flash

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bakeryhq/bakery/internal/bmap"
	"github.com/bakeryhq/bakery/internal/progress"
	"github.com/bakeryhq/bakery/internal/testimage"
)

// writeBmap generates IMAGE.bmap beside the image.
func writeBmap(t testing.TB, img, path string) *bmap.Bmap {
	t.Helper()
	m, err := bmap.Generate(context.Background(), img, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestFlashRawSparseToFile(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, testSize, testRegions)
	target := filepath.Join(dir, "card")
	garbage(t, target, 16<<20, 1)
	old := readAll(t, target)

	src := openSource(t, img, SourceOptions{})
	if src.Map == nil || src.Size != testSize {
		t.Fatalf("source = %+v", src)
	}
	res := Flash(context.Background(), src, []string{target}, testOptions())
	mustOK(t, res)
	if !res[0].Verified || res[0].BytesWritten != src.Map.MappedBytes() {
		t.Fatalf("result %+v, mapped %d", res[0], src.Map.MappedBytes())
	}
	checkMapped(t, img, target, src.Map, old)
	// A file target keeps its size when it is larger than the image.
	if st, _ := os.Stat(target); st.Size() != 16<<20 {
		t.Fatalf("target size changed to %d", st.Size())
	}
}

func TestFlashNewFileTarget(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, testSize, testRegions)
	target := filepath.Join(dir, "new.img")
	res := Flash(context.Background(), openSource(t, img, SourceOptions{}), []string{target}, testOptions())
	mustOK(t, res)
	if !bytes.Equal(readAll(t, img), readAll(t, target)) {
		t.Fatal("a new file target is not byte-equal to the image")
	}
}

func TestFlashCompressedWithBmap(t *testing.T) {
	for _, format := range []string{"xz", "gz", "zst", "xz-go", "zst-go"} {
		format, goDecoders := strings.CutSuffix(format, "-go")
		t.Run(fmt.Sprintf("%s/go=%v", format, goDecoders), func(t *testing.T) {
			dir := t.TempDir()
			img := makeImage(t, dir, testSize, testRegions)
			// NAME.img.bmap beside NAME.img.xz.
			m := writeBmap(t, img, filepath.Join(dir, "test.img.bmap"))
			comp := compressFile(t, img, format)
			target := filepath.Join(dir, "card")
			garbage(t, target, 16<<20, 2)
			old := readAll(t, target)
			src := openSource(t, comp, SourceOptions{goDecoders: goDecoders})
			if src.Format != format || src.MapOrigin != filepath.Join(dir, "test.img.bmap") || src.Size != testSize {
				t.Fatalf("source = %+v", src)
			}
			mustOK(t, Flash(context.Background(), src, []string{target}, testOptions()))
			checkMapped(t, img, target, m, old)
		})
	}
}

func TestFlashCompressedWithoutBmapWritesEverything(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, testSize, testRegions)
	comp := compressFile(t, img, "zst")
	target := filepath.Join(dir, "card")
	garbage(t, target, 16<<20, 3)
	src := openSource(t, comp, SourceOptions{})
	if src.Map != nil || src.Size != -1 {
		t.Fatalf("source = %+v", src)
	}
	res := Flash(context.Background(), src, []string{target}, testOptions())
	mustOK(t, res)
	if res[0].BytesWritten != testSize {
		t.Fatalf("wrote %d bytes, want all %d", res[0].BytesWritten, testSize)
	}
	if got := readDevice(t, target, testSize); !bytes.Equal(got, readAll(t, img)) {
		t.Fatal("target differs from the image")
	}
}

// TestFlashBmaptoolBmap accepts bmaptool's own map (format 2.0, SHA256).
func TestFlashBmaptoolBmap(t *testing.T) {
	testimage.Need(t, "bmaptool")
	dir := t.TempDir()
	img := makeImage(t, dir, testSize, testRegions)
	bm := filepath.Join(dir, "theirs.bmap")
	testimage.Run(t, "bmaptool", "create", "-o", bm, img)
	target := filepath.Join(dir, "card")
	garbage(t, target, 16<<20, 4)
	old := readAll(t, target)
	src := openSource(t, img, SourceOptions{BmapPath: bm})
	if src.Map.ChecksumType != bmap.SHA256 || src.Map.Version != "2.0" {
		t.Fatalf("map = %+v", src.Map)
	}
	mustOK(t, Flash(context.Background(), src, []string{target}, testOptions()))
	checkMapped(t, img, target, src.Map, old)
}

// TestFlashOldBmapFormats uses the hand-made SHA1 maps of format 1.3 and
// 1.4 (and 1.2 without checksums) checked into internal/bmap/testdata.
func TestFlashOldBmapFormats(t *testing.T) {
	dir := t.TempDir()
	img := smallBmapImage(t, dir)
	for _, v := range []string{"1.2", "1.3", "1.4", "2.0"} {
		t.Run(v, func(t *testing.T) {
			target := filepath.Join(t.TempDir(), "card")
			garbage(t, target, 1<<20, 5)
			src := openSource(t, img, SourceOptions{BmapPath: filepath.Join("..", "bmap", "testdata", "small-"+v+".bmap")})
			mustOK(t, Flash(context.Background(), src, []string{target}, testOptions()))
			checkMapped(t, img, target, src.Map, nil)
		})
	}
}

// smallBmapImage is the image internal/bmap/testdata/make.py describes.
func smallBmapImage(t testing.TB, dir string) string {
	regions := []bmap.Range{{Off: 0, Len: 4096}, {Off: 16384, Len: 30000 - 16384}, {Off: 65536, Len: 1}, {Off: 196608, Len: 200000 - 196608}}
	path := filepath.Join(dir, "small.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(200000)
	for _, r := range regions {
		b := make([]byte, r.Len)
		for i := range b {
			b[i] = byte(((int(r.Off)+i)*31 + 7) % 251)
		}
		f.WriteAt(b, r.Off)
	}
	return path
}

func TestFlashLoopDevice(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, testSize, testRegions)
	m := writeBmap(t, img, img+".bmap")
	backing := filepath.Join(dir, "card")
	garbage(t, backing, 16<<20, 6)
	old := readAll(t, backing)
	dev := loopDevice(t, backing)
	src := openSource(t, img, SourceOptions{})
	if _, err := CheckTargets(src, []string{dev}, SafetyOptions{}); err != nil {
		t.Fatalf("a loop device is refused: %v", err)
	}
	res := Flash(context.Background(), src, []string{dev}, testOptions())
	mustOK(t, res)
	checkMapped(t, img, dev, m, old)
	checkMapped(t, img, backing, m, old)
}

// TestVerifyCatchesCorruption corrupts the target between writing and
// verifying: the result names the bad range and the card stays incomplete.
func TestVerifyCatchesCorruption(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, testSize, testRegions)
	target := filepath.Join(dir, "card")
	garbage(t, target, 16<<20, 7)
	opts := testOptions()
	bad := int64(5<<20 + 123) // inside the third region, chunk 5
	opts.hooks.beforeVerify = func(path string) {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		b := []byte{0}
		f.ReadAt(b, bad)
		b[0] ^= 0xff
		f.WriteAt(b, bad)
	}
	res := Flash(context.Background(), openSource(t, img, SourceOptions{}), []string{target}, opts)
	r := res[0]
	if r.OK || r.Verified || !r.Incomplete {
		t.Fatalf("corrupted card passed: %+v", r)
	}
	if want := fmt.Sprintf("bytes %d-%d (blocks %d-%d", 5<<20, 6<<20-1, (5<<20)/4096, (6<<20-1)/4096); !strings.Contains(r.Error, want) {
		t.Fatalf("error %q does not name %q", r.Error, want)
	}
	if !headIsZero(t, target) {
		t.Fatal("a card that failed verify has a partition table area")
	}
}

// TestSourceNotMatchingBmap changes the image after its bmap was made: the
// range checksum check fails the flash and no card gets a head.
func TestSourceNotMatchingBmap(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, testSize, testRegions)
	writeBmap(t, img, img+".bmap")
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	f.WriteAt([]byte("tampered"), 3<<20+8192)
	f.Close()
	targets := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b")}
	for i, tg := range targets {
		garbage(t, tg, 16<<20, uint64(10+i))
	}
	for _, verify := range []bool{true, false} {
		opts := testOptions()
		opts.Verify = verify
		res := Flash(context.Background(), openSource(t, img, SourceOptions{}), targets, opts)
		for _, r := range res {
			if r.OK || !r.Incomplete || !strings.Contains(r.Error, "does not match its bmap") || !strings.Contains(r.Error, "blocks 769-") {
				t.Fatalf("verify=%v: %+v", verify, r)
			}
			if !headIsZero(t, r.Target) {
				t.Fatalf("%s has a head after a source error", r.Target)
			}
		}
	}
}

func TestTruncatedOrCorruptStream(t *testing.T) {
	// One image and one compressed copy per format, damaged per case.
	base := t.TempDir()
	img := makeImage(t, base, testSize, testRegions)
	compressed := map[string][]byte{}
	for _, format := range []string{"xz", "zst", "gz"} {
		compressed[format] = readAll(t, compressFile(t, img, format))
	}
	for _, format := range []string{"xz", "zst", "gz", "xz-go", "zst-go"} {
		format, goDecoders := strings.CutSuffix(format, "-go")
		for _, withMap := range []bool{true, false} {
			for _, damage := range []string{"truncated", "corrupt"} {
				t.Run(fmt.Sprintf("%s/go=%v/map=%v/%s", format, goDecoders, withMap, damage), func(t *testing.T) {
					dir := t.TempDir()
					data := bytes.Clone(compressed[format])
					switch damage {
					case "truncated":
						data = data[:len(data)*2/3]
					case "corrupt":
						for i := len(data) / 2; i < len(data)/2+64; i++ {
							data[i] ^= 0x5a
						}
					}
					comp := filepath.Join(dir, "test.img."+format)
					os.WriteFile(comp, data, 0o644)
					if withMap {
						writeBmap(t, img, filepath.Join(dir, "test.img.bmap"))
					}
					target := filepath.Join(dir, "card")
					garbage(t, target, 16<<20, 20)
					res := Flash(context.Background(), openSource(t, comp, SourceOptions{goDecoders: goDecoders}), []string{target}, testOptions())
					r := res[0]
					if r.OK || !r.Incomplete {
						t.Fatalf("damaged stream flashed: %+v", r)
					}
					if damage == "truncated" && !strings.Contains(r.Error, "truncated") {
						t.Errorf("a truncated stream is not called truncated: %s", r.Error)
					}
					if !strings.Contains(r.Error, comp) {
						t.Fatalf("error does not name the image: %s", r.Error)
					}
					if !headIsZero(t, target) {
						t.Fatal("head written after a damaged stream")
					}
					t.Log(r.Error)
				})
			}
		}
	}
}

// TestMultiTargetOneFails writes four targets, one of which fails midway:
// the other three succeed.
func TestMultiTargetOneFails(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, testSize, testRegions)
	src := openSource(t, img, SourceOptions{})
	var targets [][]byte
	var paths []string
	for i := range 4 {
		p := filepath.Join(dir, fmt.Sprintf("card%d", i+1))
		garbage(t, p, 16<<20, uint64(30+i))
		paths = append(paths, p)
		targets = append(targets, readAll(t, p))
	}
	opts := testOptions()
	opts.hooks.beforeWrite = func(target string, off int64) error {
		if target == paths[2] && off >= 5<<20 {
			return errors.New("simulated I/O error")
		}
		return nil
	}
	res := Flash(context.Background(), src, paths, opts)
	for i, r := range res {
		if i == 2 {
			if r.OK || !r.Incomplete || !strings.Contains(r.Error, "simulated I/O error") {
				t.Fatalf("failing target: %+v", r)
			}
			if !headIsZero(t, r.Target) {
				t.Fatal("the failed card has a head")
			}
			continue
		}
		if !r.OK || !r.Verified {
			t.Fatalf("target %d: %+v", i+1, r)
		}
		checkMapped(t, img, r.Target, src.Map, targets[i])
	}
	if AllOK(res) {
		t.Fatal("AllOK with a failed target")
	}
}

// TestCancelLeavesIncomplete interrupts the flash midway.
func TestCancelLeavesIncomplete(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, testSize, testRegions)
	paths := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b")}
	for i, p := range paths {
		garbage(t, p, 16<<20, uint64(40+i))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := testOptions()
	opts.hooks.beforeWrite = func(_ string, off int64) error {
		if off >= 4<<20 {
			cancel()
		}
		return nil
	}
	res := Flash(ctx, openSource(t, img, SourceOptions{}), paths, opts)
	for _, r := range res {
		if r.OK || !r.Incomplete || !strings.Contains(r.Error, "interrupted") {
			t.Fatalf("%+v", r)
		}
		if !headIsZero(t, r.Target) {
			t.Fatal("an interrupted card has a head")
		}
	}
}

func TestNoVerify(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, testSize, testRegions)
	target := filepath.Join(dir, "card")
	opts := testOptions()
	opts.Verify = false
	res := Flash(context.Background(), openSource(t, img, SourceOptions{}), []string{target}, opts)
	mustOK(t, res)
	if res[0].Verified {
		t.Fatal("verified without verify")
	}
	if !bytes.Equal(readAll(t, img), readAll(t, target)) {
		t.Fatal("target differs")
	}
}

func TestBmapForAnotherImage(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, testSize, testRegions)
	other := makeImage(t, t.TempDir(), testSize+4096, testRegions)
	bm := filepath.Join(dir, "other.bmap")
	writeBmap(t, other, bm)
	if _, err := OpenSource(context.Background(), img, SourceOptions{BmapPath: bm}); err == nil || !strings.Contains(err.Error(), "belongs to another image") {
		t.Fatalf("err = %v", err)
	}
}

func TestFindBmap(t *testing.T) {
	dir := t.TempDir()
	touch := func(name string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, nil, 0o644)
		return p
	}
	if got := findBmap(filepath.Join(dir, "a.img.xz")); got != "" {
		t.Fatalf("found %q with no bmap", got)
	}
	b1 := touch("a.bmap")
	if got := findBmap(filepath.Join(dir, "a.img.xz")); got != b1 {
		t.Fatalf("got %q want %q", got, b1)
	}
	b2 := touch("a.img.bmap")
	if got := findBmap(filepath.Join(dir, "a.img.xz")); got != b2 {
		t.Fatalf("got %q want %q", got, b2)
	}
	b3 := touch("a.img.xz.bmap")
	if got := findBmap(filepath.Join(dir, "a.img.xz")); got != b3 {
		t.Fatalf("got %q want %q", got, b3)
	}
}

// TestProgressBarsComplete: every bar must finish, or the CLI's final
// Wait hangs (an mpb bar with a total completes only on reaching it).
func TestProgressBarsComplete(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, testSize, testRegions)
	comp := compressFile(t, img, "zst")
	for name, src := range map[string]*Source{
		"raw":        openSource(t, img, SourceOptions{}),
		"zst no map": openSource(t, comp, SourceOptions{}),
	} {
		for _, verify := range []bool{true, false} {
			var out bytes.Buffer
			rep := progress.New(&out, progress.Bars, nil)
			opts := testOptions()
			opts.Verify = verify
			opts.Progress = rep
			mustOK(t, Flash(context.Background(), src, []string{filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")}, opts))
			done := make(chan struct{})
			go func() { rep.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("%s verify=%v: progress bars never completed", name, verify)
			}
		}
	}
}

// TestTinyCompressedImage: an image smaller than the head, of unknown
// size until its stream ends, lands exactly (a new file target gets the
// image's size, not the head's).
func TestTinyCompressedImage(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, 300001, []bmap.Range{{Off: 0, Len: 1000}, {Off: 200000, Len: 100001}})
	comp := compressFile(t, img, "gz")
	target := filepath.Join(dir, "new.img")
	res := Flash(context.Background(), openSource(t, comp, SourceOptions{}), []string{target}, testOptions())
	mustOK(t, res)
	if !bytes.Equal(readAll(t, target), readAll(t, img)) {
		t.Fatal("tiny image not written exactly")
	}
}

// TestCompressedImageLongerThanBmap: the stream is read to its end, so an
// image with more bytes than its map describes is refused.
func TestCompressedImageLongerThanBmap(t *testing.T) {
	dir := t.TempDir()
	img := makeImage(t, dir, testSize, testRegions)
	writeBmap(t, img, filepath.Join(dir, "test.img.bmap"))
	if err := os.Truncate(img, testSize+8192); err != nil {
		t.Fatal(err)
	}
	comp := compressFile(t, img, "zst")
	target := filepath.Join(dir, "card")
	res := Flash(context.Background(), openSource(t, comp, SourceOptions{}), []string{target}, testOptions())
	if res[0].OK || !strings.Contains(res[0].Error, "belongs to another image") {
		t.Fatalf("%+v", res[0])
	}
	// The image file the flash created keeps only its zeroed head: not
	// the size of an image it never received.
	if st, err := os.Stat(target); err != nil || st.Size() > HeadSize || !headIsZero(t, target) {
		t.Fatalf("failed target: %v, %d bytes", err, st.Size())
	}
}
