package sender

import (
	"context"
	"time"
)

// fineWait is the longest wait left to sleepFine. Go's timers wake up in
// steps of a millisecond on Linux, which is too coarse for intervals below
// a few milliseconds; sleepFine sleeps in the kernel, to within about a
// tenth of a millisecond.
const fineWait = 2 * time.Millisecond

// maxLate is how late an event may go out and still be stamped with its
// slot: up to it, the schedule catches up on its grid, so that high rates
// hold on average. A later event (a laptop that slept, a broker that kept
// the queue full) restarts the schedule instead of sending a burst of stale
// events.
const maxLate = 100 * time.Millisecond

// schedule paces events on a fixed grid of slots, interval apart. Unlike
// time.Ticker, which drops ticks for a slow receiver, an event up to maxLate
// late keeps its slot: it goes out at once, stamped with the time it was
// due, so a latency measured from the event's time includes the delay.
type schedule struct {
	next     time.Time // when the next event is due
	interval time.Duration
	timer    *time.Timer
}

func newSchedule(start time.Time, interval time.Duration) *schedule {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &schedule{next: start, interval: interval, timer: t}
}

// stamp takes the next slot for an event whose wait ended at now and
// returns the time to stamp it with. When the event is more than maxLate
// late, the schedule restarts at now: the event is stamped now, late says
// by how much it missed its slot and skipped how many slots went by
// without an event; otherwise late and skipped are 0.
func (s *schedule) stamp(now time.Time) (at time.Time, late time.Duration, skipped int64) {
	at = s.next
	if d := now.Sub(at); d > maxLate {
		at, late, skipped = now, d, int64(d/s.interval)
	}
	s.next = at.Add(s.interval)
	return at, late, skipped
}

// wait returns when t has come, or false as soon as ctx ends or stop is
// closed.
func (s *schedule) wait(ctx context.Context, stop <-chan struct{}, t time.Time) bool {
	for {
		left := time.Until(t)
		switch {
		case left <= 0:
			return true
		case left <= fineWait:
			sleepFine(left)
			continue
		}
		s.timer.Reset(left - fineWait)
		select {
		case <-ctx.Done():
			s.timer.Stop()
			return false
		case <-stop:
			s.timer.Stop()
			return false
		case <-s.timer.C:
		}
	}
}
