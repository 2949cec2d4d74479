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

// schedule paces events on a fixed grid: event seq (from 1) is due at
// start + (seq-1)*interval. Unlike time.Ticker, which drops ticks for a slow
// receiver, a late event is not skipped: it goes out at once, stamped with
// the time it was due, so the rate holds on average and a latency measured
// from the event's time includes any delay in sending it.
type schedule struct {
	start    time.Time
	interval time.Duration
	timer    *time.Timer
}

func newSchedule(start time.Time, interval time.Duration) *schedule {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &schedule{start: start, interval: interval, timer: t}
}

// due is the time event seq is due.
func (s *schedule) due(seq uint64) time.Time {
	return s.start.Add(time.Duration(seq-1) * s.interval)
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
