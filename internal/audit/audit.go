// Package audit scans an image for what must not be in a golden image:
// private keys, a machine-id, cloud-init instance state, shell history,
// Consul gossip keys, Vault/Consul/Nomad tokens, and (as warnings) wifi
// pre-shared keys and a saved random seed. The checks are a table of
// Rules, so more can be added (issue 7 adds its own).
//
// Images are untrusted: the walk never follows symlinks, is bounded in
// depth and entries, and reads only regular files up to a size limit,
// skipping binaries.
package audit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/bakeryhq/bakery/internal/fs"
	"github.com/bakeryhq/bakery/internal/image"
	"github.com/bakeryhq/bakery/internal/secretscan"
)

// Severities.
const (
	// Error findings make the audit fail.
	Error = "error"
	// Warning findings fail only with Options.Strict: legitimate content
	// a spec may ask for (a wifi psk) that is still worth knowing about.
	Warning = "warning"
)

// Finding is one problem. It never carries the secret itself.
type Finding struct {
	Rule      string `json:"rule"`
	Severity  string `json:"severity"`
	Partition string `json:"partition"`
	Path      string `json:"path"`
	Line      int    `json:"line,omitempty"`
	Message   string `json:"message"`
}

func (f Finding) String() string {
	loc := f.Partition + ":" + f.Path
	if f.Line > 0 {
		loc += fmt.Sprintf(":%d", f.Line)
	}
	return fmt.Sprintf("%-7s %s: %s (%s)", f.Severity, loc, f.Message, f.Rule)
}

// Report is the result of a scan.
type Report struct {
	Image    string    `json:"image"`
	Findings []Finding `json:"findings"`
	Errors   int       `json:"errors"`
	Warnings int       `json:"warnings"`
	// Scanned counts files whose content was checked; Skipped those too
	// large or binary.
	Scanned int `json:"scanned_files"`
	Skipped int `json:"skipped_files"`
}

// Failed reports whether the audit fails: any error finding, or any
// finding at all when strict.
func (r *Report) Failed(strict bool) bool {
	return r.Errors > 0 || (strict && r.Warnings > 0)
}

// Options tune a scan.
type Options struct {
	// MaxFileBytes skips larger files (default 4 MiB).
	MaxFileBytes int64
	// MaxEntries bounds the walk of each filesystem (default 2,000,000).
	MaxEntries int
	// Rules replaces the default rule table (DefaultRules()).
	Rules []Rule
}

// File is what a rule sees.
type File struct {
	Partition string // "root" or "boot"
	Path      string
	Info      fs.FileInfo
	// Data is the content for content rules (nil for path-only checks,
	// binaries and files over the size limit).
	Data []byte
}

// Rule is one check. Match is called for every entry of the scanned
// trees (directories included); content rules look at f.Data.
type Rule struct {
	Name        string
	Severity    string
	Description string
	Match       func(f *File) []Finding
}

// ScanFile opens the image file at path read-only and audits it (Scan).
func ScanFile(ctx context.Context, path string, opts Options) (*Report, error) {
	im, err := image.Open(path, image.Options{})
	if err != nil {
		return nil, err
	}
	defer im.Close()
	return Scan(ctx, im, opts)
}

