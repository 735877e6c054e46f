//go:build linux

package flash

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// growPipe asks for a 1 MiB pipe buffer (the unprivileged limit is
// /proc/sys/fs/pipe-max-size, 1 MiB by default); failure is harmless.
func growPipe(f *os.File) {
	_, _ = unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, 1<<20)
}

// discardPipe drops n bytes from a pipe by splicing them to /dev/null:
// the pages move in the kernel instead of being copied out and thrown
// away (most of an image's unmapped bytes pass through here). It returns
// errors.ErrUnsupported when splice is not available.
func discardPipe(pr *os.File, n int64) (int64, error) {
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return 0, errors.ErrUnsupported
	}
	defer null.Close()
	rc, err := pr.SyscallConn()
	if err != nil {
		return 0, errors.ErrUnsupported
	}
	var done int64
	for done < n {
		var m int64
		var serr error
		err := rc.Read(func(fd uintptr) bool {
			// Splice returns int on 32-bit Linux and int64 on 64-bit.
			k, e := unix.Splice(int(fd), nil, int(null.Fd()), nil, int(min(n-done, 1<<20)), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			m, serr = int64(k), e
			return serr != unix.EAGAIN
		})
		if err == nil {
			err = serr
		}
		switch {
		case errors.Is(err, unix.EINVAL) && done == 0:
			return 0, errors.ErrUnsupported
		case err != nil:
			return done, err
		case m == 0:
			return done, io.EOF
		}
		done += m
	}
	return done, nil
}
