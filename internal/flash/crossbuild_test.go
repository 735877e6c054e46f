package flash

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestCrossBuild builds the whole module for macOS and Windows: flashing
// has per-OS code (O_DIRECT, ioctls, sysfs) behind build tags, and the
// binary must build everywhere. Skipped with -short.
func TestCrossBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiling the module takes a while")
	}
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, goos := range []string{"darwin", "windows"} {
		t.Run(goos, func(t *testing.T) {
			cmd := exec.Command(goBin, "build", "-o", os.DevNull, "./...")
			cmd.Dir = filepath.Join("..", "..")
			cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH=amd64", "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("GOOS=%s go build ./...: %v\n%s", goos, err, out)
			}
		})
	}
}
