package spec

import (
	"cmp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// FormatDiagnostic renders one diagnostic on one line:
// "file:line:col: message" (with "warning: " before warnings' messages).
// It prints only the summary and detail, never expression values, so a
// sensitive value cannot leak through HCL's own context rendering.
func FormatDiagnostic(d *hcl.Diagnostic) string {
	var sb strings.Builder
	if d.Subject != nil && d.Subject.Filename != "" {
		sb.WriteString(FormatRange(*d.Subject))
		sb.WriteString(": ")
	}
	if d.Severity == hcl.DiagWarning {
		sb.WriteString("warning: ")
	}
	sb.WriteString(diagMessage(d))
	return sb.String()
}

func diagMessage(d *hcl.Diagnostic) string {
	msg := strings.TrimSpace(d.Summary)
	if detail := strings.TrimSpace(d.Detail); detail != "" {
		msg = strings.TrimSuffix(msg, ".") + ": " + strings.Join(strings.Fields(detail), " ")
	}
	return msg
}

// Diagnostic is the JSON form of one problem (bakery validate --json).
type Diagnostic struct {
	Severity  string `json:"severity"` // "error" or "warning"
	File      string `json:"file,omitempty"`
	Line      int    `json:"line,omitempty"`
	Column    int    `json:"column,omitempty"`
	EndLine   int    `json:"end_line,omitempty"`
	EndColumn int    `json:"end_column,omitempty"`
	Message   string `json:"message"` // summary and detail on one line
	Text      string `json:"text"`    // the whole "file:line:col: message" line
}

// DiagnosticsJSON converts diagnostics for JSON output, passing every text
// through the redactor (which may be nil).
func DiagnosticsJSON(diags hcl.Diagnostics, r *Redactor) []Diagnostic {
	out := make([]Diagnostic, 0, len(diags))
	for _, d := range diags {
		j := Diagnostic{Severity: "error", Message: r.Redact(diagMessage(d)), Text: r.Redact(FormatDiagnostic(d))}
		if d.Severity == hcl.DiagWarning {
			j.Severity = "warning"
		}
		if s := d.Subject; s != nil {
			j.File, j.Line, j.Column, j.EndLine, j.EndColumn = s.Filename, s.Start.Line, s.Start.Column, s.End.Line, s.End.Column
		}
		out = append(out, j)
	}
	return out
}

// sortDiagnostics orders diagnostics by file and position (diagnostics
// without a position first) and drops exact duplicates, which HCL can
// produce when one bad expression is evaluated twice.
func sortDiagnostics(diags hcl.Diagnostics) hcl.Diagnostics {
	key := func(d *hcl.Diagnostic) (string, int, int) {
		if d.Subject == nil {
			return "", 0, 0
		}
		return d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column
	}
	slices.SortStableFunc(diags, func(a, b *hcl.Diagnostic) int {
		af, al, ac := key(a)
		bf, bl, bc := key(b)
		return cmp.Or(cmp.Compare(af, bf), cmp.Compare(al, bl), cmp.Compare(ac, bc))
	})
	seen := map[string]bool{}
	out := diags[:0]
	for _, d := range diags {
		k := FormatDiagnostic(d)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, d)
	}
	return out
}
