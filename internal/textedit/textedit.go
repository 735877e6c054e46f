// Package textedit edits config files a line (or a token) at a time,
// keeping everything it does not touch as it was: comments, order, and
// lines it does not understand.
package textedit

// ReplaceFirst returns items with the first one match accepts replaced by
// repl and every later one match accepts dropped, so a setting ends up
// stated once, where it stood. found is false when none matched; the
// caller then adds repl where its format wants new settings.
func ReplaceFirst[T any](items []T, match func(T) bool, repl T) (out []T, found bool) {
	out = make([]T, 0, len(items))
	for _, it := range items {
		if !match(it) {
			out = append(out, it)
		} else if !found {
			out = append(out, repl)
			found = true
		}
	}
	return out, found
}
