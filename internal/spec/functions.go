package spec

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
	"go.yaml.in/yaml/v3"
)

// maxFileFunctionSize bounds what file() and templatefile() read: spec
// content is configuration, and big payloads belong in `source`.
const maxFileFunctionSize = 16 << 20

// functions is the function table of a spec in dir. There is deliberately
// no env(): a build depends on its environment only through BAKERY_VAR_*
// variables, so that the same spec and variables give the same image.
func functions(dir string) map[string]function.Function {
	fns := map[string]function.Function{
		"abs":          stdlib.AbsoluteFunc,
		"ceil":         stdlib.CeilFunc,
		"chomp":        stdlib.ChompFunc,
		"coalesce":     stdlib.CoalesceFunc,
		"coalescelist": stdlib.CoalesceListFunc,
		"compact":      stdlib.CompactFunc,
		"concat":       stdlib.ConcatFunc,
		"contains":     stdlib.ContainsFunc,
		"distinct":     stdlib.DistinctFunc,
		"element":      stdlib.ElementFunc,
		"flatten":      stdlib.FlattenFunc,
		"floor":        stdlib.FloorFunc,
		"format":       stdlib.FormatFunc,
		"formatlist":   stdlib.FormatListFunc,
		"indent":       stdlib.IndentFunc,
		"join":         stdlib.JoinFunc,
		"jsondecode":   stdlib.JSONDecodeFunc,
		"jsonencode":   stdlib.JSONEncodeFunc,
		"keys":         stdlib.KeysFunc,
		"length":       lengthFunc,
		"lookup":       stdlib.LookupFunc,
		"lower":        stdlib.LowerFunc,
		"max":          stdlib.MaxFunc,
		"merge":        stdlib.MergeFunc,
		"min":          stdlib.MinFunc,
		"parseint":     stdlib.ParseIntFunc,
		"range":        stdlib.RangeFunc,
		"regex":        stdlib.RegexFunc,
		"regexall":     stdlib.RegexAllFunc,
		"replace":      stdlib.ReplaceFunc,
		"reverse":      stdlib.ReverseListFunc,
		"slice":        stdlib.SliceFunc,
		"sort":         stdlib.SortFunc,
		"split":        stdlib.SplitFunc,
		"substr":       stdlib.SubstrFunc,
		"title":        stdlib.TitleFunc,
		"tobool":       stdlib.MakeToFunc(cty.Bool),
		"tolist":       stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tomap":        stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
		"tonumber":     stdlib.MakeToFunc(cty.Number),
		"toset":        stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		"tostring":     stdlib.MakeToFunc(cty.String),
		"trim":         stdlib.TrimFunc,
		"trimprefix":   stdlib.TrimPrefixFunc,
		"trimspace":    stdlib.TrimSpaceFunc,
		"trimsuffix":   stdlib.TrimSuffixFunc,
		"upper":        stdlib.UpperFunc,
		"values":       stdlib.ValuesFunc,

		"base64decode": base64DecodeFunc,
		"base64encode": stringFunc(func(s string) (string, error) { return base64.StdEncoding.EncodeToString([]byte(s)), nil }),
		"sha256":       stringFunc(func(s string) (string, error) { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]), nil }),
		"sha512":       stringFunc(func(s string) (string, error) { h := sha512.Sum512([]byte(s)); return hex.EncodeToString(h[:]), nil }),
		"yamlencode":   yamlEncodeFunc,
		"env":          envFunc,
		"file":         fileFunc(dir, false),
		"filebase64":   fileFunc(dir, true),
		"try":          tryfunc.TryFunc,
		"can":          tryfunc.CanFunc,
	}
	fns["templatefile"] = templateFileFunc(dir, fns)
	return fns
}

func stringFunc(f func(string) (string, error)) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "str", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			s, err := f(args[0].AsString())
			if err != nil {
				return cty.UnknownVal(cty.String), err
			}
			return cty.StringVal(s), nil
		},
	})
}

// Errors never quote the argument: it may be a secret.
var base64DecodeFunc = stringFunc(func(s string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return "", errors.New("the argument is not valid base64")
	}
	if !utf8.Valid(b) {
		return "", errors.New("the decoded bytes are not valid UTF-8 text; for binary files use content_base64 or source")
	}
	return string(b), nil
})

// lengthFunc counts the elements of a collection or, like Terraform's
// length, the characters of a string.
var lengthFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "value", Type: cty.DynamicPseudoType, AllowDynamicType: true, AllowUnknown: true}},
	Type:   function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if args[0].Type() == cty.String {
			return stdlib.Strlen(args[0])
		}
		return stdlib.Length(args[0])
	},
})

var envFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "name", Type: cty.String}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func([]cty.Value, cty.Type) (cty.Value, error) {
		return cty.UnknownVal(cty.String), fmt.Errorf("env() is not available: a build depends on its environment only through variables; declare a variable and set it with %sNAME", EnvPrefix)
	},
})

func resolvePath(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

func readSmallFile(dir, p string) ([]byte, error) {
	full := resolvePath(dir, p)
	f, err := os.Open(full)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no file exists at %q (resolved against the spec's directory: %s)", p, full)
		}
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileFunctionSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", full, err)
	}
	if len(b) > maxFileFunctionSize {
		return nil, fmt.Errorf("%s is larger than %d MiB; copy it with a file block's source instead", full, maxFileFunctionSize>>20)
	}
	return b, nil
}

func fileFunc(dir string, asBase64 bool) function.Function {
	return stringFunc(func(p string) (string, error) {
		b, err := readSmallFile(dir, p)
		if err != nil {
			return "", err
		}
		if asBase64 {
			return base64.StdEncoding.EncodeToString(b), nil
		}
		if !utf8.Valid(b) {
			return "", fmt.Errorf("%q is not valid UTF-8 text; use filebase64() with content_base64, or source", p)
		}
		return string(b), nil
	})
}

// templateFileFunc renders a file as an HCL template with the given
// variables, like Terraform's templatefile. Templates may call every
// function except templatefile itself.
func templateFileFunc(dir string, fns map[string]function.Function) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{
			{Name: "path", Type: cty.String},
			{Name: "vars", Type: cty.DynamicPseudoType},
		},
		Type: function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p := args[0].AsString()
			vars := args[1]
			if !vars.Type().IsObjectType() && !vars.Type().IsMapType() {
				return cty.UnknownVal(cty.String), errors.New("vars must be an object or a map")
			}
			src, err := readSmallFile(dir, p)
			if err != nil {
				return cty.UnknownVal(cty.String), err
			}
			tmpl, diags := hclsyntax.ParseTemplate(src, resolvePath(dir, p), hcl.InitialPos)
			if diags.HasErrors() {
				return cty.UnknownVal(cty.String), errors.New(strings.TrimSuffix(FormatDiagnostic(diags.Errs()[0].(*hcl.Diagnostic)), "."))
			}
			ctx := &hcl.EvalContext{Variables: map[string]cty.Value{}, Functions: map[string]function.Function{}}
			for k, v := range fns {
				if k != "templatefile" { // no recursion
					ctx.Functions[k] = v
				}
			}
			if diags := unknownFunctions(tmpl, ctx.Functions); diags.HasErrors() {
				return cty.UnknownVal(cty.String), errors.New(strings.TrimSuffix(FormatDiagnostic(diags[0]), "."))
			}
			if !vars.IsNull() {
				for it := vars.ElementIterator(); it.Next(); {
					k, v := it.Element()
					ctx.Variables[k.AsString()] = v
				}
			}
			out, diags := tmpl.Value(ctx)
			if diags.HasErrors() {
				return cty.UnknownVal(cty.String), errors.New(strings.TrimSuffix(FormatDiagnostic(diags.Errs()[0].(*hcl.Diagnostic)), "."))
			}
			if out.IsNull() {
				return cty.StringVal(""), nil
			}
			s, err := asString(out)
			if err != nil {
				return cty.UnknownVal(cty.String), fmt.Errorf("template result: %w", err)
			}
			return cty.StringVal(s), nil
		},
	})
}

var yamlEncodeFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "value", Type: cty.DynamicPseudoType, AllowNull: true}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		if !args[0].IsWhollyKnown() {
			return cty.UnknownVal(cty.String), nil
		}
		b, err := yaml.Marshal(yamlNode(args[0]))
		if err != nil {
			return cty.UnknownVal(cty.String), err
		}
		return cty.StringVal(string(b)), nil
	},
})

func yamlNode(v cty.Value) *yaml.Node {
	if v.IsNull() {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v.AsString()}
	case ty == cty.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(v.True())}
	case ty == cty.Number:
		bf := v.AsBigFloat()
		if bf.IsInt() {
			return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: bf.Text('f', 0)}
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!float", Value: bf.Text('g', -1)}
	case ty.IsObjectType() || ty.IsMapType():
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for it := v.ElementIterator(); it.Next(); { // keys come sorted
			k, ev := it.Element()
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k.AsString()}, yamlNode(ev))
		}
		return n
	case v.CanIterateElements():
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for it := v.ElementIterator(); it.Next(); {
			_, ev := it.Element()
			n.Content = append(n.Content, yamlNode(ev))
		}
		return n
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
}
