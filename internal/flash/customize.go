package flash

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/hostname"
	"github.com/bakeryhq/bakery/internal/image"
	"github.com/bakeryhq/bakery/internal/textedit"
)

// Card identifies the card a Customizer works on.
type Card struct {
	// N is the card's 1-based position in the target list.
	N int
	// Target is the device or file path.
	Target string
}

// Customizer edits one freshly written card through the image engine. It
// runs after the card was written and verified; the changes it makes are
// committed (and synced) together after the last customizer, and are not
// verified again (they are the image engine's own writes, not image data).
// Issue 7 adds one that mints a wrapped secret per card.
type Customizer interface {
	Customize(ctx context.Context, card Card, im *image.Image) error
}

// CustomizerFunc adapts a function to Customizer.
type CustomizerFunc func(ctx context.Context, card Card, im *image.Image) error

// Customize calls f.
func (f CustomizerFunc) Customize(ctx context.Context, card Card, im *image.Image) error {
	return f(ctx, card, im)
}

// customize opens the written card with the image engine, runs every
// customizer and commits.
func (w *worker) customize(ctx context.Context) error {
	im, err := image.Open(w.t.Path, image.Options{Writable: true})
	if err != nil {
		return err
	}
	defer im.Close()
	card := Card{N: w.n, Target: w.t.Path}
	for _, c := range w.opts.Customizers {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		if err := c.Customize(ctx, card, im); err != nil {
			return err
		}
	}
	if err := im.Commit(); err != nil {
		return err
	}
	return w.t.Sync()
}

// Expand fills a per-card template: {n} is the card's position (1, 2, ...)
// and {target} the target's base name made hostname-safe ("sdb",
// "mmcblk0", "card1-img").
func Expand(template string, card Card) string {
	return strings.NewReplacer("{n}", strconv.Itoa(card.N), "{target}", safeName(filepath.Base(card.Target))).Replace(template)
}

func safeName(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-")
}

// Hostname returns a Customizer that names each card from template (see
// Expand): /etc/hostname and the 127.0.1.1 line of /etc/hosts on the root
// filesystem, and, when the boot partition carries a cloud-init NoCloud
// seed (meta-data, user-data), local-hostname and a per-card instance-id
// there plus hostname in a #cloud-config user-data, so cloud-init applies
// the name instead of a DHCP-provided one.
func Hostname(template string) (Customizer, error) {
	if err := hostname.Valid(Expand(template, Card{N: 1, Target: "sda"})); err != nil {
		return nil, fmt.Errorf("--hostname %q: %w", template, err)
	}
	return CustomizerFunc(func(ctx context.Context, card Card, im *image.Image) error {
		name := Expand(template, card)
		if err := hostname.Valid(name); err != nil {
			return err
		}
		return SetHostname(im, name)
	}), nil
}

// maxConfigBytes bounds the configuration files read from an image.
const maxConfigBytes = 1 << 20

// SetHostname names the system in im; see Hostname.
func SetHostname(im *image.Image, name string) error {
	short, _, _ := strings.Cut(name, ".")
	did := false
	root, rootErr := im.Role(image.RoleRoot)
	if rootErr == nil {
		if err := writeText(root, "/etc/hostname", name+"\n", 0o644); err != nil {
			return err
		}
		hosts, err := readText(root, "/etc/hosts")
		if errors.Is(err, fs.ErrNotExist) {
			hosts = defaultHosts
		} else if err != nil {
			return err
		}
		names := []string{name}
		if short != name {
			names = append(names, short)
		}
		if err := writeText(root, "/etc/hosts", hostname.Hosts(hosts, names...), 0o644); err != nil {
			return err
		}
		did = true
	}
	if boot, err := im.Role(image.RoleBoot); err == nil {
		seeded, err := setCloudInitHostname(boot, name, short)
		if err != nil {
			return err
		}
		did = did || seeded
	}
	if !did {
		return fmt.Errorf("set hostname: the image has no root filesystem (%v) and no cloud-init seed on a boot partition", rootErr)
	}
	return nil
}

const defaultHosts = `127.0.0.1	localhost
::1		localhost ip6-localhost ip6-loopback
ff02::1		ip6-allnodes
ff02::2		ip6-allrouters
`

