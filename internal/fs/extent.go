package fs

import "sort"

// End is the first byte after the extent.
func (e Extent) End() int64 { return e.Off + e.Len }

// MergeExtents sorts extents and joins those that overlap or touch, dropping
// empty ones, so the result is what UsedMapper promises: sorted and
// non-overlapping. It reorders and reuses the input slice.
func MergeExtents(e []Extent) []Extent {
	out := e[:0]
	for _, x := range e {
		if x.Len > 0 {
			out = append(out, x)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Off < out[j].Off })
	n := 0
	for _, x := range out {
		if n > 0 && x.Off <= out[n-1].End() {
			if x.End() > out[n-1].End() {
				out[n-1].Len = x.End() - out[n-1].Off
			}
			continue
		}
		out[n] = x
		n++
	}
	return out[:n]
}
