package fs

import (
	"reflect"
	"testing"
)

func TestMergeExtents(t *testing.T) {
	got := MergeExtents([]Extent{{100, 10}, {0, 5}, {5, 5}, {108, 20}, {50, 0}, {200, 1}, {130, 5}, {101, 2}})
	want := []Extent{{0, 10}, {100, 28}, {130, 5}, {200, 1}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("MergeExtents = %v, want %v", got, want)
	}
	if got := MergeExtents(nil); len(got) != 0 {
		t.Fatalf("MergeExtents(nil) = %v", got)
	}
}
