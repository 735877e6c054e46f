package ext4

import (
	"fmt"
	"strings"

	"github.com/bakeryhq/bakery/internal/fs"
)

// resolved is the outcome of walking a path.
type resolved struct {
	parent *inode // directory holding the final component (nil for the root)
	name   string // final component ("" for the root)
	in     *inode // the final inode, nil if it does not exist
}

const maxPendingComponents = 4 * fs.MaxPathLen

// resolve walks path from the root. Intermediate symlinks are followed,
// confined to this filesystem like a chroot (absolute targets start at its
// root, ".." at the root stays there); the final one only when follow is
// set. A missing final component is not an error (r.in is nil); a missing
// intermediate one is.
func (f *FS) resolve(path string, follow bool) (resolved, error) {
	clean, err := fs.Clean(path)
	if err != nil {
		return resolved{}, fs.ErrInvalidPath
	}
	root, err := f.readInode(rootIno)
	if err != nil {
		return resolved{}, err
	}
	stack := []*inode{root}
	comps := fs.Split(clean)
	hops := 0
	for len(comps) > 0 {
		name := comps[0]
		comps = comps[1:]
		if name == "" || name == "." || name == ".." {
			if name == ".." && len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
			continue
		}
		cur := stack[len(stack)-1]
		last := len(comps) == 0
		e, found, err := f.lookup(cur, name)
		if err != nil {
			return resolved{}, err
		}
		if !found {
			if last {
				return resolved{parent: cur, name: name}, nil
			}
			return resolved{}, fs.ErrNotExist
		}
		in, err := f.readInUse(e.ino)
		if err != nil {
			return resolved{}, err
		}
		if in.isSymlink() && (!last || follow) {
			hops++
			if hops > fs.MaxSymlinkHops {
				return resolved{}, fs.ErrTooManyLinks
			}
			target, err := f.readLinkTarget(in)
			if err != nil {
				return resolved{}, err
			}
			if target == "" {
				return resolved{}, fs.ErrNotExist
			}
			if strings.HasPrefix(target, "/") {
				stack = stack[:1]
			}
			tc := strings.Split(target, "/")
			if len(tc)+len(comps) > maxPendingComponents {
				return resolved{}, fmt.Errorf("symlink expansion too long: %w", fs.ErrInvalidPath)
			}
			comps = append(tc, comps...)
			continue
		}
		if last {
			return resolved{parent: cur, name: name, in: in}, nil
		}
		if !in.isDir() {
			return resolved{}, fs.ErrNotDir
		}
		stack = append(stack, in)
	}
	// The walk ended on a directory reached through "." or ".." (or the root).
	r := resolved{in: stack[len(stack)-1]}
	if len(stack) > 1 {
		r.parent = stack[len(stack)-2]
	}
	return r, nil
}

// resolveDir resolves path (following every symlink) and requires a
// directory.
func (f *FS) resolveDir(path string) (*inode, error) {
	r, err := f.resolve(path, true)
	if err != nil {
		return nil, err
	}
	if r.in == nil {
		return nil, fs.ErrNotExist
	}
	if !r.in.isDir() {
		return nil, fs.ErrNotDir
	}
	return r.in, nil
}

// readLinkTarget returns a symlink's target.
func (f *FS) readLinkTarget(in *inode) (string, error) {
	size := in.size()
	if size == 0 {
		return "", nil
	}
	if size >= fs.MaxPathLen || size >= uint64(f.blockSize) {
		return "", corruptf("symlink inode %d has implausible length %d", in.ino, size)
	}
	if in.flags()&flagInlineData != 0 {
		b, err := f.inlineData(in)
		return string(b), err
	}
	if f.isFastSymlink(in) {
		if size >= iBlockLen {
			return "", corruptf("fast symlink inode %d has length %d", in.ino, size)
		}
		return string(in.iblock()[:size]), nil
	}
	file, err := f.openInode(in)
	if err != nil {
		return "", err
	}
	buf := make([]byte, size)
	if _, err := file.ReadAt(buf, 0); err != nil {
		return "", err
	}
	return string(buf), nil
}
