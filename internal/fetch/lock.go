package fetch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// staleLock is how old a create-style lock must be before it is presumed
// left behind by a killed process.
const staleLock = 6 * time.Hour

// lockByCreate is the fallback lock where flock is unavailable: the
// holder is whoever created path+".held" (O_EXCL); a lock older than
// staleLock is broken.
func lockByCreate(ctx context.Context, path string, wait func()) (func(), error) {
	held := path + ".held"
	waited := false
	for {
		f, err := os.OpenFile(held, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err == nil {
			f.WriteString(strconv.Itoa(os.Getpid()))
			f.Close()
			return func() { os.Remove(held) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("lock %s: %w", held, err)
		}
		if fi, err := os.Stat(held); err == nil && time.Since(fi.ModTime()) > staleLock {
			os.Remove(held)
			continue
		}
		if !waited && wait != nil {
			wait()
			waited = true
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
}
