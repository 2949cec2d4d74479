package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Readiness follows the client's own events: starting until the topics were
// checked, then until the group gave an assignment; not ready while every
// broker is down, until an event or a commit comes; never while unhealthy
// or stopping.
func TestCounts_readyFollowsTheClientsEvents(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	healthy := error(nil)
	steps := []struct {
		name string
		do   func(c *Counts, stop context.CancelFunc)
		want string // in the error; "" for ready
	}{
		{"created", func(*Counts, context.CancelFunc) {}, "starting: checking the topics"},
		{"topics checked", func(c *Counts, _ context.CancelFunc) { c.Started.Store(true) }, "starting: waiting for the group's assignment"},
		{"assigned", func(c *Counts, _ context.CancelFunc) { c.Assigned.Store(true) }, ""},
		{"a transient error", func(c *Counts, _ context.CancelFunc) {
			_ = c.Observe(kafka.NewError(kafka.ErrTransport, "broker transport failure", false), log)
		}, ""},
		{"every broker down", func(c *Counts, _ context.CancelFunc) {
			_ = c.Observe(kafka.NewError(kafka.ErrAllBrokersDown, "2/2 brokers are down", false), log)
		}, "every broker is down, by the Kafka client; nothing received since"},
		{"an event", func(c *Counts, _ context.CancelFunc) { c.Received(0, "/producer/test", "1", time.Time{}, time.Now()) }, ""},
		{"every broker down again", func(c *Counts, _ context.CancelFunc) {
			_ = c.Observe(kafka.NewError(kafka.ErrAllBrokersDown, "2/2 brokers are down", false), log)
		}, "every broker is down"},
		{"a commit went through", func(c *Counts, _ context.CancelFunc) { c.BrokersDown.Store(false) }, ""},
		{"unhealthy", func(*Counts, context.CancelFunc) { healthy = errors.New("the leader-stall guard gave up") }, "the leader-stall guard gave up"},
		{"stopping", func(_ *Counts, stop context.CancelFunc) { stop() }, "stopping"},
	}
	c := NewCounts(kafka.ConfigMap{"statistics.interval.ms": 5000})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	ready := c.Ready(ctx, func() error { return healthy })
	for _, s := range steps {
		s.do(c, stop)
		err := ready()
		if s.want == "" && err != nil || s.want != "" && (err == nil || !strings.Contains(err.Error(), s.want)) {
			t.Errorf("%s: ready says %v, want %q", s.name, err, s.want)
		}
	}
}

// Healthy is the fatal error and those of the others: the leader-stall
// guard's and the dead-letter producer's.
func TestCounts_healthyJoinsTheFatalErrorAndTheOthers(t *testing.T) {
	stall := errors.New("re-creating the Kafka client after a leader stall took longer than its bound (15s)")
	dlq := errors.New("fatal dead-letter producer error: Local: Fatal error")
	fatal := errors.New("fatal consumer error: Broker: Fenced instance id")
	none := func() error { return nil }
	tests := []struct {
		name   string
		fatal  error
		others []func() error
		want   []error
	}{
		{"all well", nil, []func() error{none, none}, nil},
		{"the guard gave up", nil, []func() error{func() error { return stall }, none}, []error{stall}},
		{"the dead-letter producer failed", nil, []func() error{none, func() error { return dlq }}, []error{dlq}},
		{"everything failed", fatal, []func() error{func() error { return stall }, func() error { return dlq }}, []error{fatal, stall, dlq}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCounts(kafka.ConfigMap{})
			c.Fatal(tt.fatal)
			err := c.Healthy(tt.others...)()
			if (err == nil) != (tt.want == nil) {
				t.Fatalf("Healthy = %v, want %v", err, tt.want)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("Healthy = %v, want it to hold %v", err, w)
				}
			}
		})
	}
}

