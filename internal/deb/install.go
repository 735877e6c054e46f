package deb

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/accounts"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/streams"
)

// Limits on a package's data.
const (
	maxEntries   = 1 << 20
	maxDataBytes = 16 << 30
	maxLinkLen   = 4095
)

// The dpkg database.
const (
	AdminDir   = "/var/lib/dpkg"
	StatusFile = AdminDir + "/status"
	InfoDir    = AdminDir + "/info"
)

// ConfigureCommand finishes packages installed by Install on the running
// system; the build runs it at first boot.
const ConfigureCommand = "dpkg --configure -a"

// Result reports what Install did.
type Result struct {
	Package string `json:"package"`
	Version string `json:"version"`
	Arch    string `json:"architecture"`
	// Files are the paths the package installed (dirs included).
	Files int `json:"files"`
	// Scripts are the maintainer scripts that will run at first boot.
	Scripts []string `json:"scripts,omitempty"`
}

// Options tune Install.
type Options struct {
	// Arch is the image's dpkg architecture; a package for another one
	// (other than "all") is refused. Empty skips the check.
	Arch string
	// ModTime stamps the dpkg database files (zero: filesystem default).
	// Unpacked files keep the package's own times.
	ModTime time.Time
}

// Install unpacks pkg (whose bytes r holds) into root and registers it.
func Install(ctx context.Context, root fs.Filesystem, pkg *Package, opts Options) (*Result, error) {
	if opts.Arch != "" && pkg.Architecture() != "all" && pkg.Architecture() != opts.Arch {
		return nil, fmt.Errorf("%s is for %s, but the image is %s", pkg.Name(), pkg.Architecture(), opts.Arch)
	}
	if _, err := root.Stat(StatusFile); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("install %s: the image has no dpkg database (%s): it is not Debian-based", pkg.Name(), StatusFile)
		}
		return nil, err
	}
	u := &unpacker{root: root, pkg: pkg, owned: map[string]bool{}, regular: map[string]string{}, ids: loadIDs(root)}
	if err := u.unpack(ctx); err != nil {
		return nil, fmt.Errorf("install %s: %w", pkg.Name(), err)
	}
	if err := register(root, pkg, u, opts.ModTime); err != nil {
		return nil, fmt.Errorf("register %s: %w", pkg.Name(), err)
	}
	res := &Result{Package: pkg.Name(), Version: pkg.Version(), Arch: pkg.Architecture(), Files: len(u.list)}
	for _, s := range []string{"preinst", "postinst", "prerm", "postrm"} {
		if _, ok := pkg.ControlFiles[s]; ok {
			res.Scripts = append(res.Scripts, s)
		}
	}
	return res, nil
}

// idMap resolves tar user and group names in the image's own account
// files, as dpkg does (a name that does not exist keeps the numeric id).
type idMap struct {
	users, groups map[string]uint32
}

func loadIDs(root fs.Filesystem) idMap {
	m := idMap{users: map[string]uint32{}, groups: map[string]uint32{}}
	for _, t := range []struct {
		path string
		into map[string]uint32
	}{{"/etc/passwd", m.users}, {"/etc/group", m.groups}} {
		tab, err := accounts.Load(root, t.path)
		if err != nil {
			continue
		}
		for _, l := range tab.Lines {
			if len(l) > 2 {
				if n, err := strconv.ParseUint(l[2], 10, 32); err == nil {
					t.into[l[0]] = uint32(n)
				}
			}
		}
	}
	return m
}

func (m idMap) resolve(h *tar.Header) (uint32, uint32) {
	uid, gid := uint32(h.Uid), uint32(h.Gid)
	if h.Uid < 0 || int64(h.Uid) > 1<<31 {
		uid = 0
	}
	if h.Gid < 0 || int64(h.Gid) > 1<<31 {
		gid = 0
	}
	if id, ok := m.users[h.Uname]; ok && h.Uname != "" {
		uid = id
	}
	if id, ok := m.groups[h.Gname]; ok && h.Gname != "" {
		gid = id
	}
	return uid, gid
}

type unpacker struct {
	root fs.Filesystem
	pkg  *Package
	ids  idMap
	// owned are the symlinks this package created: nothing may be
	// unpacked through them (the classic tar-slip through a planted link).
	owned map[string]bool
	// regular maps each regular file unpacked to its MD5.
	regular map[string]string
	list    []string
	total   int64
}

// CleanName turns a tar member name ("./usr/bin/x") into an absolute image
// path, refusing absolute names, ".." and NUL bytes.
func CleanName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("member %q has an absolute path", name)
	}
	n := strings.TrimPrefix(name, "./")
	n = strings.TrimSuffix(n, "/")
	if n == "" || n == "." {
		return "/", nil
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." {
			return "", fmt.Errorf("member %q climbs out of the root with ..", name)
		}
	}
	clean, err := fs.Clean("/" + n)
	if err != nil {
		return "", fmt.Errorf("member %q: %w", name, err)
	}
	return clean, nil
}

