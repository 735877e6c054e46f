package main

import (
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/bakeryhq/bakery/internal/accounts"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/image"
)

func newFSCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fs",
		Short: "Read and edit files inside a disk image, without root or mounting",
		Long: `Read and edit files inside a disk image, without root or mounting.

PART is a 1-based partition number, or "boot" (the FAT partition with the Pi
firmware or EFI) or "root" (the partition holding /etc/os-release). Every
editing command changes the image all-or-nothing: on any error it is left
exactly as it was.`,
	}
	cmd.AddCommand(fsLs(), fsCat(), fsPut(), fsMkdir(), fsRm(), fsChmod(), fsChown(), fsLn())
	return cmd
}

// withFS opens IMAGE, resolves PART and runs fn. Writable opens commit only if
// fn succeeds.
func withFS(image_, part string, writable bool, fn func(f fs.Filesystem) error) error {
	opts := image.Options{Writable: writable, FS: fs.Options{DefaultTime: defaultTime()}}
	im, err := image.Open(image_, opts)
	if err != nil {
		return err
	}
	defer im.Close()
	idx, err := im.Resolve(part)
	if err != nil {
		return err
	}
	f, err := im.Filesystem(idx)
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		return err
	}
	if writable {
		return im.Commit()
	}
	return nil
}

// defaultTime stamps edits: SOURCE_DATE_EPOCH when set (reproducible
// pipelines), else now.
func defaultTime() time.Time {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC()
		}
	}
	return time.Now().UTC().Truncate(time.Second)
}

func fsLs() *cobra.Command {
	var long, asJSON bool
	cmd := &cobra.Command{
		Use:   "ls IMAGE PART [PATH]",
		Short: "List a directory (or show one file)",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/"
			if len(args) == 3 {
				path = args[2]
			}
			return withFS(args[0], args[1], false, func(f fs.Filesystem) error {
				st, err := f.Stat(path)
				if err != nil {
					return err
				}
				entries := []fs.FileInfo{st}
				if st.IsDir() {
					if entries, err = f.ReadDir(path); err != nil {
						return err
					}
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), jsonEntries(entries))
				}
				return printEntries(cmd.OutOrStdout(), entries, long)
			})
		},
	}
	cmd.Flags().BoolVarP(&long, "long", "l", false, "show mode, owner, size and time")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

type jsonEntry struct {
	Name    string    `json:"name"`
	Mode    string    `json:"mode"`
	Perm    string    `json:"perm"`
	Size    int64     `json:"size"`
	UID     uint32    `json:"uid"`
	GID     uint32    `json:"gid"`
	ModTime time.Time `json:"mtime"`
	Target  string    `json:"target,omitempty"`
}

func jsonEntries(es []fs.FileInfo) []jsonEntry {
	out := make([]jsonEntry, 0, len(es))
	for _, e := range es {
		out = append(out, jsonEntry{e.Name, fs.FormatMode(e.Mode), fmt.Sprintf("%04o", fs.UnixPerm(e.Mode)),
			e.Size, e.UID, e.GID, e.ModTime.UTC(), e.Target})
	}
	return out
}

func printEntries(w io.Writer, es []fs.FileInfo, long bool) error {
	if !long {
		for _, e := range es {
			fmt.Fprintln(w, fs.Printable(e.Name))
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.AlignRight)
	for _, e := range es {
		name := fs.Printable(e.Name)
		if e.Target != "" {
			name += " -> " + fs.Printable(e.Target)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t %s\t %s\n", fs.FormatMode(e.Mode), e.UID, e.GID, e.Size,
			e.ModTime.UTC().Format("2006-01-02 15:04"), name)
	}
	return tw.Flush()
}

func fsCat() *cobra.Command {
	return &cobra.Command{
		Use:   "cat IMAGE PART PATH",
		Short: "Print a file",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFS(args[0], args[1], false, func(f fs.Filesystem) error {
				fh, err := f.Open(args[2])
				if err != nil {
					return err
				}
				defer fh.Close()
				_, err = io.Copy(cmd.OutOrStdout(), fh)
				return err
			})
		},
	}
}