// Our producer's ids count up per source and partition: an id at or below
// the highest seen there is a copy; ids that are no numbers are not judged.
func TestCounts_receivedCountsCopies(t *testing.T) {
	type ev struct {
		partition int32
		source    string
		id        string
		dup       bool
	}
	tests := []struct {
		name   string
		events []ev
	}{
		{"in order", []ev{{0, "a", "1", false}, {0, "a", "2", false}, {0, "a", "3", false}}},
		{"again after a restart", []ev{{0, "a", "1", false}, {0, "a", "2", false}, {0, "a", "1", true}, {0, "a", "2", true}, {0, "a", "3", false}}},
		{"a gap is no copy", []ev{{0, "a", "1", false}, {0, "a", "5", false}, {0, "a", "3", true}}},
		{"sources count apart", []ev{{0, "a", "2", false}, {0, "b", "1", false}, {0, "b", "2", false}}},
		{"partitions count apart", []ev{{0, "a", "2", false}, {1, "a", "1", false}}},
		{"ids that are no numbers", []ev{{0, "a", "x", false}, {0, "a", "x", false}, {0, "", "", false}, {0, "", "", false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCounts(kafka.ConfigMap{})
			dups := 0
			for i, e := range tt.events {
				if got := c.Received(e.partition, e.source, e.id, time.Time{}, time.Now()); got != e.dup {
					t.Errorf("event %d %+v: copy %t, want %t", i, e, got, e.dup)
				}
				if e.dup {
					dups++
				}
			}
			if c.Handled.Load() != int64(len(tt.events)) || c.Duplicates.Load() != int64(dups) {
				t.Errorf("handled %d, duplicates %d; want %d, %d", c.Handled.Load(), c.Duplicates.Load(), len(tt.events), dups)
			}
		})
	}
}

// The sources remembered are bounded: past maxSources they are forgotten,
// and a copy then goes unnoticed rather than the memory growing.
func TestCounts_remembersBoundedSources(t *testing.T) {
	c := NewCounts(kafka.ConfigMap{})
	for i := range maxSources + 1 {
		c.Received(int32(i), "a", "5", time.Time{}, time.Now())
	}
	if len(c.highest) > maxSources {
		t.Errorf("%d sources remembered, want at most %d", len(c.highest), maxSources)
	}
}

// The summary measures from the first event handled to the last: the rate is
// of the gaps between them.
func TestCounts_summaryMeasuresFromTheFirstEventToTheLast(t *testing.T) {
	c := NewCounts(kafka.ConfigMap{})
	if got := c.Summary(2); len(got) != 8 || got[1] != int64(0) || got[7] != int64(2) {
		t.Errorf("summary %v before any event, want the counts only", got)
	}
	start := time.Now()
	const n = 20
	for i := range n { // event k (from 0) handled k ms after the start
		c.Received(0, "a", "", time.Time{}, start.Add(time.Duration(i)*time.Millisecond))
	}
	c.DeadLettered.Add(3)
	got := c.Summary(1)
	want := []any{"received", int64(n), "duplicates", int64(0), "dead_lettered", int64(3), "recovered", int64(1),
		"elapsed", (n - 1) * time.Millisecond, "events_per_s", 1000.0}
	if len(got) != len(want) {
		t.Fatalf("summary %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("summary %v, want %v", got, want)
			break
		}
	}
}

// A fatal client error ends the run: Observe returns it; other errors are
// warned of, as the client retries by itself.
func TestCounts_observeReturnsOnlyFatalErrors(t *testing.T) {
	tests := []struct {
		name string
		err  kafka.Error
		want string // the error returned; "" for none
		warn bool
		down bool
	}{
		{"fatal", kafka.NewError(kafka.ErrFencedInstanceID, "Broker: Fenced instance id", true),
			"fatal consumer error: Fatal error: Broker: Fenced instance id", false, false},
		{"transient", kafka.NewError(kafka.ErrTransport, "broker transport failure", false), "", true, false},
		{"every broker down", kafka.NewError(kafka.ErrAllBrokersDown, "1/1 brokers are down", false), "", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			c := NewCounts(kafka.ConfigMap{})
			err := c.Observe(tt.err, slog.New(slog.NewTextHandler(&out, nil)))
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || err.Error() != tt.want) {
				t.Errorf("Observe = %v, want %q", err, tt.want)
			}
			if warned := strings.Contains(out.String(), "Kafka client error, retrying"); warned != tt.warn {
				t.Errorf("warned %t, want %t: %q", warned, tt.warn, out.String())
			}
			if c.BrokersDown.Load() != tt.down {
				t.Errorf("every broker down: %t, want %t", c.BrokersDown.Load(), tt.down)
			}
		})
	}
}

