package schedule

import (
	"testing"
	"time"
)

func TestSlot(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 15, 4, 5, 0, time.UTC)
	type step struct {
		now     time.Duration // when the wait ended, after t0
		at      time.Duration // the stamp, after t0
		late    time.Duration
		skipped int64
	}
	tests := []struct {
		name     string
		interval time.Duration
		steps    []step
	}{
		{"on time", 5 * time.Second, []step{{0, 0, 0, 0}, {5 * time.Second, 5 * time.Second, 0, 0}}},
		{"up to 100ms late keeps the grid", 5 * time.Second, []step{
			{100 * time.Millisecond, 0, 0, 0}, {5 * time.Second, 5 * time.Second, 0, 0}}},
		{"a high rate catches up on the grid", time.Millisecond, []step{
			{50 * time.Millisecond, 0, 0, 0}, {50 * time.Millisecond, time.Millisecond, 0, 0},
			{50 * time.Millisecond, 2 * time.Millisecond, 0, 0}}},
		{"an hour asleep restarts at now with no burst", 5 * time.Second, []step{
			{0, 0, 0, 0},
			{time.Hour + 5*time.Second, time.Hour + 5*time.Second, time.Hour, 720},
			{time.Hour + 10*time.Second, time.Hour + 10*time.Second, 0, 0}}},
		{"late by less than a slot restarts without skipping", 5 * time.Second, []step{
			{200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 0},
			{5200 * time.Millisecond, 5200 * time.Millisecond, 0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			due := t0
			for i, st := range tt.steps {
				at, late, skipped := slot(due, t0.Add(st.now), tt.interval)
				if at != t0.Add(st.at) || late != st.late || skipped != st.skipped {
					t.Fatalf("step %d: slot at t0+%s = t0+%s, late %s, skipped %d; want t0+%s, late %s, skipped %d",
						i, st.now, at.Sub(t0), late, skipped, st.at, st.late, st.skipped)
				}
				due = at.Add(tt.interval)
			}
		})
	}
}
