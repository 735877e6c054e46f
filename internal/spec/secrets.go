package spec

import (
	"io"
	"os"
	"reflect"

	"github.com/bakeryhq/bakery/internal/secretscan"
)

// maxScanBytes bounds how much of a file block's source is scanned for
// secrets at validate time.
const maxScanBytes = 4 << 20

// Attributes whose values are secret by design and belong on the image.
var secretOnPurpose = map[string]bool{"psk": true, "password_hash": true}

// checkNoSecrets refuses a spec that would put a cluster secret (a gossip
// key, a Vault/Consul/Nomad token, a private key) into the image: such
// secrets must arrive at run time (docs/cluster.md).
// allow_secrets_in_image = true turns the errors into warnings.
func checkNoSecrets(c *checks, s *Spec) {
	report := func(b *Block, key string, f secretscan.Finding, where string) {
		format := "%s in %s: %s must not be baked into an image; deliver it at run time (Vault Agent, a per-card credential), or set allow_secrets_in_image = true"
		if s.AllowSecretsInImage {
			c.warnf(b, key, "%s in %s: %s will be in the image (allow_secrets_in_image = true)", f.Describe(), where, f.Excerpt)
			return
		}
		c.errorf(b, key, format, f.Describe(), where, f.Excerpt)
	}
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
	walk(reflect.ValueOf(s).Elem(), &s.Block)
	// A file copied from the build machine lands in the image verbatim.
	for i := range s.Files {
		f := &s.Files[i]
		if !f.Block.Known("source") || f.Source == "" {
			continue
		}
		if b, err := readPrefix(f.Source, maxScanBytes); err == nil && !secretscan.IsBinary(b) {
			for _, fd := range secretscan.Text(string(b)) {
				report(&f.Block, "source", fd, "source file "+f.Source)
			}
		}
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
