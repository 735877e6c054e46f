package compress

import (
	"bytes"
	"io"
	"math/rand"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	data := make([]byte, 3<<20)
	rand.New(rand.NewSource(1)).Read(data[:1<<20]) // part random, part zeros
	for _, f := range []string{Gzip, Xz, Zstd} {
		var buf bytes.Buffer
		w, err := Writer(&buf, f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := Detect(buf.Bytes()); got != f {
			t.Fatalf("Detect = %q, want %q", got, f)
		}
		r, format, err := Reader(&buf)
		if err != nil || format != f {
			t.Fatalf("Reader: %v %q", err, format)
		}
		out, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("%s round trip: %v (len %d)", f, err, len(out))
		}
	}
}

func TestCorruptStreamsFail(t *testing.T) {
	for _, f := range []string{Gzip, Xz, Zstd} {
		var buf bytes.Buffer
		w, _ := Writer(&buf, f)
		w.Write(bytes.Repeat([]byte("bakery "), 100000))
		w.Close()
		b := buf.Bytes()
		truncated := b[:len(b)/2]
		r, _, err := Reader(bytes.NewReader(truncated))
		if err == nil {
			_, err = io.Copy(io.Discard, r)
		}
		if err == nil {
			t.Errorf("%s: truncated stream read without error", f)
		}
	}
}

func TestNames(t *testing.T) {
	if FromName("a.img.XZ") != Xz || FromName("a.img.zst") != Zstd || FromName("a.img") != None || FromName("a.zip") != Zip {
		t.Error("FromName")
	}
	if TrimExt("2024-raspios.img.xz") != "2024-raspios.img" || TrimExt("a.img") != "a.img" || TrimExt("a.img.zstd") != "a.img" {
		t.Error("TrimExt")
	}
}

func FuzzReader(f *testing.F) {
	var buf bytes.Buffer
	w, _ := Writer(&buf, Zstd)
	w.Write([]byte("hello hello hello"))
	w.Close()
	f.Add(buf.Bytes())
	f.Add([]byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 4})
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, _, err := Reader(bytes.NewReader(b))
		if err != nil {
			return
		}
		io.Copy(io.Discard, io.LimitReader(r, 16<<20))
		r.Close()
	})
}
