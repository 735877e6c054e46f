package spec

import (
	"fmt"
	"math/big"
	"reflect"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// The spec schema is the Go structs themselves. A field tagged
//
//	`hcl:"NAME"`                      is an attribute,
//	`hcl:"NAME,block"`                is a nested block (T, *T or []T),
//	`hcl:"NAME,label"`                receives the block's label,
//
// with the options "required", "sensitive" (the value is always secret) and
// "unique" (for []T blocks: labels must not repeat). Attribute fields may be
// string, bool, ints, *int, []string, or any
// type whose pointer implements ctyDecoder. A block struct embeds Block and
// may implement defaulter (set defaults before decoding) and checker
// (validate values after decoding). Adding a block to the spec is therefore
// one file with its struct, plus one tagged field in Spec.

// ctyDecoder is implemented by attribute types with their own syntax, such
// as Size ("4GiB") and Keyboard ("gb" or {layout = "gb", ...}).
type ctyDecoder interface {
	decodeCty(v cty.Value) error
}

// defaulter sets a block's defaults before its body is decoded.
type defaulter interface {
	setDefaults()
}

// checker validates a decoded block and fills derived values.
type checker interface {
	check(c *checks)
}

type fieldKind int

const (
	attrField fieldKind = iota
	blockField
	labelField
)

type fieldInfo struct {
	index                       int
	name                        string
	kind                        fieldKind
	required, sensitive, unique bool
}

var (
	blockType      = reflect.TypeFor[Block]()
	ctyDecoderType = reflect.TypeFor[ctyDecoder]()
)

func fieldsOf(t reflect.Type) []fieldInfo {
	var out []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("hcl")
		if !ok || tag == "-" {
			continue
		}
		parts := strings.Split(tag, ",")
		fi := fieldInfo{index: i, name: parts[0]}
		for _, opt := range parts[1:] {
			switch opt {
			case "block":
				fi.kind = blockField
			case "label":
				fi.kind = labelField
			case "required":
				fi.required = true
			case "sensitive":
				fi.sensitive = true
			case "unique":
				fi.unique = true
			default:
				panic(fmt.Sprintf("spec: field %s.%s: unknown hcl tag option %q", t.Name(), f.Name, opt))
			}
		}
		out = append(out, fi)
	}
	return out
}

func schemaOf(t reflect.Type) *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, fi := range fieldsOf(t) {
		switch fi.kind {
		case attrField:
			s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: fi.name, Required: fi.required})
		case blockField:
			s.Blocks = append(s.Blocks, hcl.BlockHeaderSchema{Type: fi.name, LabelNames: labelNames(blockStruct(t.Field(fi.index).Type))})
		}
	}
	return s
}

// blockStruct is the struct type behind T, *T or []T.
func blockStruct(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	return t
}

func labelNames(t reflect.Type) []string {
	var names []string
	for _, fi := range fieldsOf(t) {
		if fi.kind == labelField {
			names = append(names, fi.name)
		}
	}
	return names
}

func embeddedBlock(v reflect.Value) *Block {
	f := v.FieldByName("Block")
	if !f.IsValid() || f.Type() != blockType {
		panic(fmt.Sprintf("spec: %s does not embed spec.Block", v.Type()))
	}
	return f.Addr().Interface().(*Block)
}

// applyDefaults calls setDefaults on v and on every singleton block held by
// value inside it (ssh, golden, output exist even when not written).
func applyDefaults(v reflect.Value) {
	if d, ok := v.Addr().Interface().(defaulter); ok {
		d.setDefaults()
	}
	for _, fi := range fieldsOf(v.Type()) {
		if f := v.Field(fi.index); fi.kind == blockField && f.Kind() == reflect.Struct {
			applyDefaults(f)
		}
	}
}

