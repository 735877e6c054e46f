// Package build is bakery build's pipeline: it turns a spec into a golden
// image. It fetches the base (internal/fetch), copies it sparsely into the
// output directory under a temporary name, changes the partition layout,
// opens the image's filesystems writable, runs the customisation steps of
// internal/build/step in their fixed order, removes machine state (golden
// cleanup), writes the first-boot work, commits, writes the outputs, and
// renames everything into place at the very end.
//
// The pipeline alone owns I/O ordering, progress and atomic output: a
// failed or interrupted build removes its temporary files and never
// leaves an output that looks finished, and the cached base is only ever
// read. The same spec, variables and base give byte-identical outputs.
package build

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bakeryhq/bakery/internal/build/step"
	"github.com/bakeryhq/bakery/internal/fetch"
	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/image"
	"github.com/bakeryhq/bakery/internal/progress"
	"github.com/bakeryhq/bakery/internal/spec"
	"github.com/bakeryhq/bakery/internal/streams"
)

// Options configure a build.
type Options struct {
	// OutDir overrides the spec's output.dir (relative to the working
	// directory).
	OutDir string
	// CacheDir holds downloaded and decompressed bases (default
	// fetch.DefaultCacheDir()).
	CacheDir string
	// Progress shows download, decompress, customise and output tasks.
	Progress *progress.Reporter
	// Logger receives what the build does (wrap it with the spec's
	// redactor: see spec.Redactor().Handler).
	Logger *slog.Logger
	// SourceDateEpoch fixes every timestamp (seconds since 1970); nil
	// derives it from the base image (see BuildTime).
	SourceDateEpoch *int64
	// HTTPClient downloads bases (default http.DefaultClient).
	Fetcher *fetch.Fetcher
}

// Result describes a finished build. It never holds a secret.
type Result struct {
	Spec            string             `json:"spec"`
	Base            BaseInfo           `json:"base"`
	Outputs         []Output           `json:"outputs"`
	Steps           []string           `json:"steps"`
	Golden          step.GoldenReport  `json:"golden,omitempty"`
	Layout          *step.LayoutResult `json:"layout,omitempty"`
	FirstBoot       string             `json:"first_boot"`
	Warnings        []string           `json:"warnings,omitempty"`
	SourceDateEpoch int64              `json:"source_date_epoch"`
	Seconds         float64            `json:"seconds"`
}

// BaseInfo describes the base image used.
type BaseInfo struct {
	URL string `json:"url"`
	// ID is the base's checksum ("sha256:..." as given, or the hash of a
	// local file).
	ID      string        `json:"id"`
	OS      string        `json:"os,omitempty"`
	Flavour *step.Flavour `json:"flavour"`
}

// Output is one file written.
type Output struct {
	Format string `json:"format"`
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	// SHA256 is the output's checksum; for the image only when the
	// sha256 format is requested.
	SHA256 string `json:"sha256,omitempty"`
}

