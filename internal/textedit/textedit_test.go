package textedit

import (
	"slices"
	"strings"
	"testing"
)

func TestReplaceFirst(t *testing.T) {
	isHost := func(l string) bool { return strings.HasPrefix(l, "host=") }
	for _, c := range []struct {
		in, want  []string
		wantFound bool
	}{
		{[]string{"a", "host=x", "b", "host=y", "c"}, []string{"a", "host=new", "b", "c"}, true},
		{[]string{"a", "b"}, []string{"a", "b"}, false},
		{nil, []string{}, false},
	} {
		in := slices.Clone(c.in)
		got, found := ReplaceFirst(in, isHost, "host=new")
		if !slices.Equal(got, c.want) || found != c.wantFound {
			t.Errorf("ReplaceFirst(%q) = %q, %v; want %q, %v", c.in, got, found, c.want, c.wantFound)
		}
		if !slices.Equal(in, c.in) {
			t.Errorf("ReplaceFirst changed its input: %q", in)
		}
	}
}
