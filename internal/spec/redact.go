package spec

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// Redacted replaces secrets in output.
const Redacted = "(sensitive)"

// Redactor replaces every secret of a spec, and its base64 forms, with
// "(sensitive)" in text, errors and log records. A nil *Redactor redacts
// nothing. It is a second line of defence: bakery never formats a secret
// on purpose.
type Redactor struct {
	secrets  []string
	replacer *strings.Replacer
}

// NewRedactor makes a redactor for the given secrets. Empty strings are
// ignored.
func NewRedactor(secrets []string) *Redactor {
	set := map[string]bool{}
	for _, s := range secrets {
		if s == "" {
			continue
		}
		set[s] = true
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			set[enc.EncodeToString([]byte(s))] = true
		}
		// As JSON would escape it inside a string.
		if b, err := json.Marshal(s); err == nil {
			set[string(b[1:len(b)-1])] = true
		}
	}
	r := &Redactor{}
	for s := range set {
		r.secrets = append(r.secrets, s)
	}
	// Longest first, so a secret containing another is replaced whole
	// (strings.Replacer tries its pairs in order at each position).
	slices.SortFunc(r.secrets, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	if len(r.secrets) > 0 {
		pairs := make([]string, 0, 2*len(r.secrets))
		for _, s := range r.secrets {
			pairs = append(pairs, s, Redacted)
		}
		r.replacer = strings.NewReplacer(pairs...)
	}
	return r
}

// Redact replaces every secret in s.
func (r *Redactor) Redact(s string) string {
	if r == nil || r.replacer == nil {
		return s
	}
	return r.replacer.Replace(s)
}

// Contains reports whether s holds a secret.
func (r *Redactor) Contains(s string) bool { return r.Redact(s) != s }

// Error wraps err so that its message is redacted; errors.Is/As still see
// the original.
func (r *Redactor) Error(err error) error {
	if err == nil || r == nil || r.replacer == nil {
		return err
	}
	return &redactedError{err: err, msg: r.Redact(err.Error())}
}

type redactedError struct {
	err error
	msg string
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// ReplaceAttr is a slog.HandlerOptions.ReplaceAttr that redacts attribute
// values (strings, errors, and anything whose %v form holds a secret).
func (r *Redactor) ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	return r.attr(a)
}

func (r *Redactor) attr(a slog.Attr) slog.Attr {
	if r == nil || r.replacer == nil {
		return a
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(r.Redact(v.String()))
	case slog.KindGroup:
		attrs := v.Group()
		out := make([]slog.Attr, len(attrs))
		for i, ga := range attrs {
			out[i] = r.attr(ga)
		}
		a.Value = slog.GroupValue(out...)
	case slog.KindAny:
		var s string
		if err, ok := v.Any().(error); ok {
			s = err.Error()
		} else {
			s = fmt.Sprintf("%+v", v.Any())
		}
		if red := r.Redact(s); red != s {
			a.Value = slog.StringValue(red)
		}
	default:
		a.Value = v
	}
	return a
}

// Handler wraps h so that messages and attributes are redacted before h
// sees them.
func (r *Redactor) Handler(h slog.Handler) slog.Handler {
	if r == nil || r.replacer == nil {
		return h
	}
	return &redactHandler{r: r, h: h}
}

type redactHandler struct {
	r *Redactor
	h slog.Handler
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, rec.Level, h.r.Redact(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.r.attr(a))
		return true
	})
	return h.h.Handle(ctx, out)
}

func (h *redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		out[i] = h.r.attr(a)
	}
	return &redactHandler{r: h.r, h: h.h.WithAttrs(out)}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{r: h.r, h: h.h.WithGroup(name)}
}

// redactJSON marshals v and replaces every secret inside its strings.
// Decoding and re-encoding (rather than replacing in the text) keeps the
// JSON valid whatever characters a secret holds.
func (r *Redactor) redactJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || r == nil || r.replacer == nil {
		return b, err
	}
	var tree any
	if err := json.Unmarshal(b, &tree); err != nil {
		return nil, err
	}
	return json.Marshal(r.walk(tree))
}

func (r *Redactor) walk(v any) any {
	switch t := v.(type) {
	case string:
		return r.Redact(t)
	case []any:
		for i := range t {
			t[i] = r.walk(t[i])
		}
	case map[string]any:
		for k, e := range t {
			t[k] = r.walk(e)
		}
	}
	return v
}