// decodeBody decodes body into the struct v (addressable). extra names
// further top-level block types the caller handles itself (variable,
// locals); their blocks are returned. Defaults must already be applied.
func (d *decoder) decodeBody(body hcl.Body, v reflect.Value, extra ...hcl.BlockHeaderSchema) []*hcl.Block {
	blk := embeddedBlock(v)
	schema := schemaOf(v.Type())
	schema.Blocks = append(schema.Blocks, extra...)
	content, diags := body.Content(schema)
	d.diags = append(d.diags, diags...)
	if content == nil {
		return nil
	}
	var extraBlocks []*hcl.Block
	for _, hb := range content.Blocks {
		for _, e := range extra {
			if hb.Type == e.Type {
				extraBlocks = append(extraBlocks, hb)
			}
		}
	}
	for _, fi := range fieldsOf(v.Type()) {
		f := v.Field(fi.index)
		switch fi.kind {
		case attrField:
			if a, ok := content.Attributes[fi.name]; ok {
				d.decodeAttr(a, f, blk, fi)
			}
		case blockField:
			d.decodeBlocks(content.Blocks.OfType(fi.name), f, fi, body)
		}
	}
	if c, ok := v.Addr().Interface().(checker); ok && (blk.Declared() || blk.Type == "") {
		c.check(&checks{d: d})
	}
	return extraBlocks
}

func (d *decoder) decodeBlocks(blocks hcl.Blocks, f reflect.Value, fi fieldInfo, parent hcl.Body) {
	newBlock := func(hb *hcl.Block, t reflect.Type) reflect.Value {
		nv := reflect.New(t).Elem()
		applyDefaults(nv)
		b := embeddedBlock(nv)
		b.Type, b.Labels, b.DeclRange = hb.Type, hb.Labels, hb.DefRange
		li := 0
		for _, lf := range fieldsOf(t) {
			if lf.kind == labelField && li < len(hb.Labels) {
				nv.Field(lf.index).SetString(hb.Labels[li])
				li++
			}
		}
		d.decodeBody(hb.Body, nv)
		return nv
	}
	switch f.Kind() {
	case reflect.Slice:
		seen := map[string]hcl.Range{}
		for _, hb := range blocks {
			nv := newBlock(hb, f.Type().Elem())
			if fi.unique {
				key := strings.Join(hb.Labels, "\x00")
				if first, dup := seen[key]; dup {
					d.errorf(hb.DefRange, "duplicate %s; the first is at %s", embeddedBlock(nv).Describe(), FormatRange(first))
					continue
				}
				seen[key] = hb.DefRange
			}
			f.Set(reflect.Append(f, nv))
		}
	case reflect.Pointer, reflect.Struct:
		for i, hb := range blocks {
			if i > 0 {
				d.errorf(hb.DefRange, "duplicate %s block; only one is allowed and the first is at %s", hb.Type, FormatRange(blocks[0].DefRange))
				continue
			}
			if f.Kind() == reflect.Pointer {
				f.Set(newBlock(hb, f.Type().Elem()).Addr())
				continue
			}
			// A singleton held by value already carries its defaults.
			b := embeddedBlock(f)
			b.Type, b.Labels, b.DeclRange = hb.Type, hb.Labels, hb.DefRange
			d.decodeBody(hb.Body, f)
		}
	}
	if fi.required && len(blocks) == 0 && !d.parseFailed {
		r := parent.MissingItemRange()
		d.errorf(r, "missing required block %q", fi.name)
	}
}