// Fatal keeps the first error and closes Stopped once; nil is no error.
func TestCounts_fatalKeepsTheFirstError(t *testing.T) {
	c := NewCounts(kafka.ConfigMap{})
	c.Fatal(nil)
	select {
	case <-c.Stopped():
		t.Fatal("stopped by no error")
	default:
	}
	first, second := errors.New("first"), errors.New("second")
	c.Fatal(first)
	c.Fatal(second)
	select {
	case <-c.Stopped():
	default:
		t.Fatal("not stopped by a fatal error")
	}
	if c.Err() != first {
		t.Errorf("Err = %v, want the first", c.Err())
	}
}

func TestCounts_metrics(t *testing.T) {
	c := NewCounts(kafka.ConfigMap{})
	c.Received(0, "a", "1", time.Now().Add(-30*time.Millisecond), time.Now())
	c.Received(0, "a", "1", time.Time{}, time.Now()) // a copy, of unknown latency
	c.DeadLettered.Add(1)
	c.Rebalances.WithLabelValues("assigned").Inc()
	var recovered atomic.Int64
	recovered.Store(2)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.Metrics(recovered.Load)...)
	want := `# HELP consumer_events_dead_lettered_total Messages that could not be decoded, copied to the dead-letter topic.
# TYPE consumer_events_dead_lettered_total counter
consumer_events_dead_lettered_total 1
# HELP consumer_events_duplicate_total Events handled again: an id at or below the highest seen from its source.
# TYPE consumer_events_duplicate_total counter
consumer_events_duplicate_total 1
# HELP consumer_events_received_total Events decoded and handled (duplicates included).
# TYPE consumer_events_received_total counter
consumer_events_received_total 2
# HELP consumer_rebalances_total Changes of this consumer's assignment, by change: assigned, revoked or lost.
# TYPE consumer_rebalances_total counter
consumer_rebalances_total{change="assigned"} 1
# HELP consumer_recoveries_total Times the Kafka client was re-created after a leader stall.
# TYPE consumer_recoveries_total counter
consumer_recoveries_total 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "consumer_events_dead_lettered_total", "consumer_events_duplicate_total",
		"consumer_events_received_total", "consumer_rebalances_total", "consumer_recoveries_total"); err != nil {
		t.Error(err)
	}
	// Only the event whose sending time is known has a latency.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "consumer_event_latency_seconds" {
			if h := mf.GetMetric()[0].GetHistogram(); h.GetSampleCount() != 1 || h.GetSampleSum() < 0.03 {
				t.Errorf("latency: %d samples, sum %gs; want 1 of at least 30ms", h.GetSampleCount(), h.GetSampleSum())
			}
			return
		}
	}
	t.Error("no latency histogram")
}

// An idle client gets no event to say that the brokers are back; its
// statistics say so, and readiness follows.
func TestCounts_statisticsWithABrokerUpEndTheOutage(t *testing.T) {
	for _, tt := range []struct {
		file string
		down bool
	}{{"testdata/stats-up.json", false}, {"testdata/stats-broker-down.json", true}} {
		js, err := os.ReadFile(tt.file)
		if err != nil {
			t.Fatal(err)
		}
		c := NewCounts(kafka.ConfigMap{"statistics.interval.ms": 5000})
		c.BrokersDown.Store(true)
		c.statistics("", slog.New(slog.DiscardHandler)) // not understood: changes nothing
		if !c.BrokersDown.Load() {
			t.Fatalf("%s: statistics not understood ended the outage", tt.file)
		}
		c.statistics(string(js), slog.New(slog.DiscardHandler))
		if c.BrokersDown.Load() != tt.down {
			t.Errorf("%s: brokers down %v; want %v", tt.file, c.BrokersDown.Load(), tt.down)
		}
	}
}
