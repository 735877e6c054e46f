// Package spec reads bakery's HCL2 build spec: variables (Packer-style,
// with sensitive values), locals, functions, and every block of the build,
// into typed Go structs that remember the file:line:col of each value.
// Load reports every problem at once, each as "file:line:col: message".
//
// The schema is the Go structs: each block type lives in its own file
// (user.go, wifi.go, ...) as a struct embedding Block, with `hcl` tags for
// its attributes and nested blocks, optional setDefaults and check methods,
// and one tagged field in Spec below. Adding a block means adding such a
// file and that one field; nothing else changes.
package spec

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"
)

// Spec is a decoded, validated build spec.
type Spec struct {
	Block `json:"-"`

	// Filename is the spec's path as given to Load; Dir is the absolute
	// directory against which relative paths (file(), source, a plain
	// base url) resolve.
	Filename string `json:"-"`
	Dir      string `json:"-"`
	// Variables are the declared variables (without their values).
	Variables []Variable `json:"variables,omitempty"`

	Base        *Base       `hcl:"base,block,required" json:"base"`
	Hostname    string      `hcl:"hostname" json:"hostname"`
	Users       []User      `hcl:"user,block,unique" json:"users,omitempty"`
	SSH         SSH         `hcl:"ssh,block" json:"ssh"`
	Wifi        *Wifi       `hcl:"wifi,block" json:"wifi,omitempty"`
	Network     *Network    `hcl:"network,block" json:"network,omitempty"`
	Timezone    string      `hcl:"timezone" json:"timezone,omitempty"`
	Locale      string      `hcl:"locale" json:"locale,omitempty"`
	Keyboard    *Keyboard   `hcl:"keyboard" json:"keyboard,omitempty"`
	Files       []File      `hcl:"file,block,unique" json:"files,omitempty"`
	Directories []Directory `hcl:"directory,block,unique" json:"directories,omitempty"`
	Symlinks    []Symlink   `hcl:"symlink,block,unique" json:"symlinks,omitempty"`
	Systemd     Systemd     `hcl:"systemd,block" json:"systemd"`
	Packages    []string    `hcl:"packages" json:"packages,omitempty"`
	CloudInit   *CloudInit  `hcl:"cloud_init,block" json:"cloud_init,omitempty"`
	Layout      *Layout     `hcl:"layout,block" json:"layout,omitempty"`
	Golden      Golden      `hcl:"golden,block" json:"golden"`
	Output      Output      `hcl:"output,block" json:"output"`
	Bundles     []Bundle    `hcl:"bundle,block,unique" json:"bundles,omitempty"`
	Debs        []Deb       `hcl:"deb,block,unique" json:"debs,omitempty"`
	// AllowSecretsInImage lets literal cluster secrets (gossip keys,
	// tokens, private keys) into the image, with a warning each.
	AllowSecretsInImage bool `hcl:"allow_secrets_in_image" json:"allow_secrets_in_image,omitempty"`

	secrets []string
}

// Inputs are the values a spec is evaluated with.
type Inputs struct {
	// Vars are --var NAME=VALUE settings (highest precedence).
	Vars map[string]string
	// VarFiles are --var-file paths (HCL attribute files, or JSON when
	// named *.json), applied in order, later ones winning.
	VarFiles []string
	// LookupEnv finds BAKERY_VAR_<name> variables; nil means no
	// environment (os.LookupEnv in the CLI).
	LookupEnv func(string) (string, bool)
	// Dir overrides the directory relative paths resolve against
	// (default: the spec file's directory; needed when reading stdin).
	Dir string
}

func (s *Spec) setDefaults() {
	s.Hostname = HostnameDHCP
}

// Load reads, evaluates and validates the spec at path. The returned Spec
// is never nil, but it is only usable when the diagnostics hold no error;
// even then its Secrets are filled so that callers can redact what they
// print about the diagnostics.
func Load(ctx context.Context, path string, in Inputs) (*Spec, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		s := &Spec{Filename: path}
		return s, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: fmt.Sprintf("read spec: %v", err)}}
	}
	return Parse(ctx, path, src, in)
}