// Run builds the image the spec describes.
func Run(ctx context.Context, s *spec.Spec, opts Options) (res *Result, err error) {
	started := time.Now()
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	lap := started
	phase := func(name string) {
		now := time.Now()
		log.Debug("phase done", "phase", name, "seconds", now.Sub(lap).Seconds())
		lap = now
	}
	outDir := opts.OutDir
	if outDir == "" {
		outDir = s.Output.Dir
	}
	if err := checkOutputTools(s); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("create output directory: %w", err)
	}
	res = &Result{Spec: s.Filename, Base: BaseInfo{URL: s.Base.URL}}

	// Source files are hashed on another core while the base is fetched
	// and the image customised; only the first-boot instance-id needs
	// their sums, at the very end.
	type hashed struct {
		sums map[string][32]byte
		err  error
	}
	hashc := make(chan hashed, 1)
	hashCtx, stopHash := context.WithCancel(ctx)
	defer stopHash()
	go func() {
		sums, err := hashSources(hashCtx, s)
		hashc <- hashed{sums, err}
	}()
	sources := func() (map[string][32]byte, error) {
		h := <-hashc
		return h.sums, h.err
	}

	fetcher := opts.Fetcher
	if fetcher == nil {
		fetcher = &fetch.Fetcher{}
	}
	f := *fetcher
	if opts.CacheDir != "" {
		f.CacheDir = opts.CacheDir
	}
	f.BaseDir, f.Progress, f.Logger = s.Dir, opts.Progress, log
	raw, err := f.Fetch(ctx, s.Base.URL, s.Base.Checksum)
	if err != nil {
		return nil, baseError(s, err)
	}
	phase("fetch")
	opts.Fetcher = &f
	baseID := strings.TrimSuffix(filepath.Base(raw), ".img")
	if s.Base.Checksum != "" {
		res.Base.ID = s.Base.Checksum
	} else {
		res.Base.ID = "sha256:" + baseID
	}
	ids := step.NewIDs(specDigest(s), baseID)

	// One build at a time writes these outputs; holding the lock, the
	// temporary files of a build that was killed (SIGKILL, power loss)
	// can go.
	name := s.Output.Name
	unlock, err := f.LockOutputs(ctx, outDir, name, func() {
		log.Info("waiting for another build writing the same outputs", "dir", outDir, "name", name)
	})
	if err != nil {
		return nil, err
	}
	defer unlock()
	removeStalePartials(outDir, name, log)

	// Work on a copy next to the outputs, under a name that does not
	// look finished; every temporary file goes on failure.
	tmps := &tempFiles{}
	defer func() {
		if err != nil {
			tmps.removeAll()
		}
	}()
	work, err := tmps.reserve(outDir, name+".img")
	if err != nil {
		return nil, err
	}
	copyTask := opts.Progress.Start("copy base", 0)
	err = copyBase(ctx, raw, work)
	copyTask.Done(err)
	if err != nil {
		return nil, fmt.Errorf("copy the base image: %w", err)
	}
	phase("copy")

	custom := opts.Progress.Start("customise", 0)
	c, err := customise(ctx, s, work, opts, ids, sources, log, res)
	custom.Done(err)
	if err != nil {
		return nil, err
	}
	res.Warnings = append(res.Warnings, c.Warnings()...)
	phase("customise")

	outs, err := writeOutputs(ctx, s, work, outDir, tmps, opts.Progress, log)
	if err != nil {
		return nil, err
	}
	phase("outputs")
	if err := tmps.publish(); err != nil {
		return nil, err
	}
	phase("publish")
	res.Outputs = outs
	res.Seconds = time.Since(started).Seconds()
	log.Info("build finished", "outputs", len(outs), "seconds", fmt.Sprintf("%.2f", res.Seconds))
	return res, nil
}

// customise does everything between the copy and the outputs.
func customise(ctx context.Context, s *spec.Spec, work string, opts Options, ids *step.IDs,
	sources func() (map[string][32]byte, error), log *slog.Logger, res *Result) (*step.Context, error) {
	started := time.Now()
	// Plan the layout and derive the build time from the untouched copy.
	pre, err := image.Open(work, image.Options{})
	if err != nil {
		return nil, baseError(s, fmt.Errorf("the base is not a disk image bakery can read: %w", err))
	}
	rootIdx, err := pre.Resolve(image.RoleRoot)
	if err != nil {
		found := pre.Describe()
		pre.Close()
		return nil, s.Base.Errorf("url", "the base image has no root partition (an ext2/3/4 filesystem with /etc/os-release); it has: %s", found)
	}
	preRoot, err := pre.Filesystem(rootIdx)
	if err != nil {
		pre.Close()
		return nil, fmt.Errorf("base root filesystem: %w", err)
	}
	if !strings.HasPrefix(preRoot.Type(), "ext") {
		pre.Close()
		return nil, s.Base.Errorf("url", "the base's root filesystem is %s; bakery edits ext2/3/4", preRoot.Type())
	}
	t := BuildTime(preRoot)
	if opts.SourceDateEpoch != nil {
		t = time.Unix(*opts.SourceDateEpoch, 0).UTC()
	}
	res.SourceDateEpoch = t.Unix()
	plan, err := planLayout(s, pre.Table, rootIdx, pre.Disk.Size(), ids)
	if err == nil {
		plan.result.Grow, err = growTarget(s, plan, pre.Table)
	}
	pre.Close()
	if err != nil {
		return nil, err
	}
	if err := applyLayout(ctx, work, plan, t); err != nil {
		return nil, err
	}

	log.Debug("step done", "step", "plan and disk layout", "seconds", time.Since(started).Seconds())
	im, err := image.Open(work, image.Options{Writable: true, FS: fs.Options{DefaultTime: t}})
	if err != nil {
		return nil, err
	}
	defer im.Close()
	root, err := im.Role(image.RoleRoot)
	if err != nil {
		return nil, err
	}
	var boot fs.Filesystem
	if idx, err := im.Resolve(image.RoleBoot); err == nil {
		if boot, err = im.Filesystem(idx); err != nil {
			return nil, err
		}
	}
	fl := step.DetectFlavour(im, root, boot)
	if fl.RaspberryPiOS && boot == nil {
		return nil, s.Base.Errorf("url", "the base looks like Raspberry Pi OS (raspberrypi-sys-mods) but has no boot partition (a FAT filesystem with config.txt or cmdline.txt)")
	}
	res.Base.Flavour = fl
	res.Base.OS = fl.OSRelease["PRETTY_NAME"]
	res.FirstBoot = fl.FirstBoot
	res.Layout = plan.result
	log.Info("base image", "os", res.Base.OS, "raspberry_pi_os", fl.RaspberryPiOS, "arch", fl.Arch,
		"network", fl.Network, "first_boot", fl.FirstBoot)

	c := &step.Context{Spec: s, Image: im, Root: root, Boot: boot, Flavour: fl, Time: t, IDs: ids, Log: log,
		FirstBoot: &step.FirstBoot{}, Layout: plan.result, Fetcher: opts.Fetcher}
	for _, st := range step.All() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if st.Wanted != nil && !st.Wanted(s) {
			continue
		}
		t0 := time.Now()
		if err := st.Apply(ctx, c); err != nil {
			return nil, stepError(st.Name, err)
		}
		log.Debug("step done", "step", st.Name, "seconds", time.Since(t0).Seconds())
		res.Steps = append(res.Steps, st.Name)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	golden, err := step.Golden(ctx, c)
	if err != nil {
		return nil, stepError("golden", err)
	}
	res.Golden = golden
	res.Steps = append(res.Steps, "golden")
	if c.Sources, err = sources(); err != nil {
		return nil, err
	}
	if err := step.Finalize(ctx, c); err != nil {
		return nil, stepError("first-boot", err)
	}
	res.Steps = append(res.Steps, "first-boot")
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := im.Commit(); err != nil {
		return nil, fmt.Errorf("write the image: %w", err)
	}
	log.Debug("step done", "step", "commit", "seconds", time.Since(t0).Seconds())
	return c, nil
}

