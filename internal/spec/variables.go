package spec

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// EnvPrefix prefixes the environment variables that set spec variables:
// BAKERY_VAR_wifi_psk sets var.wifi_psk.
const EnvPrefix = "BAKERY_VAR_"

// Variable is a declared input variable, as Packer has them. Its value is
// deliberately not kept here: values reach the spec only through
// expressions, and a sensitive one must not be printable.
type Variable struct {
	Block
	Name        string `json:"name"`
	Type        string `json:"type"`
	Description string `json:"description,omitempty"`
	Sensitive   bool   `json:"sensitive,omitempty"`
	// Source says where the value came from: "default", "env",
	// "var-file FILE", "--var", or "" when it has none.
	Source string `json:"source"`
}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "type"}, {Name: "default"}, {Name: "sensitive"}, {Name: "description"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "condition", Required: true}, {Name: "error_message", Required: true}},
}

type varState struct {
	decl        *Variable
	ty          cty.Type
	defaults    *typeexpr.Defaults
	val         cty.Value
	has         bool
	failed      bool      // a value was given but rejected (already reported)
	valueRange  hcl.Range // where the current value was written
	validations []varValidation
}

type varValidation struct {
	condition hcl.Expression
	message   string
}

// decodeVariables declares the variables, resolves their values by
// precedence (default < BAKERY_VAR_ env < var-files in order < --var) and
// puts them into the evaluation context as var.NAME.
func (d *decoder) decodeVariables(blocks []*hcl.Block, in Inputs, parser *hclparse.Parser, specFile string) []Variable {
	states := map[string]*varState{}
	var order []string
	for _, hb := range blocks {
		name := hb.Labels[0]
		if !hclsyntax.ValidIdentifier(name) {
			d.errorf(hb.LabelRanges[0], "invalid variable name %q: use letters, digits, underscores and dashes, starting with a letter", name)
			continue
		}
		if prev, dup := states[name]; dup {
			d.errorf(hb.DefRange, "duplicate variable %q; the first is at %s", name, FormatRange(prev.decl.DeclRange))
			continue
		}
		st := d.declareVariable(hb, name)
		states[name] = st
		order = append(order, name)
		d.vars[name] = true
	}

	if in.LookupEnv != nil {
		for _, name := range order {
			if raw, ok := in.LookupEnv(EnvPrefix + name); ok {
				st := states[name]
				d.setRaw(st, raw, "env", "environment variable "+EnvPrefix+name)
			}
		}
	}
	for _, path := range in.VarFiles {
		d.applyVarFile(states, parser, path)
	}
	for _, name := range sortedKeys(in.Vars) {
		st, ok := states[name]
		if !ok {
			msg := fmt.Sprintf("--var %s: no variable %q is declared in %s", name, name, specFile)
			if s := suggest(name, order); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: msg})
			continue
		}
		d.setRaw(st, in.Vars[name], "--var", "--var "+name)
	}

	vals := map[string]cty.Value{}
	out := make([]Variable, 0, len(order))
	for _, name := range order {
		st := states[name]
		if !st.has {
			if !st.failed {
				d.errorf(st.decl.DeclRange, "variable %q has no value; set it with --var %s=VALUE, in a --var-file, or with %s%s", name, name, EnvPrefix, name)
			}
			vals[name] = cty.UnknownVal(st.ty)
			out = append(out, *st.decl)
			continue
		}
		v := st.val
		if st.decl.Sensitive {
			d.addSecrets(v)
			v = v.Mark(sensitiveMark)
		}
		vals[name] = v
		out = append(out, *st.decl)
	}
	d.ctx.Variables["var"] = cty.ObjectVal(vals)

	for _, name := range order {
		if st := states[name]; st.has {
			d.checkValidations(st, vals[name])
		}
	}
	return out
}

func (d *decoder) declareVariable(hb *hcl.Block, name string) *varState {
	v := &Variable{Block: Block{Type: "variable", Labels: hb.Labels, DeclRange: hb.DefRange}, Name: name}
	st := &varState{decl: v, ty: cty.DynamicPseudoType}
	content, diags := hb.Body.Content(variableSchema)
	d.diags = append(d.diags, diags...)
	if content == nil {
		return st
	}
	for _, a := range content.Attributes {
		v.setRange(a.Name, a.Range)
	}
	if a, ok := content.Attributes["description"]; ok {
		if s, ok := d.constString(a, v); ok {
			v.Description = s
		}
	}
	if a, ok := content.Attributes["sensitive"]; ok {
		val, diags := a.Expr.Value(nil)
		d.diags = append(d.diags, diags...)
		if !diags.HasErrors() {
			if b, err := convert.Convert(val, cty.Bool); err != nil || b.IsNull() {
				d.errorf(a.Range, "variable %q: sensitive: want true or false", name)
			} else {
				v.Sensitive = b.True()
			}
		}
	}
	if a, ok := content.Attributes["type"]; ok {
		ty, defaults, diags := typeexpr.TypeConstraintWithDefaults(a.Expr)
		d.diags = append(d.diags, diags...)
		if !diags.HasErrors() {
			st.ty, st.defaults = ty, defaults
		}
	}
	if a, ok := content.Attributes["default"]; ok {
		val, diags := a.Expr.Value(nil)
		d.diags = append(d.diags, diags...)
		if !diags.HasErrors() && !val.IsNull() {
			if st.ty == cty.DynamicPseudoType {
				st.ty = val.Type() // untyped: the default's type, like Packer
			}
			d.setValue(st, val, "default", a.Range)
		}
	}
	v.Type = typeexpr.TypeString(st.ty)
	for _, vb := range content.Blocks {
		vc, diags := vb.Body.Content(validationSchema)
		d.diags = append(d.diags, diags...)
		if vc == nil || vc.Attributes["condition"] == nil || vc.Attributes["error_message"] == nil {
			continue
		}
		msg, ok := d.constString(vc.Attributes["error_message"], v)
		if !ok {
			continue
		}
		if strings.TrimSpace(msg) == "" {
			d.errorf(vc.Attributes["error_message"].Range, "variable %q: error_message must not be empty", name)
			continue
		}
		st.validations = append(st.validations, varValidation{condition: vc.Attributes["condition"].Expr, message: msg})
	}
	return st
}

