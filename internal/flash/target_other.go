//go:build !linux && !darwin

package flash

import (
	"errors"
	"fmt"
	"os"
)

// isDevice: writing disks directly is implemented for Linux and macOS;
// elsewhere only image files are targets.
func isDevice(st os.FileInfo) bool { return st.Mode()&os.ModeDevice != 0 }

func openDevice(path string) (*Target, error) {
	return nil, fmt.Errorf("target %s: %w", path, errors.ErrUnsupported)
}

// Sync flushes the file.
func (t *Target) Sync() error {
	if err := t.buffered.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", t.Path, err)
	}
	return nil
}

func (t *Target) openReaders() (direct, plain *os.File, err error) {
	f, err := os.Open(t.Path)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s for verify: %w", t.Path, err)
	}
	return nil, f, nil
}

// startWriteback: the final sync writes everything; no early-writeback
// hint is used here.
func startWriteback(*os.File, int64, int64) {}
