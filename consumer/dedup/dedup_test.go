package dedup

import (
	"strconv"
	"testing"
)

func TestWindow(t *testing.T) {
	tests := []struct {
		name     string
		capacity int
		keys     []string
		want     []bool // Seen result per key
	}{
		{"new keys", 3, []string{"a", "b", "c"}, []bool{false, false, false}},
		{"repeat inside window", 3, []string{"a", "b", "a", "b"}, []bool{false, false, true, true}},
		{"oldest evicted", 2, []string{"a", "b", "c", "a"}, []bool{false, false, false, false}},
		{"recent kept after eviction", 2, []string{"a", "b", "c", "c", "b"}, []bool{false, false, false, true, true}},
		{"capacity below one holds one", 0, []string{"a", "a", "b", "a"}, []bool{false, true, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := New[string](tt.capacity)
			for i, k := range tt.keys {
				if got := w.Seen(k); got != tt.want[i] {
					t.Fatalf("Seen(%q) #%d = %v, want %v", k, i, got, tt.want[i])
				}
			}
		})
	}
}

func TestWindow_memoryIsBounded(t *testing.T) {
	w := New[string](100)
	for i := range 10_000 {
		w.Seen(strconv.Itoa(i))
	}
	if w.Len() != 100 {
		t.Fatalf("window holds %d keys, want 100", w.Len())
	}
}

func TestWindow_structKeys(t *testing.T) {
	type key struct{ source, id string }
	w := New[key](10)
	for i, tc := range []struct {
		k    key
		want bool
	}{
		{key{"/p/1", "a"}, false},
		{key{"/p/1", "a"}, true},
		{key{"/p/2", "a"}, false}, // the same id from another source is another event
		{key{"/p/1a", ""}, false}, // no field bleeds into the other
	} {
		if got := w.Seen(tc.k); got != tc.want {
			t.Errorf("#%d Seen(%+v) = %v, want %v", i, tc.k, got, tc.want)
		}
	}
}
