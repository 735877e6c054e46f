package streams

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestWithContextStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := WithContext(ctx, strings.NewReader(strings.Repeat("x", 1<<20)))
	buf := make([]byte, 1024)
	if _, err := r.Read(buf); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := io.Copy(io.Discard, r); !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v", err)
	}
}

func TestCounters(t *testing.T) {
	var out bytes.Buffer
	w := &CountingWriter{W: &out}
	r := &CountingReader{R: strings.NewReader("hello, world")}
	if _, err := io.Copy(w, r); err != nil {
		t.Fatal(err)
	}
	if w.N != 12 || r.N != 12 || out.String() != "hello, world" {
		t.Fatalf("counted %d/%d, copied %q", r.N, w.N, out.String())
	}
}
