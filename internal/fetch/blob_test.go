package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestBlob(t *testing.T) {
	data := []byte("release archive bytes")
	sum := sha256.Sum256(data)
	want := "sha256:" + hex.EncodeToString(sum[:])
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		w.Write(data)
	}))
	defer srv.Close()
	f := &Fetcher{CacheDir: t.TempDir(), MaxAttempts: 1}
	p, err := f.Blob(context.Background(), srv.URL+"/a.zip", want)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != string(data) || filepath.Base(p) != hex.EncodeToString(sum[:]) {
		t.Fatalf("blob %s", p)
	}
	if _, err := f.Blob(context.Background(), srv.URL+"/a.zip", want); err != nil || hits != 1 {
		t.Fatalf("second fetch: %v, %d downloads", err, hits)
	}
	_, err = f.Blob(context.Background(), srv.URL+"/b.zip", "sha256:"+hex.EncodeToString(make([]byte, 32)))
	var ce *ChecksumError
	if !errors.As(err, &ce) {
		t.Fatalf("want a checksum error, got %v", err)
	}
	if _, err := f.Blob(context.Background(), srv.URL+"/a.zip", ""); err == nil {
		t.Fatal("a blob without checksum was accepted")
	}
	local := filepath.Join(t.TempDir(), "a.zip")
	os.WriteFile(local, data, 0o644)
	if p, err := f.Blob(context.Background(), local, want); err != nil || p != local {
		t.Fatalf("local: %s %v", p, err)
	}
}