func (d *decoder) constString(a *hcl.Attribute, v *Variable) (string, bool) {
	val, diags := a.Expr.Value(nil)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() {
		return "", false
	}
	s, err := asString(val)
	if err != nil {
		d.errorf(a.Range, "variable %q: %s: %v", v.Name, a.Name, err)
		return "", false
	}
	return s, true
}

// setRaw sets a variable from a string given outside HCL (--var, env).
// String-typed and untyped variables take it literally; others parse it as
// an HCL expression, as Packer does: --var 'dns=["1.1.1.1"]'.
func (d *decoder) setRaw(st *varState, raw, source, what string) {
	if st.decl.Sensitive && raw != "" {
		d.secrets[raw] = struct{}{}
	}
	if st.ty == cty.String || st.ty == cty.DynamicPseudoType {
		d.setValue(st, cty.StringVal(raw), source, st.decl.DeclRange)
		return
	}
	expr, diags := hclsyntax.ParseExpression([]byte(raw), what, hcl.InitialPos)
	var val cty.Value
	if !diags.HasErrors() {
		val, diags = expr.Value(nil)
	}
	if diags.HasErrors() {
		d.errorf(st.decl.DeclRange, "variable %q: the value from %s is not a valid %s", st.decl.Name, what, typeexpr.TypeString(st.ty))
		st.failed = true
		return
	}
	d.setValue(st, val, source, st.decl.DeclRange)
}

func (d *decoder) setValue(st *varState, val cty.Value, source string, at hcl.Range) {
	if st.defaults != nil {
		val = st.defaults.Apply(val)
	}
	conv, err := convert.Convert(val, st.ty)
	if err != nil {
		d.errorf(at, "variable %q: the value from %s is not a valid %s: %s", st.decl.Name, source, typeexpr.TypeString(st.ty), err)
		st.failed = true
		return
	}
	st.val, st.has, st.valueRange = conv, true, at
	st.decl.Source = source
}

func (d *decoder) applyVarFile(states map[string]*varState, parser *hclparse.Parser, path string) {
	var file *hcl.File
	var diags hcl.Diagnostics
	if strings.EqualFold(filepath.Ext(path), ".json") {
		file, diags = parser.ParseJSONFile(path)
	} else {
		file, diags = parser.ParseHCLFile(path)
	}
	if file == nil {
		// ParseHCLFile reports an unreadable file without a position.
		if _, err := os.Stat(path); err != nil {
			d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf("--var-file %s: %v", path, err)})
			return
		}
		d.diags = append(d.diags, diags...)
		return
	}
	d.diags = append(d.diags, diags...)
	attrs, diags := file.Body.JustAttributes()
	d.diags = append(d.diags, diags...)
	names := sortedKeys(attrs)
	for _, name := range names {
		a := attrs[name]
		st, ok := states[name]
		if !ok {
			msg := fmt.Sprintf("%s sets %q, which the spec does not declare", path, name)
			if s := suggest(name, sortedKeys(states)); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			d.warnf(a.NameRange, "%s", msg)
			continue
		}
		val, diags := a.Expr.Value(nil)
		d.diags = append(d.diags, diags...)
		if diags.HasErrors() {
			continue
		}
		if st.decl.Sensitive {
			d.addSecrets(val)
		}
		d.setValue(st, val, "var-file "+path, a.Range)
	}
}

func (d *decoder) checkValidations(st *varState, val cty.Value) {
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{st.decl.Name: val})},
		Functions: d.ctx.Functions,
	}
	for _, v := range st.validations {
		res, diags := v.condition.Value(ctx)
		d.diags = append(d.diags, diags...)
		if diags.HasErrors() {
			continue
		}
		res, _ = res.UnmarkDeep()
		if !res.IsKnown() {
			continue
		}
		b, err := convert.Convert(res, cty.Bool)
		if err != nil || b.IsNull() {
			d.errorf(v.condition.Range(), "variable %q: validation condition must be true or false", st.decl.Name)
			continue
		}
		if !b.True() {
			d.errorf(st.valueRange, "variable %q: %s (value from %s)", st.decl.Name, strings.TrimSpace(v.message), st.decl.Source)
		}
	}
}