// Parse is Load for a spec already in memory; filename names it in
// diagnostics.
func Parse(ctx context.Context, filename string, src []byte, in Inputs) (*Spec, hcl.Diagnostics) {
	s := &Spec{Filename: filename}
	dir := in.Dir
	if dir == "" {
		dir = filepath.Dir(filename)
	}
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	s.Dir = dir
	applyDefaults(reflect.ValueOf(s).Elem())

	d := &decoder{
		dir:     dir,
		secrets: map[string]struct{}{},
		vars:    map[string]bool{},
		locals:  map[string]bool{},
		ctx: &hcl.EvalContext{
			Variables: map[string]cty.Value{"var": cty.EmptyObjectVal, "local": cty.EmptyObjectVal},
			Functions: functions(dir),
		},
	}
	parser := hclparse.NewParser()
	file, diags := parser.ParseHCL(src, filename)
	d.diags = append(d.diags, diags...)
	d.parseFailed = diags.HasErrors()
	if file == nil || ctx.Err() != nil {
		return s.finish(d)
	}
	s.DeclRange = hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos}

	// One Content call over the whole schema, so that "did you mean"
	// suggestions for a misspelt block consider variable and locals too.
	// Variables and locals must be evaluated before the rest, so the
	// body is decoded twice: first only for them.
	top, _, _ := file.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}}, {Type: "locals"},
	}})
	var varBlocks, localBlocks []*hcl.Block
	if top != nil {
		for _, b := range top.Blocks {
			if b.Type == "variable" {
				varBlocks = append(varBlocks, b)
			} else {
				localBlocks = append(localBlocks, b)
			}
		}
	}
	s.Variables = d.decodeVariables(varBlocks, in, parser, filename)
	d.decodeLocals(localBlocks)
	d.decodeBody(file.Body, reflect.ValueOf(s).Elem(),
		hcl.BlockHeaderSchema{Type: "variable", LabelNames: []string{"name"}},
		hcl.BlockHeaderSchema{Type: "locals"},
	)
	return s.finish(d)
}

func (s *Spec) finish(d *decoder) (*Spec, hcl.Diagnostics) {
	for sec := range d.secrets {
		s.secrets = append(s.secrets, sec)
	}
	sort.Strings(s.secrets)
	// Messages may quote values (a bad group name, say), and such a value
	// may be secret; redact them all here, once, so that no caller can
	// print a secret by printing diagnostics.
	r := s.Redactor()
	for _, diag := range d.diags {
		diag.Summary, diag.Detail = r.Redact(diag.Summary), r.Redact(diag.Detail)
	}
	return s, sortDiagnostics(d.diags)
}

// check runs the checks that span blocks or concern top-level attributes.
func (s *Spec) check(c *checks) {
	checkHostname(c, &s.Block, s.Hostname)
	checkTimezone(c, &s.Block, s.Timezone)
	checkLocale(c, &s.Block, s.Locale)
	checkPackages(c, &s.Block, s.Packages)
	checkPaths(c, s)
	checkUIDs(c, s.Users)
	checkNoSecrets(c, s)
}

// Secrets are every secret string of the spec: values of sensitive
// variables and of attributes derived from them, wifi PSKs and password
// hashes. Redact them from anything printed or logged.
func (s *Spec) Secrets() []string { return append([]string(nil), s.secrets...) }

// Redactor redacts this spec's secrets.
func (s *Spec) Redactor() *Redactor { return NewRedactor(s.secrets) }

// specJSON has Spec's fields without its methods, to marshal without
// recursion.
type specJSON Spec

// MarshalJSON renders the spec with every secret replaced by
// "(sensitive)".
func (s *Spec) MarshalJSON() ([]byte, error) {
	return s.Redactor().redactJSON((*specJSON)(s))
}

// String renders the spec as indented JSON, secrets redacted.
func (s *Spec) String() string {
	b, err := s.MarshalJSON()
	if err != nil {
		return fmt.Sprintf("spec %s: %v", s.Filename, err)
	}
	var out any
	if json.Unmarshal(b, &out) == nil {
		if ib, err := json.MarshalIndent(out, "", "  "); err == nil {
			return string(ib)
		}
	}
	return string(b)
}

// Digest is a SHA-256 over the whole decoded spec, secrets included (they
// cannot be recovered from it). The build derives reproducible UUIDs and
// seeds from it: the same spec, variables and files give the same digest.
func (s *Spec) Digest() [32]byte {
	b, err := json.Marshal((*specJSON)(s))
	if err != nil {
		panic(fmt.Sprintf("spec: marshal for digest: %v", err)) // plain data always marshals
	}
	return sha256.Sum256(b)
}
