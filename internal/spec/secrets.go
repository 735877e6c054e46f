package spec

import (
	"context"
	"io"
	iofs "io/fs"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/bakeryhq/bakery/internal/deb"
	"github.com/bakeryhq/bakery/internal/secretscan"
)

// Bounds on the secret scan at validate time.
const (
	// maxScanBytes bounds how much of a file block's source is scanned;
	// a file of a package larger than this is not scanned at all (it is
	// data, not configuration).
	maxScanBytes = 4 << 20
	// maxDebScanBytes bounds the text scanned in one package, and
	// maxDebWalkBytes the data read through (binaries are skipped but
	// still decompressed); past either the scan stops with a warning.
	maxDebScanBytes = 64 << 20
	maxDebWalkBytes = 1 << 30
)

// Attributes whose values are secret by design and belong on the image.
var secretOnPurpose = map[string]bool{"psk": true, "password_hash": true}

// checkNoSecrets refuses a spec that would put a cluster secret (a gossip
// key, a Vault/Consul/Nomad token, a private key) into the image: such
// secrets must arrive at run time (docs/cluster.md).
// allow_secrets_in_image = true turns the errors into warnings.
func checkNoSecrets(c *checks, s *Spec) {
	report := secretReporter(c, s.AllowSecretsInImage, "image", "allow_secrets_in_image = true")
	scanAttributes(reflect.ValueOf(s).Elem(), &s.Block, report)
	for i := range s.Files {
		f := &s.Files[i]
		switch {
		// A file copied from the build machine lands in the image verbatim.
		case f.Block.Known("source") && f.Source != "":
			if b, err := readPrefix(f.Source, maxScanBytes); err == nil && !secretscan.IsBinary(b) {
				for _, fd := range secretscan.Text(string(b)) {
					report(&f.Block, "source", fd, "source file "+f.Source)
				}
			}
		// File.check decoded content_base64 into Content.
		case f.Block.Known("content_base64") && !secretscan.IsBinary([]byte(f.Content)):
			for _, fd := range secretscan.Text(f.Content) {
				report(&f.Block, "content_base64", fd, "content_base64 (decoded)")
			}
		}
	}
	for i := range s.Debs {
		checkDebSecrets(c, &s.Debs[i], report)
	}
}

// CheckBundleConfigSecrets applies the spec's no-secrets check to a bundle
// configuration (`bakery pkg --config`): what it holds goes into the
// package, and from there onto every machine. allow (--allow-secrets)
// turns the errors into warnings.
func CheckBundleConfigSecrets(cfg *BundleConfig, allow bool) hcl.Diagnostics {
	c := &checks{d: &decoder{}}
	report := secretReporter(c, allow, "package", "--allow-secrets")
	for i := range cfg.Bundles {
		scanAttributes(reflect.ValueOf(&cfg.Bundles[i]).Elem(), &cfg.Bundles[i].Block, report)
	}
	return sortDiagnostics(c.d.diags)
}

// secretFinding reports one secret found in where (an attribute, a file)
// with key of b.
type secretFinding func(b *Block, key string, f secretscan.Finding, where string)

// secretReporter reports findings as errors, or as warnings when allow
// is set; into names what the secret would be baked into ("image") and
// optIn how allow is set.
func secretReporter(c *checks, allow bool, into, optIn string) secretFinding {
	article := "a"
	if strings.ContainsRune("aeiou", rune(into[0])) {
		article = "an"
	}
	verb := "set"
	if strings.HasPrefix(optIn, "--") {
		verb = "pass"
	}
	return func(b *Block, key string, f secretscan.Finding, where string) {
		if allow {
			c.warnf(b, key, "%s in %s: %s will be in the %s (%s)", f.Describe(), where, f.Excerpt, into, optIn)
			return
		}
		c.errorf(b, key, "%s in %s: %s must not be baked into %s %s; deliver it at run time (Vault Agent, a per-card credential), or %s %s", f.Describe(), where, f.Excerpt, article, into, verb, optIn)
	}
}

