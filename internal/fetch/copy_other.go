//go:build !linux && !darwin

package fetch

import (
	"errors"
	"os"
)

func reflink(dst, src *os.File) error { return errors.ErrUnsupported }

func kernelCopy(out, in *os.File, off, n int64) (int64, error) { return 0, errNoKernelCopy }
