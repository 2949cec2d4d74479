// Package schedule paces the events on a fixed grid: one every interval,
// stamped with its slot, so that high rates hold on average.
package schedule

import (
	"context"
	"time"
)

// Grid hands out the slots of a fixed schedule.
type Grid struct {
	interval time.Duration
	next     time.Time // when the next event is due
}

// New returns a grid of interval, its first slot now; 0 sends back to back.
func New(interval time.Duration) *Grid { return &Grid{interval: interval, next: time.Now()} }

// Wait waits for the next slot and returns it, or false when ctx ends
// first. A slot up to 100 ms late is kept; later (a laptop slept) the grid
// restarts at now, with no burst of stale events: late says by how much,
// skipped how many slots were missed.
func (g *Grid) Wait(ctx context.Context) (at time.Time, late time.Duration, skipped int64, ok bool) {
	if g.interval <= 0 {
		return time.Now(), 0, 0, ctx.Err() == nil
	}
	if !Sleep(ctx, time.Until(g.next)) {
		return time.Time{}, 0, 0, false
	}
	at, late, skipped = slot(g.next, time.Now(), g.interval)
	g.next = at.Add(g.interval)
	return at, late, skipped, true
}

// slot stamps an event due at due, waited for until now, with its slot, or
// with now when over 100 ms late.
func slot(due, now time.Time, interval time.Duration) (at time.Time, late time.Duration, skipped int64) {
	if d := now.Sub(due); d > 100*time.Millisecond {
		return now, d, int64(d / interval)
	}
	return due, 0, 0
}

// Sleep waits d, or reports false if ctx ends first.
func Sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
