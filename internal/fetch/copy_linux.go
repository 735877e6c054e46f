package fetch

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

func reflink(dst, src *os.File) error {
	return unix.IoctlFileClone(int(dst.Fd()), int(src.Fd()))
}

// kernelCopy uses copy_file_range, which never moves the data through
// user space (and on some filesystems shares extents).
func kernelCopy(out, in *os.File, off, n int64) (int64, error) {
	var done int64
	for done < n {
		roff, woff := off+done, off+done
		c, err := unix.CopyFileRange(int(in.Fd()), &roff, int(out.Fd()), &woff, int(min(n-done, 1<<30)), 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				return done, errNoKernelCopy
			}
			return done, err
		}
		if c == 0 {
			break // end of file
		}
		done += int64(c)
	}
	return done, nil
}