// stepError names the step unless the error already points into the spec.
func stepError(name string, err error) error {
	var se *spec.Error
	if errors.As(err, &se) || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%s: %w", name, err)
}

// baseError puts fetch errors at the base block: checksum problems at
// the checksum, everything else at the url.
func baseError(s *spec.Spec, err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var ce *fetch.ChecksumError
	if errors.As(err, &ce) {
		return s.Base.Errorf("checksum", "%v", err)
	}
	return s.Base.Errorf("url", "%v", err)
}

// BuildTime derives the build's timestamp when SOURCE_DATE_EPOCH is not
// given: the newest modification time among the entries of the base's
// /etc and /usr/lib/os-release, i.e. roughly the base's release date.
// Same base, same time; a newer base, a newer time.
func BuildTime(root fs.Filesystem) time.Time {
	var newest time.Time
	consider := func(t time.Time) {
		if t.After(newest) {
			newest = t
		}
	}
	if fi, err := root.Lstat("/usr/lib/os-release"); err == nil {
		consider(fi.ModTime)
	}
	if entries, err := root.ReadDir("/etc"); err == nil {
		for _, e := range entries {
			consider(e.ModTime)
		}
	}
	if newest.IsZero() || newest.Unix() <= 0 {
		return time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return newest.UTC().Truncate(time.Second)
}

// hashSources hashes every file block's source (one at a time: they
// compete for the same disk), keyed by SourceKey.
func hashSources(ctx context.Context, s *spec.Spec) (map[string][32]byte, error) {
	sums := map[string][32]byte{}
	for i := range s.Files {
		f := &s.Files[i]
		key := SourceKey(s, f.Source)
		if _, done := sums[key]; done || f.Source == "" {
			continue
		}
		fh, err := os.Open(f.Source)
		if err != nil {
			return nil, f.Errorf("source", "%v", err)
		}
		h := sha256.New()
		_, err = io.Copy(h, streams.WithContext(ctx, fh))
		fh.Close()
		if err != nil {
			return nil, f.Errorf("source", "read %s: %v", f.Source, err)
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		sums[key] = sum
	}
	return sums, nil
}

// checkOutputTools fails early when an output needs a missing tool.
func checkOutputTools(s *spec.Spec) error {
	for i, f := range s.Output.Formats {
		if f == "qcow2" {
			if _, err := exec.LookPath("qemu-img"); err != nil {
				return s.Output.Errorf(fmt.Sprintf("formats[%d]", i), `the qcow2 output needs qemu-img, which is not installed (Debian/Ubuntu: apt install qemu-utils; macOS: brew install qemu)`)
			}
		}
	}
	return nil
}

// tempFiles tracks a build's temporary files and their final names.
type tempFiles struct {
	mu    sync.Mutex
	files []tempFile
}

type tempFile struct {
	tmp, final string
	publish    bool
}

// copyBase copies the cached base into the reserved working file, under
// that file's own temporary name, so a killed build leaves nothing that
// removeStalePartials does not find.
func copyBase(ctx context.Context, raw, work string) error {
	f, err := os.OpenFile(work, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = fetch.CopySparseInto(ctx, raw, f)
	return errors.Join(err, f.Close())
}

// removeStalePartials removes what a killed build of these outputs left
// behind: the temporary files reserve names for the image, its bmap and
// compressed copies, and the qcow2. The caller holds the outputs'
// lock, so none of them belongs to a running build.
func removeStalePartials(dir, name string, log *slog.Logger) {
	var matches []string
	for _, final := range []string{name + ".img", name + ".qcow2"} {
		m, _ := filepath.Glob(filepath.Join(dir, "."+final+".*.partial")) // .img.* covers bmap, zst, xz, gz
		matches = append(matches, m...)
	}
	for _, m := range matches {
		if err := os.Remove(m); err == nil {
			log.Info("removed a temporary file an interrupted build left", "path", m)
		}
	}
}

// reserve makes a temporary name in dir for the output named final.
func (t *tempFiles) reserve(dir, final string) (string, error) {
	f, err := os.CreateTemp(dir, "."+final+".*.partial")
	if err != nil {
		return "", fmt.Errorf("create a temporary file in %s: %w", dir, err)
	}
	f.Close()
	t.mu.Lock()
	t.files = append(t.files, tempFile{tmp: f.Name(), final: filepath.Join(dir, final)})
	t.mu.Unlock()
	return f.Name(), nil
}

// keep marks a temporary file to be renamed into place by publish.
func (t *tempFiles) keep(tmp string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.files {
		if t.files[i].tmp == tmp {
			t.files[i].publish = true
		}
	}
}

func (t *tempFiles) removeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range t.files {
		os.Remove(f.tmp)
	}
	t.files = nil
}

// publish syncs every kept file, removes an old SHA256SUMS first (so a
// crash half-way leaves sums that no longer match rather than stale ones
// that do), renames the outputs into place with SHA256SUMS last, and
// syncs the directory. Files not kept are removed.
func (t *tempFiles) publish() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var keep []tempFile
	for _, f := range t.files {
		if !f.publish {
			os.Remove(f.tmp)
			continue
		}
		keep = append(keep, f)
	}
	sort.SliceStable(keep, func(i, j int) bool {
		return filepath.Base(keep[j].final) == SumsFile && filepath.Base(keep[i].final) != SumsFile
	})
	for _, f := range keep {
		fh, err := os.OpenFile(f.tmp, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		err = fh.Sync()
		fh.Close()
		if err != nil {
			return fmt.Errorf("sync %s: %w", f.tmp, err)
		}
	}
	for _, f := range keep {
		if filepath.Base(f.final) == SumsFile {
			os.Remove(f.final)
		}
	}
	for _, f := range keep {
		if err := os.Chmod(f.tmp, 0o644); err != nil {
			return err
		}
		if err := os.Rename(f.tmp, f.final); err != nil {
			return fmt.Errorf("rename %s into place: %w", f.final, err)
		}
	}
	if len(keep) > 0 {
		if d, err := os.Open(filepath.Dir(keep[0].final)); err == nil {
			d.Sync()
			d.Close()
		}
	}
	t.files = nil
	return nil
}

// specDigest is the spec's digest with source paths relative to the spec's
// directory, so the same spec checked out elsewhere (CI, a colleague's
// laptop) gives the same identifiers and the same image.
func specDigest(s *spec.Spec) [32]byte {
	// A copy, not an edit in place: the source hasher reads s meanwhile.
	c := *s
	c.Files = slices.Clone(s.Files)
	for i := range c.Files {
		c.Files[i].Source = SourceKey(s, c.Files[i].Source)
	}
	return c.Digest()
}

// SourceKey names a source file independently of where the spec lives.
func SourceKey(s *spec.Spec, source string) string {
	if source == "" {
		return ""
	}
	if rel, err := filepath.Rel(s.Dir, source); err == nil {
		return filepath.ToSlash(rel)
	}
	return source
}
