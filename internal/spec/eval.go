package spec

import (
	"fmt"
	"slices"
	"sort"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
)

// sensitiveMark marks cty values derived from sensitive variables.
type markKey string

const sensitiveMark = markKey("sensitive")

// decoder carries the state of one Load: the evaluation context, the
// diagnostics found so far and the secrets seen.
type decoder struct {
	ctx         *hcl.EvalContext
	dir         string
	diags       hcl.Diagnostics
	secrets     map[string]struct{}
	vars        map[string]bool // declared variable names
	locals      map[string]bool // declared local names
	parseFailed bool
}

func (d *decoder) errorf(r hcl.Range, format string, args ...any) {
	rr := r
	d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: fmt.Sprintf(format, args...), Subject: &rr})
}

func (d *decoder) warnf(r hcl.Range, format string, args ...any) {
	rr := r
	d.diags = append(d.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: fmt.Sprintf(format, args...), Subject: &rr})
}

// eval evaluates an expression after checking that every var.X and local.X
// it mentions is declared (with a "did you mean").
func (d *decoder) eval(expr hcl.Expression) (cty.Value, bool) {
	if !d.checkRefs(expr) {
		return cty.DynamicVal, false
	}
	v, diags := expr.Value(d.ctx)
	d.diags = append(d.diags, diags...)
	return v, !diags.HasErrors()
}

func (d *decoder) checkRefs(expr hcl.Expression) bool {
	ok := true
	if diags := unknownFunctions(expr, d.ctx.Functions); diags.HasErrors() {
		d.diags = append(d.diags, diags...)
		ok = false
	}
	for _, t := range expr.Variables() {
		root := t.RootName()
		var declared map[string]bool
		var kind string
		switch root {
		case "var":
			declared, kind = d.vars, "variable"
		case "local":
			declared, kind = d.locals, "local value"
		default:
			continue // HCL reports unknown roots itself, with suggestions
		}
		if len(t) < 2 {
			continue
		}
		attr, isAttr := t[1].(hcl.TraverseAttr)
		if !isAttr || declared[attr.Name] {
			continue
		}
		ok = false
		msg := fmt.Sprintf("reference to undeclared %s %s.%s", kind, root, attr.Name)
		if s := suggest(attr.Name, sortedKeys(declared)); s != "" {
			msg += fmt.Sprintf("; did you mean %s.%s?", root, s)
		} else if root == "var" {
			msg += fmt.Sprintf("; declare it with a variable %q block", attr.Name)
		}
		d.errorf(t.SourceRange(), "%s", msg)
	}
	return ok
}

// unknownFunctions reports calls of functions not in fns. HCL reports
// them too, but picks its "did you mean" in map order; this is stable.
func unknownFunctions(expr hcl.Expression, fns map[string]function.Function) hcl.Diagnostics {
	node, ok := expr.(hclsyntax.Node)
	if !ok {
		return nil
	}
	var diags hcl.Diagnostics
	hclsyntax.VisitAll(node, func(n hclsyntax.Node) hcl.Diagnostics {
		call, ok := n.(*hclsyntax.FunctionCallExpr)
		if !ok {
			return nil
		}
		if _, known := fns[call.Name]; known {
			return nil
		}
		detail := fmt.Sprintf("There is no function named %q.", call.Name)
		if s := suggest(call.Name, sortedKeys(fns)); s != "" {
			detail += fmt.Sprintf(" Did you mean %q?", s)
		}
		r := call.NameRange
		diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Call to unknown function", Detail: detail, Subject: &r})
		return nil
	})
	return diags
}

// addSecrets records every string (and number) inside v as secret.
func (d *decoder) addSecrets(v cty.Value) {
	v, _ = v.UnmarkDeep()
	if v.IsNull() || !v.IsKnown() {
		return
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		if s := v.AsString(); s != "" {
			d.secrets[s] = struct{}{}
		}
	case ty == cty.Number:
		d.secrets[v.AsBigFloat().Text('f', -1)] = struct{}{}
	case v.CanIterateElements():
		for it := v.ElementIterator(); it.Next(); {
			_, ev := it.Element()
			d.addSecrets(ev)
		}
	}
}

// suggest returns the candidate closest to given, if close enough to be a
// likely typo (the same threshold HCL uses).
func suggest(given string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if dist := levenshtein.Distance(given, c, nil); dist < bestDist {
			best, bestDist = c, dist
		}
	}
	return best
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// decodeLocals evaluates every locals block in dependency order.
func (d *decoder) decodeLocals(blocks []*hcl.Block) map[string]cty.Value {
	type local struct {
		attr *hcl.Attribute
		deps []string
	}
	pending := map[string]*local{}
	var order []string
	for _, b := range blocks {
		attrs, diags := b.Body.JustAttributes()
		d.diags = append(d.diags, diags...)
		names := sortedKeys(attrs)
		slices.SortFunc(names, func(a, b string) int { return attrs[a].Range.Start.Byte - attrs[b].Range.Start.Byte })
		for _, name := range names {
			a := attrs[name]
			if prev, dup := pending[name]; dup {
				d.errorf(a.NameRange, "duplicate local value %q; the first is at %s", name, FormatRange(prev.attr.Range))
				continue
			}
			l := &local{attr: a}
			for _, t := range a.Expr.Variables() {
				if t.RootName() == "local" && len(t) > 1 {
					if ta, ok := t[1].(hcl.TraverseAttr); ok {
						l.deps = append(l.deps, ta.Name)
					}
				}
			}
			pending[name] = l
			order = append(order, name)
			d.locals[name] = true
		}
	}
	values := map[string]cty.Value{}
	for len(pending) > 0 {
		progress := false
		for _, name := range order {
			l, ok := pending[name]
			if !ok {
				continue
			}
			ready := true
			for _, dep := range l.deps {
				if _, pend := pending[dep]; pend {
					ready = false
				}
			}
			if !ready {
				continue
			}
			d.setContextLocals(values)
			v, ok := d.eval(l.attr.Expr)
			if !ok {
				v = cty.DynamicVal
			}
			values[name] = v
			delete(pending, name)
			progress = true
		}
		if !progress {
			for _, name := range order {
				if l, ok := pending[name]; ok {
					via := name
					for _, dep := range l.deps {
						if _, pend := pending[dep]; pend {
							via = dep
							break
						}
					}
					d.errorf(l.attr.NameRange, "local value %q depends on itself (through local.%s)", name, via)
					values[name] = cty.DynamicVal
				}
			}
			break
		}
	}
	d.setContextLocals(values)
	return values
}

func (d *decoder) setContextLocals(values map[string]cty.Value) {
	vals := map[string]cty.Value{}
	for name := range d.locals {
		if v, ok := values[name]; ok {
			vals[name] = v
		} else {
			vals[name] = cty.DynamicVal
		}
	}
	d.ctx.Variables["local"] = cty.ObjectVal(vals)
}