// scanAttributes scans every string attribute of a block and of the
// blocks nested in it.
func scanAttributes(v reflect.Value, blk *Block, report secretFinding) {
	var walk func(v reflect.Value, blk *Block)
	walk = func(v reflect.Value, blk *Block) {
		t := v.Type()
		for _, fi := range fieldsOf(t) {
			f := v.Field(fi.index)
			switch fi.kind {
			case attrField:
				if secretOnPurpose[fi.name] || !blk.Known(fi.name) {
					continue
				}
				switch f.Kind() {
				case reflect.String:
					for _, fd := range secretscan.Value(fi.name, f.String()) {
						report(blk, fi.name, fd, fi.name)
					}
				case reflect.Slice:
					if f.Type().Elem().Kind() != reflect.String {
						continue
					}
					for i := 0; i < f.Len(); i++ {
						for _, fd := range secretscan.Value(fi.name, f.Index(i).String()) {
							report(blk, elemKey(fi.name, i), fd, elemKey(fi.name, i))
						}
					}
				}
			case blockField:
				switch f.Kind() {
				case reflect.Struct:
					walk(f, embeddedBlock(f))
				case reflect.Pointer:
					if !f.IsNil() {
						walk(f.Elem(), embeddedBlock(f.Elem()))
					}
				case reflect.Slice:
					for i := 0; i < f.Len(); i++ {
						walk(f.Index(i), embeddedBlock(f.Index(i)))
					}
				}
			}
		}
	}
	walk(v, blk)
}

// checkDebSecrets scans what a deb block unpacks into the image: the
// text files of its data.tar (binaries and files over maxScanBytes are
// skipped, as bakery audit does) and its maintainer scripts. A package
// that cannot be read is left to the build, which refuses it too.
func checkDebSecrets(c *checks, d *Deb, report secretFinding) {
	if fi, err := os.Stat(d.Path); err != nil || !fi.Mode().IsRegular() {
		return // Deb.check said why
	}
	p, fh, err := deb.Open(d.Path)
	if err != nil {
		return
	}
	defer fh.Close()
	for _, name := range sortedKeys(p.ControlFiles) {
		data := p.ControlFiles[name].Data
		if len(data) > maxScanBytes || secretscan.IsBinary(data) {
			continue
		}
		for _, fd := range secretscan.Text(string(data)) {
			report(&d.Block, "", fd, "the package's "+name+" script")
		}
	}
	var scanned, walked int64
	truncated := ""
	var buf []byte
	err = p.WalkFiles(context.Background(), func(name string, size int64, r io.Reader) error {
		if walked += size; walked > maxDebWalkBytes {
			truncated = name
			return iofs.SkipAll
		}
		if size > maxScanBytes {
			return nil
		}
		buf = slices.Grow(buf[:0], int(size))[:size]
		head := min(size, 8192)
		if _, err := io.ReadFull(r, buf[:head]); err != nil || secretscan.IsBinary(buf[:head]) {
			return err
		}
		if scanned += size; scanned > maxDebScanBytes {
			truncated = name
			return iofs.SkipAll
		}
		if _, err := io.ReadFull(r, buf[head:]); err != nil {
			return err
		}
		for _, fd := range secretscan.Text(string(buf)) {
			report(&d.Block, "", fd, "package file "+name+" (line "+strconv.Itoa(fd.Line)+")")
		}
		return nil
	})
	switch {
	case err != nil:
		// A corrupt data.tar: the build refuses the package.
	case truncated != "":
		c.warnf(&d.Block, "", "the package is too large to scan for secrets in full (over %d MiB of text or %d MiB of data); files from %s on were not scanned", maxDebScanBytes>>20, maxDebWalkBytes>>20, truncated)
	}
}

// readPrefix reads up to n bytes of a file, stopping after the first
// 8 KiB when they show the file is binary (not scanned; see IsBinary).
func readPrefix(path string, n int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	head := make([]byte, min(n, 8192))
	k, err := io.ReadFull(fh, head)
	head = head[:k]
	if err == io.EOF || err == io.ErrUnexpectedEOF || secretscan.IsBinary(head) {
		return head, nil
	}
	if err != nil {
		return nil, err
	}
	rest, err := io.ReadAll(io.LimitReader(fh, n-int64(k)))
	return append(head, rest...), err
}