// Scan audits every filesystem of the image with a role (root, boot).
func Scan(ctx context.Context, im *image.Image, opts Options) (*Report, error) {
	if opts.MaxFileBytes == 0 {
		opts.MaxFileBytes = 4 << 20
	}
	if opts.MaxEntries == 0 {
		opts.MaxEntries = 2_000_000
	}
	rules := opts.Rules
	if rules == nil {
		rules = DefaultRules()
	}
	r := &Report{Image: im.Disk.Path(), Findings: []Finding{}}
	any := false
	for _, role := range []string{image.RoleRoot, image.RoleBoot} {
		f, err := im.Role(role)
		if err != nil {
			continue
		}
		any = true
		s := &scanner{ctx: ctx, f: f, part: role, opts: opts, rules: rules, report: r}
		if err := s.walk("/", 0); err != nil {
			return nil, fmt.Errorf("audit %s partition: %w", role, err)
		}
	}
	if !any {
		return nil, fmt.Errorf("%s: no root or boot filesystem found to audit", im.Disk.Path())
	}
	sort.SliceStable(r.Findings, func(i, j int) bool {
		a, b := r.Findings[i], r.Findings[j]
		if a.Severity != b.Severity {
			return a.Severity == Error
		}
		if a.Partition != b.Partition {
			return a.Partition > b.Partition // root before boot
		}
		if a.Path != b.Path {
			return a.Path < b.Path
		}
		return a.Line < b.Line
	})
	for _, f := range r.Findings {
		if f.Severity == Error {
			r.Errors++
		} else {
			r.Warnings++
		}
	}
	return r, nil
}

type scanner struct {
	ctx     context.Context
	f       fs.Filesystem
	part    string
	opts    Options
	rules   []Rule
	report  *Report
	entries int
}

// contentRoots are the trees whose file contents are read on the root
// filesystem; elsewhere (/usr, caches, package lists) only paths are
// checked. Packages ship test keys and sample tokens under /usr; what a
// golden image must not share lives in configuration and state.
var contentRoots = []string{"/etc", "/root", "/home", "/var", "/opt", "/srv", "/usr/local", "/boot"}

// contentSkip are subtrees of contentRoots that hold package data.
var contentSkip = []string{"/var/cache", "/var/lib/apt", "/var/lib/dpkg", "/var/log/journal", "/var/lib/cloud/seed"}

func (s *scanner) readContent(p string) bool {
	if s.part != image.RoleRoot {
		return true
	}
	for _, skip := range contentSkip {
		if p == skip || strings.HasPrefix(p, skip+"/") {
			return false
		}
	}
	for _, root := range contentRoots {
		if p == root || strings.HasPrefix(p, root+"/") {
			return true
		}
	}
	return false
}

func (s *scanner) walk(dir string, depth int) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	if depth > 64 {
		return nil
	}
	// Pseudo filesystems are empty mount points in an image; skip anyway.
	if s.part == image.RoleRoot && (dir == "/proc" || dir == "/sys" || dir == "/dev" || dir == "/run") {
		return nil
	}
	entries, err := s.f.ReadDir(dir)
	if err != nil {
		if fs.IsMissing(err) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		s.entries++
		if s.entries > s.opts.MaxEntries {
			return fmt.Errorf("more than %d entries; stopping (raise the limit to scan further)", s.opts.MaxEntries)
		}
		p := fs.Join(dir, e.Name)
		file := &File{Partition: s.part, Path: p, Info: e}
		if e.IsRegular() && e.Size > 0 && s.readContent(p) {
			if e.Size > s.opts.MaxFileBytes {
				s.report.Skipped++
			} else if data, err := s.read(p, e.Size); err == nil {
				if secretscan.IsBinary(data) {
					s.report.Skipped++
				} else {
					file.Data = data
					s.report.Scanned++
				}
			}
		}
		for _, r := range s.rules {
			for _, f := range r.Match(file) {
				if f.Rule == "" {
					f.Rule = r.Name
				}
				if f.Severity == "" {
					f.Severity = r.Severity
				}
				f.Partition, f.Path = s.part, p
				s.report.Findings = append(s.report.Findings, f)
			}
		}
		if e.IsDir() {
			if err := s.walk(p, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *scanner) read(p string, size int64) ([]byte, error) {
	fh, err := s.f.Open(p)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return io.ReadAll(io.LimitReader(fh, min(size, s.opts.MaxFileBytes)))
}

// lineOf returns the 1-based line of byte offset off.
func lineOf(data []byte, off int) int { return bytes.Count(data[:off], []byte("\n")) + 1 }
