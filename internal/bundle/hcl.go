package bundle

import (
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// HCL building helpers over hclwrite. Consul, Nomad, Vault and
// consul-template read their configuration with HCL 1, which has no
// template escapes: "${node}" is literal there, and HCL 2's "$${node}"
// would stay doubled. So strings are emitted with only the escapes both
// dialects share (\\, \", \n, \t, \uXXXX), and the files parse as both.

type hclBody struct{ b *hclwrite.Body }

func newHCLFile() (*hclwrite.File, hclBody) {
	f := hclwrite.NewEmptyFile()
	return f, hclBody{f.Body()}
}

// quoted returns the tokens of a string literal valid in HCL 1 and 2.
func quoted(s string) hclwrite.Tokens {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return hclwrite.Tokens{
		{Type: hclsyntax.TokenOQuote, Bytes: []byte(`"`)},
		{Type: hclsyntax.TokenQuotedLit, Bytes: []byte(b.String())},
		{Type: hclsyntax.TokenCQuote, Bytes: []byte(`"`)},
	}
}

func valueTokens(v any) hclwrite.Tokens {
	switch x := v.(type) {
	case string:
		return quoted(x)
	case bool:
		return hclwrite.TokensForValue(cty.BoolVal(x))
	case int:
		return hclwrite.TokensForValue(cty.NumberIntVal(int64(x)))
	case []string:
		elems := make([]hclwrite.Tokens, len(x))
		for i, s := range x {
			elems[i] = quoted(s)
		}
		return hclwrite.TokensForTuple(elems)
	}
	panic(fmt.Sprintf("bundle: no HCL encoding for %T", v))
}

func (h hclBody) str(name, v string)          { h.b.SetAttributeRaw(name, quoted(v)) }
func (h hclBody) boolean(name string, v bool) { h.b.SetAttributeValue(name, cty.BoolVal(v)) }
func (h hclBody) num(name string, v int64)    { h.b.SetAttributeValue(name, cty.NumberIntVal(v)) }
func (h hclBody) strs(name string, v []string) {
	if v == nil {
		v = []string{}
	}
	h.b.SetAttributeRaw(name, valueTokens(v))
}

// object sets name = { k = v, ... } with keys in sorted order. Values are
// string, bool, int or []string. Keys that are not identifiers are quoted.
func (h hclBody) object(name string, kv map[string]any) {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var attrs []hclwrite.ObjectAttrTokens
	for _, k := range keys {
		nameToks := hclwrite.TokensForIdentifier(k)
		if !hclsyntax.ValidIdentifier(k) {
			nameToks = quoted(k)
		}
		attrs = append(attrs, hclwrite.ObjectAttrTokens{Name: nameToks, Value: valueTokens(kv[k])})
	}
	h.b.SetAttributeRaw(name, hclwrite.TokensForObject(attrs))
}

// heredoc sets name to a multi-line string as a heredoc. Its text is
// literal in HCL 1 (the consumers); it must not contain the marker line.
func (h hclBody) heredoc(name, text string) {
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	marker := "EOT"
	for strings.Contains(text, marker) {
		marker += "X"
	}
	toks := hclwrite.Tokens{
		{Type: hclsyntax.TokenOHeredoc, Bytes: []byte("<<" + marker + "\n")},
		{Type: hclsyntax.TokenStringLit, Bytes: []byte(text)},
		{Type: hclsyntax.TokenCHeredoc, Bytes: []byte(marker)},
	}
	h.b.SetAttributeRaw(name, toks)
}

func (h hclBody) block(typ string, labels ...string) hclBody {
	return hclBody{h.b.AppendNewBlock(typ, labels).Body()}
}

func (h hclBody) newline() { h.b.AppendNewline() }

// comment adds a comment line.
func (h hclBody) comment(text string) {
	var toks hclwrite.Tokens
	for _, line := range strings.Split(text, "\n") {
		toks = append(toks, &hclwrite.Token{Type: hclsyntax.TokenComment, Bytes: []byte("# " + line + "\n")})
	}
	h.b.AppendUnstructuredTokens(toks)
}

func hclBytes(f *hclwrite.File) []byte { return hclwrite.Format(f.Bytes()) }

// CheckHCLSyntax parses src as HCL native syntax and reports the first
// error, with its position.
func CheckHCLSyntax(name string, src []byte) error {
	_, diags := hclparse.NewParser().ParseHCL(src, name)
	if diags.HasErrors() {
		return diagError(diags)
	}
	return nil
}

func diagError(d hcl.Diagnostics) error {
	for _, x := range d {
		if x.Severity == hcl.DiagError {
			if x.Subject != nil {
				return fmt.Errorf("%s:%d:%d: %s: %s", x.Subject.Filename, x.Subject.Start.Line, x.Subject.Start.Column, x.Summary, x.Detail)
			}
			return fmt.Errorf("%s: %s", x.Summary, x.Detail)
		}
	}
	return nil
}
