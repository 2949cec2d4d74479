// Package dedup remembers the most recent event keys in bounded memory, so
// that a consumer can tell a redelivered event from a new one.
//
// At-least-once delivery means an event can arrive twice: after a rebalance
// or a crash, the events handled since the last commit are delivered again.
// The window is in memory, so it catches duplicates within one process
// lifetime; duplicates across a restart are bounded by the commit interval.
package dedup

// Window is a set of the last Capacity keys added, evicted oldest first.
// Keys of a struct type (say, source and id) need no string built for
// each event. It is not safe for concurrent use.
type Window[K comparable] struct {
	ring []K
	next int
	set  map[K]struct{}
}

// New returns a window holding at most capacity keys (at least 1).
func New[K comparable](capacity int) *Window[K] {
	capacity = max(capacity, 1)
	return &Window[K]{ring: make([]K, 0, capacity), set: make(map[K]struct{}, capacity)}
}

// Seen adds key and reports whether it was already in the window.
func (w *Window[K]) Seen(key K) bool {
	if _, ok := w.set[key]; ok {
		return true
	}
	if len(w.ring) < cap(w.ring) {
		w.ring = append(w.ring, key)
	} else {
		delete(w.set, w.ring[w.next])
		w.ring[w.next] = key
		w.next = (w.next + 1) % len(w.ring)
	}
	w.set[key] = struct{}{}
	return false
}

// Len is the number of keys in the window.
func (w *Window[K]) Len() int { return len(w.set) }
