package spec

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Block is embedded in every block struct of the spec (and in Spec itself
// for the top-level attributes). It remembers where the block was declared
// and where each attribute was set, so that errors found much later, while
// building, can still point at the line that caused them:
//
//	return u.Errorf("groups[1]", "group %q does not exist in the base image", g)
//	// spec.hcl:12:14: user "bob": group "wheel" does not exist in the base image
type Block struct {
	// Type is the block type ("user"); empty for the top level.
	Type string `json:"-"`
	// Labels are the block labels (`user "bob"` has ["bob"]).
	Labels []string `json:"-"`
	// DeclRange covers the block header; for the top level, the file start.
	DeclRange hcl.Range `json:"-"`
	// Ranges maps an attribute name to the range of its definition
	// (`groups = [...]`), and "name[i]" to the i-th element of a literal
	// list.
	Ranges map[string]hcl.Range `json:"-"`

	sensitive map[string]bool // attributes whose value is secret
	unknown   map[string]bool // attributes present but without a usable value
}

// Declared reports whether the block appears in the spec (singleton blocks
// such as ssh, golden and output exist with their defaults even when absent).
func (b Block) Declared() bool { return b.DeclRange.Filename != "" }

// IsSet reports whether the attribute was written in the spec (and not set
// to null). An attribute whose value failed to evaluate is still "set".
func (b Block) IsSet(attr string) bool {
	_, ok := b.Ranges[attr]
	return ok
}

// Known reports whether the attribute was written and decoded to a usable
// value.
func (b Block) Known(attr string) bool { return b.IsSet(attr) && !b.unknown[attr] }

// IsSensitive reports whether the attribute's value is secret: it came from
// a sensitive variable, or the attribute is secret by nature (wifi psk,
// password hashes).
func (b Block) IsSensitive(attr string) bool { return b.sensitive[attr] }

// Pos is where to point an error about key: an attribute name or
// "name[i]" for a list element. It falls back from the element to the
// attribute and from the attribute to the block header.
func (b Block) Pos(key string) hcl.Range {
	if r, ok := b.Ranges[key]; ok {
		return r
	}
	if i := strings.IndexByte(key, '['); i > 0 {
		if r, ok := b.Ranges[key[:i]]; ok {
			return r
		}
	}
	return b.DeclRange
}

// ElemPos is Pos(fmt.Sprintf("%s[%d]", attr, i)).
func (b Block) ElemPos(attr string, i int) hcl.Range {
	return b.Pos(attr + "[" + strconv.Itoa(i) + "]")
}

// Describe names the block as written: `user "bob"`, `wifi`; empty for the
// top level.
func (b Block) Describe() string {
	if b.Type == "" {
		return ""
	}
	var sb strings.Builder
	sb.WriteString(b.Type)
	for _, l := range b.Labels {
		fmt.Fprintf(&sb, " %q", l)
	}
	return sb.String()
}

// Errorf makes an error located at key (see Pos) and prefixed with the
// block's description. Never put a sensitive value in the message.
func (b Block) Errorf(key, format string, args ...any) *Error {
	msg := fmt.Sprintf(format, args...)
	if d := b.Describe(); d != "" {
		msg = d + ": " + msg
	}
	return &Error{Range: b.Pos(key), Msg: msg}
}

func (b *Block) setRange(key string, r hcl.Range) {
	if b.Ranges == nil {
		b.Ranges = map[string]hcl.Range{}
	}
	b.Ranges[key] = r
}

func (b *Block) markSensitive(attr string) {
	if b.sensitive == nil {
		b.sensitive = map[string]bool{}
	}
	b.sensitive[attr] = true
}

func (b *Block) markUnknown(attr string) {
	if b.unknown == nil {
		b.unknown = map[string]bool{}
	}
	b.unknown[attr] = true
}

// Error is a problem located in a spec. Its message reads
// "file:line:col: message".
type Error struct {
	Range hcl.Range
	Msg   string
}

func (e *Error) Error() string {
	if e.Range.Filename == "" {
		return e.Msg
	}
	return FormatRange(e.Range) + ": " + e.Msg
}

// Diagnostic converts the error into an HCL diagnostic.
func (e *Error) Diagnostic() *hcl.Diagnostic {
	d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: e.Msg}
	if e.Range.Filename != "" {
		r := e.Range
		d.Subject = &r
	}
	return d
}

// FormatRange renders the start of a range as "file:line:col".
func FormatRange(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}