// attrFlags are the --mode/--owner/--mtime flags shared by editing commands.
type attrFlags struct {
	mode, owner, mtime string
}

func (a *attrFlags) register(cmd *cobra.Command, defMode string) {
	cmd.Flags().StringVar(&a.mode, "mode", "", "octal permissions (default "+defMode+", or the existing file's)")
	cmd.Flags().StringVar(&a.owner, "owner", "", "UID:GID or user:group from the image's own /etc/passwd (default 0:0, or the existing file's)")
	cmd.Flags().StringVar(&a.mtime, "mtime", "", "modification time, RFC 3339 or @UNIX (default SOURCE_DATE_EPOCH or now)")
}

// resolve computes the attributes to apply; existing supplies the defaults
// when replacing something.
func (a *attrFlags) resolve(f fs.Filesystem, defMode iofs.FileMode, existing *fs.FileInfo) (fs.Attr, error) {
	attr := fs.Attr{Mode: defMode}
	if existing != nil {
		attr = existing.Attr(time.Time{})
	}
	if a.mode != "" {
		m, err := fs.ParseMode(a.mode)
		if err != nil {
			return attr, fmt.Errorf("--mode: %w", err)
		}
		attr.Mode = m
	}
	if a.owner != "" {
		uid, gid, err := accounts.ResolveOwner(f, a.owner)
		if err != nil {
			return attr, fmt.Errorf("--owner: %w", err)
		}
		attr.UID, attr.GID = uid, gid
	}
	if a.mtime != "" {
		t, err := parseTime(a.mtime)
		if err != nil {
			return attr, fmt.Errorf("--mtime: %w", err)
		}
		attr.ModTime = t
	}
	return attr, nil
}

func parseTime(s string) (time.Time, error) {
	if len(s) > 1 && s[0] == '@' {
		n, err := strconv.ParseInt(s[1:], 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("%q: want @UNIX-SECONDS", s)
		}
		return time.Unix(n, 0).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want RFC 3339 (2024-11-19T12:00:00Z) or @UNIX-SECONDS", s)
	}
	return t, nil
}

func fsPut() *cobra.Command {
	var a attrFlags
	var recursive bool
	cmd := &cobra.Command{
		Use:   "put IMAGE PART SRC DEST",
		Short: "Copy a local file (or - for stdin, or a directory with -r) into the image, creating or replacing DEST",
		Args:  cobra.ExactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, dest := args[2], args[3]
			if recursive {
				return withFS(args[0], args[1], true, func(f fs.Filesystem) error {
					return putTree(f, src, dest, &a)
				})
			}
			var r io.Reader = cmd.InOrStdin()
			if src != "-" {
				fh, err := os.Open(src)
				if err != nil {
					return err
				}
				defer fh.Close()
				st, err := fh.Stat()
				if err != nil {
					return err
				}
				if st.IsDir() {
					return fmt.Errorf("put %s: is a directory (use -r to copy a tree)", src)
				}
				r = fh
			}
			return withFS(args[0], args[1], true, func(f fs.Filesystem) error {
				return putFile(f, r, dest, &a, 0o644)
			})
		},
	}
	a.register(cmd, "0644")
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "copy the directory SRC and everything below it to DEST")
	return cmd
}

func putFile(f fs.Filesystem, r io.Reader, dest string, a *attrFlags, defMode iofs.FileMode) error {
	var existing *fs.FileInfo
	if st, err := f.Lstat(dest); err == nil {
		if st.IsDir() {
			return fs.PathErr("put", dest, fs.ErrIsDir)
		}
		existing = &st
	}
	attr, err := a.resolve(f, defMode, existing)
	if err != nil {
		return err
	}
	return f.WriteFile(dest, r, attr)
}

