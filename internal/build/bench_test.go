package build

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/bakeryhq/bakery/internal/spec"
)

// BenchmarkBuildSpec builds the spec named by BAKERY_BENCH_SPEC with the
// cache in BAKERY_BENCH_CACHE (default: next to the spec), timing the
// pipeline alone (build.Run; the spec is loaded once). bench/build.sh
// uses it; it also serves profiling (-cpuprofile).
func BenchmarkBuildSpec(b *testing.B) {
	path := os.Getenv("BAKERY_BENCH_SPEC")
	if path == "" {
		b.Skip("set BAKERY_BENCH_SPEC")
	}
	s, diags := spec.Load(context.Background(), path, spec.Inputs{})
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	cache := os.Getenv("BAKERY_BENCH_CACHE")
	if cache == "" {
		cache = filepath.Join(filepath.Dir(path), "cache")
	}
	epoch := int64(1700000000)
	logger := discardLogger()
	if os.Getenv("BAKERY_BENCH_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for b.Loop() {
		out := b.TempDir()
		if _, err := Run(context.Background(), s, Options{OutDir: out, CacheDir: cache, SourceDateEpoch: &epoch, Logger: logger}); err != nil {
			b.Fatal(err)
		}
	}
}