func (u *unpacker) unpack(ctx context.Context) error {
	return u.pkg.walkData(ctx, u.entry)
}

func (u *unpacker) entry(tr *tar.Reader, h *tar.Header) error {
	name, err := CleanName(h.Name)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrFormat, err)
	}
	if name == "/" {
		u.list = append(u.list, "/.")
		return nil
	}
	for d := fs.Dir(name); d != "/"; d = fs.Dir(d) {
		if u.owned[d] {
			return fmt.Errorf("%w: %s would be written through %s, a symlink this package created", ErrFormat, name, d)
		}
	}
	uid, gid := u.ids.resolve(h)
	attr := fs.Attr{Mode: fs.FromUnixPerm(uint32(h.Mode & 0o7777)), UID: uid, GID: gid, ModTime: h.ModTime}
	if err := u.parents(name); err != nil {
		return err
	}
	existing, statErr := u.root.Lstat(name)
	exists := statErr == nil
	switch h.Typeflag {
	case tar.TypeDir:
		// An existing directory, or a symlink to one (merged /usr), is
		// kept as it is, as dpkg does.
		if exists && (existing.IsDir() || existing.Mode&iofs.ModeSymlink != 0) {
			break
		}
		if exists {
			if err := u.root.Remove(name); err != nil {
				return fmt.Errorf("replace %s with a directory: %w", name, err)
			}
		}
		if err := u.root.MkdirAll(name, attr); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
	case tar.TypeReg, tar.TypeRegA:
		if h.Size < 0 || h.Size > maxDataBytes-u.total {
			return fmt.Errorf("%w: %s: size %d exceeds the %d-byte limit for a package", ErrFormat, name, h.Size, int64(maxDataBytes))
		}
		u.total += h.Size
		if exists && existing.IsDir() {
			return fmt.Errorf("%s is a directory in the image and a file in the package", name)
		}
		sum := md5.New()
		body := io.TeeReader(io.LimitReader(tr, h.Size), sum)
		cr := &streams.CountingReader{R: body}
		if err := u.root.WriteFile(name, cr, attr); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		if cr.N != h.Size {
			return fmt.Errorf("%w: %s: data.tar ends after %d of %d bytes", ErrFormat, name, cr.N, h.Size)
		}
		u.regular[name] = hex.EncodeToString(sum.Sum(nil))
	case tar.TypeSymlink:
		if h.Linkname == "" || len(h.Linkname) > maxLinkLen || strings.ContainsRune(h.Linkname, 0) {
			return fmt.Errorf("%w: symlink %s has an invalid target", ErrFormat, name)
		}
		if exists {
			if existing.IsDir() {
				return fmt.Errorf("%s is a directory in the image and a symlink in the package", name)
			}
			if err := u.root.Remove(name); err != nil {
				return fmt.Errorf("replace %s: %w", name, err)
			}
		}
		if err := u.root.Symlink(h.Linkname, name, attr); err != nil {
			return fmt.Errorf("symlink %s: %w", name, err)
		}
		u.owned[name] = true
	case tar.TypeLink:
		target, err := CleanName(h.Linkname)
		if err != nil {
			return fmt.Errorf("%w: hard link %s: %v", ErrFormat, name, err)
		}
		sum, ok := u.regular[target]
		if !ok {
			return fmt.Errorf("%w: hard link %s -> %s: the target is not a file of this package unpacked before it", ErrFormat, name, target)
		}
		if exists {
			if existing.IsDir() {
				return fmt.Errorf("%s is a directory in the image and a file in the package", name)
			}
			if err := u.root.Remove(name); err != nil {
				return fmt.Errorf("replace %s: %w", name, err)
			}
		}
		if l, ok := u.root.(fs.Linker); ok {
			if err := l.Link(target, name); err != nil {
				return fmt.Errorf("link %s to %s: %w", name, target, err)
			}
		} else if err := u.copyFile(target, name, attr); err != nil {
			return err
		}
		u.regular[name] = sum
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mk, ok := u.root.(fs.Mknoder)
		if !ok {
			return fmt.Errorf("%s: the filesystem cannot hold device nodes", name)
		}
		mode := attr.Mode
		switch h.Typeflag {
		case tar.TypeChar:
			mode |= iofs.ModeDevice | iofs.ModeCharDevice
		case tar.TypeBlock:
			mode |= iofs.ModeDevice
		case tar.TypeFifo:
			mode |= iofs.ModeNamedPipe
		}
		if exists {
			if err := u.root.Remove(name); err != nil {
				return fmt.Errorf("replace %s: %w", name, err)
			}
		}
		major, minor := uint64(h.Devmajor)&0xffffffff, uint64(h.Devminor)&0xffffffff
		rdev := (major&0xfff)<<8 | (major&^0xfff)<<32 | minor&0xff | (minor&^0xff)<<12 // Linux makedev
		if err := mk.Mknod(name, mode, rdev, attr); err != nil {
			return fmt.Errorf("mknod %s: %w", name, err)
		}
	default:
		return fmt.Errorf("%w: %s has unsupported tar type %q", ErrFormat, name, h.Typeflag)
	}
	u.list = append(u.list, name)
	return nil
}