func (d *decoder) decodeAttr(a *hcl.Attribute, f reflect.Value, blk *Block, fi fieldInfo) {
	blk.setRange(fi.name, a.Range)
	if tup, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok {
		for i, e := range tup.Exprs {
			blk.setRange(fmt.Sprintf("%s[%d]", fi.name, i), e.Range())
		}
	}
	val, ok := d.eval(a.Expr)
	if !ok || !val.IsWhollyKnown() {
		// Already reported (or a variable without a value, reported once
		// at its declaration).
		blk.markUnknown(fi.name)
		return
	}
	if val.IsNull() {
		for k := range blk.Ranges {
			if k == fi.name || strings.HasPrefix(k, fi.name+"[") {
				delete(blk.Ranges, k)
			}
		}
		return
	}
	marked := val.ContainsMarked()
	val, _ = val.UnmarkDeep()
	if marked || fi.sensitive {
		blk.markSensitive(fi.name)
		d.addSecrets(val)
	}
	if err := assign(f, val); err != nil {
		blk.markUnknown(fi.name)
		msg := fmt.Sprintf("%s: %v", fi.name, err)
		if desc := blk.Describe(); desc != "" {
			msg = desc + ": " + msg
		}
		d.errorf(a.Range, "%s", msg)
	}
}

// assign converts an unmarked, known, non-null value into the Go field.
func assign(f reflect.Value, v cty.Value) error {
	if f.CanAddr() && f.Addr().Type().Implements(ctyDecoderType) {
		return f.Addr().Interface().(ctyDecoder).decodeCty(v)
	}
	switch f.Kind() {
	case reflect.Pointer:
		nv := reflect.New(f.Type().Elem())
		if err := assign(nv.Elem(), v); err != nil {
			return err
		}
		f.Set(nv)
	case reflect.String:
		s, err := asString(v)
		if err != nil {
			return err
		}
		f.SetString(s)
	case reflect.Bool:
		b, err := convert.Convert(v, cty.Bool)
		if err != nil || b.IsNull() {
			return fmt.Errorf("want true or false, got %s", v.Type().FriendlyName())
		}
		f.SetBool(b.True())
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := convert.Convert(v, cty.Number)
		if err != nil || n.IsNull() {
			return fmt.Errorf("want a number, got %s", v.Type().FriendlyName())
		}
		bf := n.AsBigFloat()
		i, acc := bf.Int64()
		if !bf.IsInt() || acc != big.Exact || f.OverflowInt(i) {
			return fmt.Errorf("want a whole number, got %s", bf.Text('g', 10))
		}
		f.SetInt(i)
	case reflect.Slice:
		if f.Type().Elem().Kind() != reflect.String {
			panic("spec: unsupported slice field " + f.Type().String())
		}
		if !v.CanIterateElements() || v.Type().IsMapType() || v.Type().IsObjectType() {
			return fmt.Errorf("want a list of strings, got %s", v.Type().FriendlyName())
		}
		out := reflect.MakeSlice(f.Type(), 0, v.LengthInt())
		i := 0
		for it := v.ElementIterator(); it.Next(); i++ {
			_, ev := it.Element()
			if ev.IsNull() {
				return fmt.Errorf("element %d is null", i)
			}
			s, err := asString(ev)
			if err != nil {
				return fmt.Errorf("element %d: %w", i, err)
			}
			out = reflect.Append(out, reflect.ValueOf(s).Convert(f.Type().Elem()))
		}
		f.Set(out)
	default:
		panic("spec: unsupported field type " + f.Type().String())
	}
	return nil
}

func asString(v cty.Value) (string, error) {
	s, err := convert.Convert(v, cty.String)
	if err != nil || s.IsNull() {
		return "", fmt.Errorf("want a string, got %s", v.Type().FriendlyName())
	}
	return s.AsString(), nil
}

// checks is what a block's check method reports problems through.
type checks struct {
	d *decoder
}

// errorf reports a problem with key (an attribute or "attr[i]") of b.
func (c *checks) errorf(b *Block, key, format string, args ...any) {
	c.d.diags = append(c.d.diags, b.Errorf(key, format, args...).Diagnostic())
}

// warnf reports a warning with key of b.
func (c *checks) warnf(b *Block, key, format string, args ...any) {
	d := b.Errorf(key, format, args...).Diagnostic()
	d.Severity = hcl.DiagWarning
	c.d.diags = append(c.d.diags, d)
}

// dir is the spec's directory, against which relative paths resolve.
func (c *checks) dir() string { return c.d.dir }