// putTree copies a local directory tree. Files keep their local permission
// bits unless --mode is given; symlinks are copied as links.
func putTree(f fs.Filesystem, src, dest string, a *attrFlags) error {
	dest, err := fs.Clean(dest)
	if err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := dest
		if rel != "." {
			target = fs.Join(dest, filepath.ToSlash(rel))
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			attr, err := a.resolve(f, info.Mode().Perm(), nil)
			if err != nil {
				return err
			}
			return f.MkdirAll(target, attr)
		case info.Mode()&iofs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			attr, err := a.resolve(f, 0o777, nil)
			if err != nil {
				return err
			}
			if _, err := f.Lstat(target); err == nil {
				if err := f.Remove(target); err != nil {
					return err
				}
			}
			return f.Symlink(link, target, attr)
		case info.Mode().IsRegular():
			fh, err := os.Open(p)
			if err != nil {
				return err
			}
			defer fh.Close()
			return putFile(f, fh, target, a, info.Mode().Perm())
		}
		return fmt.Errorf("put %s: not a regular file, directory or symlink", p)
	})
}

func fsMkdir() *cobra.Command {
	var a attrFlags
	cmd := &cobra.Command{
		Use:   "mkdir IMAGE PART PATH",
		Short: "Create a directory and any missing parents (like mkdir -p)",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFS(args[0], args[1], true, func(f fs.Filesystem) error {
				attr, err := a.resolve(f, 0o755, nil)
				if err != nil {
					return err
				}
				return f.MkdirAll(args[2], attr)
			})
		},
	}
	a.register(cmd, "0755")
	return cmd
}

func fsRm() *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:   "rm IMAGE PART PATH...",
		Short: "Remove files, symlinks or empty directories (-r for whole trees)",
		Args:  cobra.MinimumNArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFS(args[0], args[1], true, func(f fs.Filesystem) error {
				for _, p := range args[2:] {
					var err error
					if recursive {
						err = removeAll(f, p)
					} else {
						err = f.Remove(p)
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove directories and their contents")
	return cmd
}

func removeAll(f fs.Filesystem, path string) error {
	st, err := f.Lstat(path)
	if err != nil {
		return err
	}
	if st.IsDir() {
		entries, err := f.ReadDir(path)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := removeAll(f, fs.Join(path, e.Name)); err != nil {
				return err
			}
		}
	}
	return f.Remove(path)
}

func fsChmod() *cobra.Command {
	return &cobra.Command{
		Use:   "chmod IMAGE PART PATH MODE",
		Short: "Change permissions (octal, e.g. 0600)",
		Args:  cobra.ExactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := fs.ParseMode(args[3])
			if err != nil {
				return err
			}
			return withFS(args[0], args[1], true, func(f fs.Filesystem) error {
				return f.Chmod(args[2], m)
			})
		},
	}
}

func fsChown() *cobra.Command {
	return &cobra.Command{
		Use:   "chown IMAGE PART PATH OWNER",
		Short: "Change owner: UID:GID or user:group from the image's own /etc/passwd",
		Args:  cobra.ExactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFS(args[0], args[1], true, func(f fs.Filesystem) error {
				uid, gid, err := accounts.ResolveOwner(f, args[3])
				if err != nil {
					return err
				}
				return f.Chown(args[2], uid, gid)
			})
		},
	}
}

func fsLn() *cobra.Command {
	var hard bool
	var a attrFlags
	cmd := &cobra.Command{
		Use:   "ln IMAGE PART TARGET LINK",
		Short: "Create a symbolic link LINK pointing at TARGET (like ln -s), or a hard link with --hard",
		Args:  cobra.ExactArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFS(args[0], args[1], true, func(f fs.Filesystem) error {
				if hard {
					l, ok := f.(fs.Linker)
					if !ok {
						return fs.PathErr("link", args[3], fs.ErrNotSupported)
					}
					return l.Link(args[2], args[3])
				}
				attr, err := a.resolve(f, 0o777, nil)
				if err != nil {
					return err
				}
				if _, err := f.Lstat(args[3]); err == nil {
					return fs.PathErr("symlink", args[3], fs.ErrExist)
				} else if !errors.Is(err, fs.ErrNotExist) {
					return err
				}
				return f.Symlink(args[2], args[3], attr)
			})
		},
	}
	cmd.Flags().BoolVar(&hard, "hard", false, "make a hard link instead of a symbolic one")
	a.register(cmd, "0777")
	return cmd
}
