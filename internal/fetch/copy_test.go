package fetch

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// makeSparse creates a 2 GiB file holding 1 MiB of data in four places.
func makeSparse(t testing.TB, path string) map[int64][]byte {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(2 << 30); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	data := map[int64][]byte{}
	for _, off := range []int64{0, 700 << 20, 1<<30 + 4096, 2<<30 - 256<<10} {
		b := make([]byte, 256<<10)
		for i := range b {
			b[i] = byte(rng.Uint32() | 1)
		}
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		data[off] = b
	}
	return data
}

func allocated(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// TestCopySparseCost copies a 2 GiB image holding 1 MiB of data: the copy
// must read about 1 MiB (not 2 GiB) and stay sparse.
func TestCopySparseCost(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	data := makeSparse(t, src)
	for _, opt := range []copyOptions{{perm: 0o644, noReflink: true}, {perm: 0o644, noReflink: true, sparsify: true}, {perm: 0o644}} {
		dst := filepath.Join(dir, "dst.img")
		st, err := copySparse(context.Background(), src, dst, opt)
		if err != nil {
			t.Fatal(err)
		}
		if !st.reflinked && (st.dataBytes < 1<<20 || st.dataBytes > 2<<20) {
			t.Errorf("%+v: read %d bytes to copy 1 MiB of data in a 2 GiB image", opt, st.dataBytes)
		}
		fi, _ := os.Stat(dst)
		if fi.Size() != 2<<30 || fi.Mode().Perm() != 0o644 {
			t.Errorf("dst size %d mode %v", fi.Size(), fi.Mode())
		}
		if a := allocated(t, dst); a > 4<<20 {
			t.Errorf("%+v: dst has %d bytes allocated; it should stay sparse", opt, a)
		}
		f, _ := os.Open(dst)
		for off, want := range data {
			got := make([]byte, len(want))
			f.ReadAt(got, off)
			if !bytes.Equal(got, want) {
				t.Errorf("data at %d differs", off)
			}
		}
		hole := make([]byte, 64<<10)
		f.ReadAt(hole, 1500<<20)
		if !bytes.Equal(hole, make([]byte, len(hole))) {
			t.Error("a hole reads back as non-zero")
		}
		f.Close()
		os.Remove(dst)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}

// TestCopySparseZeros checks that the buffered path turns zero blocks that
// are allocated in the source into holes.
func TestCopySparseZeros(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	b := make([]byte, 8<<20)
	copy(b[3<<20:], []byte("data in the middle"))
	os.WriteFile(src, b, 0o644)
	dst := filepath.Join(dir, "dst.img")
	if _, err := copySparse(context.Background(), src, dst, copyOptions{perm: 0o444, sparsify: true}); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got, b) {
		t.Fatal("content differs")
	}
	if a := allocated(t, dst); a > 64<<10 {
		t.Errorf("%d bytes allocated for 18 bytes of data", a)
	}
}

func TestCopySparseErrors(t *testing.T) {
	dir := t.TempDir()
	if err := CopySparse(context.Background(), filepath.Join(dir, "nope"), filepath.Join(dir, "x")); err == nil {
		t.Error("missing source accepted")
	}
	if err := CopySparse(context.Background(), dir, filepath.Join(dir, "x")); err == nil {
		t.Error("directory source accepted")
	}
	src := filepath.Join(dir, "s")
	os.WriteFile(src, []byte("x"), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := copySparseNoReflink(ctx, src, filepath.Join(dir, "y")); err == nil {
		t.Error("a cancelled copy must fail")
	}
	if _, err := os.Stat(filepath.Join(dir, "y")); err == nil {
		t.Error("a failed copy must not leave its output")
	}
}

// TestCopySparseIntoUsesTheCallersFile: the build copies its base into a
// file it reserved; the copy must not add a temporary file of its own
// (a killed build would leave it where the build's cleanup does not look).
func TestCopySparseIntoUsesTheCallersFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(t.TempDir(), "base.img")
	f, _ := os.Create(src)
	f.WriteAt([]byte("boot"), 0)
	f.WriteAt([]byte("root"), 8<<20)
	f.Truncate(16 << 20)
	f.Close()
	dst, err := os.CreateTemp(dir, ".node.img.*.partial")
	if err != nil {
		t.Fatal(err)
	}
	if err := CopySparseInto(context.Background(), src, dst); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only the caller's file", len(entries))
	}
	got, _ := os.ReadFile(dst.Name())
	want, _ := os.ReadFile(src)
	if !bytes.Equal(got, want) {
		t.Fatal("copy differs from the source")
	}
	if fi, _ := os.Stat(dst.Name()); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", fi.Mode().Perm())
	}
}

func copySparseNoReflink(ctx context.Context, src, dst string) error {
	_, err := copySparse(ctx, src, dst, copyOptions{perm: 0o644, noReflink: true})
	return err
}

func BenchmarkCopySparse2GiB(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "src.img")
	makeSparse(b, src)
	dst := filepath.Join(dir, "dst.img")
	b.SetBytes(1 << 20)
	for b.Loop() {
		if err := CopySparse(context.Background(), src, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCopySparseFile copies $BENCH_SRC (for bench/copy-sparse.sh).
func BenchmarkCopySparseFile(b *testing.B) {
	src := os.Getenv("BENCH_SRC")
	if src == "" {
		b.Skip("BENCH_SRC not set")
	}
	dst := filepath.Join(b.TempDir(), "dst.img")
	for b.Loop() {
		if err := CopySparse(context.Background(), src, dst); err != nil {
			b.Fatal(err)
		}
	}
}
