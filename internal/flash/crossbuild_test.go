package flash

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestCrossBuild builds the whole module for macOS, Windows and 32- and
// 64-bit ARM Linux: flashing has per-OS code (O_DIRECT, ioctls, sysfs)
// behind build tags, some syscall wrappers differ in width on 32-bit
// systems (a Pi running 32-bit Raspberry Pi OS), and the binary must build
// everywhere. Skipped with -short.
func TestCrossBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiling the module takes a while")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, platform := range []struct{ goos, goarch string }{
		{"darwin", "arm64"}, {"windows", "amd64"}, {"linux", "arm"}, {"linux", "arm64"},
	} {
		t.Run(platform.goos+"/"+platform.goarch, func(t *testing.T) {
			cmd := exec.Command(goBin, "build", "-o", os.DevNull, "./...")
			cmd.Dir = filepath.Join("..", "..")
			cmd.Env = append(os.Environ(), "GOOS="+platform.goos, "GOARCH="+platform.goarch, "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("GOOS=%s GOARCH=%s go build ./...: %v\n%s", platform.goos, platform.goarch, err, out)
			}
		})
	}
}