// parents creates missing parent directories (root:root 0755), as dpkg
// does for a data.tar that omits them.
func (u *unpacker) parents(name string) error {
	d := fs.Dir(name)
	if d == "/" {
		return nil
	}
	if fi, err := u.root.Stat(d); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s: %s is not a directory in the image", name, d)
		}
		return nil
	}
	if err := u.root.MkdirAll(d, fs.Attr{Mode: 0o755}); err != nil {
		return fmt.Errorf("create %s: %w", d, err)
	}
	return nil
}

func (u *unpacker) copyFile(src, dst string, attr fs.Attr) error {
	f, err := u.root.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := u.root.WriteFile(dst, f, attr); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return nil
}

// register records the package in the dpkg database as unpacked.
func register(root fs.Filesystem, pkg *Package, u *unpacker, mtime time.Time) error {
	info := pkg.InfoName()
	if err := root.MkdirAll(InfoDir, fs.Attr{Mode: 0o755, ModTime: mtime}); err != nil {
		return err
	}
	write := func(p string, b []byte, mode iofs.FileMode) error {
		if err := root.WriteFile(p, bytes.NewReader(b), fs.Attr{Mode: mode, ModTime: mtime}); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
		return nil
	}
	var list bytes.Buffer
	for _, p := range u.list {
		list.WriteString(p)
		list.WriteByte('\n')
	}
	if err := write(InfoDir+"/"+info+".list", list.Bytes(), 0o644); err != nil {
		return err
	}
	if _, ok := pkg.ControlFiles["md5sums"]; !ok {
		var sums bytes.Buffer
		var names []string
		for p := range u.regular {
			names = append(names, p)
		}
		sort.Strings(names)
		for _, p := range names {
			fmt.Fprintf(&sums, "%s  %s\n", u.regular[p], p[1:])
		}
		if err := write(InfoDir+"/"+info+".md5sums", sums.Bytes(), 0o644); err != nil {
			return err
		}
	}
	for _, name := range pkg.sortedInfoFiles() {
		cf := pkg.ControlFiles[name]
		mode := iofs.FileMode(0o644)
		if cf.Mode&0o111 != 0 || name == "preinst" || name == "postinst" || name == "prerm" || name == "postrm" || name == "config" {
			mode = 0o755
		}
		if err := write(InfoDir+"/"+info+"."+name, cf.Data, mode); err != nil {
			return err
		}
	}
	return updateStatus(root, pkg, u, mtime)
}

// updateStatus adds or replaces the package's paragraph in the status
// file, keeping every other paragraph as it was and the file sorted by
// package name and architecture.
func updateStatus(root fs.Filesystem, pkg *Package, u *unpacker, mtime time.Time) error {
	fi, err := root.Stat(StatusFile)
	if err != nil {
		return err
	}
	old, err := fs.ReadLimited(root, StatusFile, 256<<20)
	if err != nil {
		return err
	}
	paras, err := ParseParagraphs(old)
	if err != nil {
		return fmt.Errorf("%s is not parsable: %w", StatusFile, err)
	}
	entry := &Paragraph{Fields: append([]Field(nil), pkg.Control.Fields...)}
	entry.Set("Status", "install ok unpacked", "Package")
	entry.Delete("Conffiles")
	if cfs := pkg.Conffiles(); len(cfs) > 0 {
		var v strings.Builder
		for _, c := range cfs {
			sum, ok := u.regular[c]
			if !ok {
				return fmt.Errorf("conffile %s is not a file of the package", c)
			}
			// The file is in place and its hash recorded, so
			// dpkg --configure keeps it (there is no .dpkg-new).
			fmt.Fprintf(&v, "\n %s %s", c, sum)
		}
		entry.Set("Conffiles", v.String(), "")
	}
	multiSame := strings.EqualFold(pkg.Control.Get("Multi-Arch"), "same")
	replaced := false
	for i, p := range paras {
		if p.Get("Package") == pkg.Name() && (!multiSame || p.Get("Architecture") == pkg.Architecture()) {
			paras[i] = entry
			replaced = true
		}
	}
	if !replaced {
		paras = append(paras, entry)
	}
	sort.SliceStable(paras, func(i, j int) bool {
		a, b := paras[i].Get("Package"), paras[j].Get("Package")
		if a != b {
			return a < b
		}
		return paras[i].Get("Architecture") < paras[j].Get("Architecture")
	})
	var out bytes.Buffer
	for i, p := range paras {
		if i > 0 {
			out.WriteByte('\n')
		}
		out.Write(p.Bytes())
	}
	attr := fs.Attr{Mode: fi.Mode.Perm(), UID: fi.UID, GID: fi.GID, ModTime: mtime}
	if err := root.WriteFile(StatusFile, bytes.NewReader(out.Bytes()), attr); err != nil {
		return fmt.Errorf("write %s: %w", StatusFile, err)
	}
	return nil
}