// setCloudInitHostname updates a NoCloud seed at the root of the boot
// filesystem. It reports whether there was one.
func setCloudInitHostname(boot fs.Filesystem, name, short string) (bool, error) {
	meta, metaErr := readText(boot, "/meta-data")
	user, userErr := readText(boot, "/user-data")
	if metaErr != nil && !errors.Is(metaErr, fs.ErrNotExist) {
		return false, metaErr
	}
	if userErr != nil && !errors.Is(userErr, fs.ErrNotExist) {
		return false, userErr
	}
	if metaErr != nil && userErr != nil {
		return false, nil
	}
	// A new instance-id per card makes cloud-init treat each card as its
	// own instance, even when the image was booted once before.
	meta = setYAMLKey(meta, "instance-id", "bakery-"+name)
	meta = setYAMLKey(meta, "local-hostname", name)
	if err := writeText(boot, "/meta-data", meta, 0o644); err != nil {
		return true, err
	}
	if userErr == nil && strings.HasPrefix(user, "#cloud-config") {
		user = setYAMLKey(user, "hostname", short)
		if short != name {
			user = setYAMLKey(user, "fqdn", name)
		}
		if err := writeText(boot, "/user-data", user, 0o644); err != nil {
			return true, err
		}
	}
	return true, nil
}

// setYAMLKey sets a top-level scalar key in a YAML document by editing its
// line (or appending one), keeping comments and everything else as is.
func setYAMLKey(doc, key, value string) string {
	line := key + ": " + strconv.Quote(value)
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(doc))
	sc.Buffer(make([]byte, 0, 64<<10), maxConfigBytes)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	out, found := textedit.ReplaceFirst(lines, func(l string) bool {
		k, _, ok := strings.Cut(l, ":")
		return ok && k == key
	}, line)
	if !found {
		out = append(out, line)
	}
	return strings.Join(out, "\n") + "\n"
}

func readText(f fs.Filesystem, path string) (string, error) {
	b, err := fs.ReadLimited(f, path, maxConfigBytes)
	return string(b), err
}

// writeText writes a file keeping the owner and mode of the one it
// replaces.
func writeText(f fs.Filesystem, path, content string, mode iofs.FileMode) error {
	attr := fs.Attr{Mode: mode}
	if fi, err := f.Lstat(path); err == nil && fi.IsRegular() {
		attr = fi.Attr(time.Time{})
	}
	if err := f.WriteFile(path, strings.NewReader(content), attr); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Put is a file to copy into each card: PART:/path=LOCALFILE.
type Put struct {
	// Part is "boot", "root" or a partition number.
	Part string
	// Path is the absolute path inside the partition's filesystem.
	Path string
	// Local is the file to copy; {n} and {target} are expanded per card.
	Local string
	// Mode applies where the filesystem keeps modes (not FAT).
	Mode iofs.FileMode
}

// DefaultPutMode is for credential-like files: readable by root only.
const DefaultPutMode = 0o600

// ParsePut parses "PART:/path=LOCALFILE".
func ParsePut(spec string, mode iofs.FileMode) (Put, error) {
	part, rest, ok := strings.Cut(spec, ":")
	dst, local, ok2 := strings.Cut(rest, "=")
	if !ok || !ok2 || part == "" || local == "" {
		return Put{}, fmt.Errorf("--put %q: want PART:/path=LOCALFILE, PART being boot, root or a partition number", spec)
	}
	if part != image.RoleBoot && part != image.RoleRoot {
		if n, err := strconv.Atoi(part); err != nil || n < 1 {
			return Put{}, fmt.Errorf("--put %q: partition %q is not boot, root or a number", spec, part)
		}
	}
	clean, err := fs.Clean(dst)
	if err != nil || clean == "/" {
		return Put{}, fmt.Errorf("--put %q: destination %q must be an absolute file path", spec, dst)
	}
	return Put{Part: part, Path: clean, Local: local, Mode: mode}, nil
}

// Check makes sure the local file of the first card exists, so a typo
// fails before anything is written.
func (p Put) Check() error {
	local := Expand(p.Local, Card{N: 1, Target: "sda"})
	st, err := os.Stat(local)
	if err != nil {
		return fmt.Errorf("--put %s: %w", p.Local, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("--put %s: not a regular file", local)
	}
	return nil
}

// Customize copies the file in, creating parent directories (0755).
func (p Put) Customize(ctx context.Context, card Card, im *image.Image) error {
	idx, err := im.Resolve(p.Part)
	if err != nil {
		return err
	}
	f, err := im.Filesystem(idx)
	if err != nil {
		return err
	}
	local := Expand(p.Local, card)
	src, err := os.Open(local)
	if err != nil {
		return fmt.Errorf("put %s: %w", p.Path, err)
	}
	defer src.Close()
	if dir := fs.Dir(p.Path); dir != "/" {
		if err := f.MkdirAll(dir, fs.Attr{Mode: 0o755}); err != nil {
			return fmt.Errorf("put %s: %w", p.Path, err)
		}
	}
	if err := f.WriteFile(p.Path, io.Reader(src), fs.Attr{Mode: p.Mode}); err != nil {
		return fmt.Errorf("put %s from %s: %w", p.Path, local, err)
	}
	return nil
}
