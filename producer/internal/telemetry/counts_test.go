package telemetry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Readiness follows the client's own events: started once the topic has
// its leaders, not while every broker is down until a delivery, and never
// once stopping or unhealthy.
func TestCounts_readyAndHealthy(t *testing.T) {
	guardGaveUp := errors.New("re-creating the Kafka client after a leader stall took longer than its bound (10s)")
	tests := []struct {
		name           string
		guard          error // the leader-stall guard's health
		change         func(c *Counts, stop func())
		ready, healthy string // in the error; "" for nil
	}{
		{"starting", nil, func(*Counts, func()) {}, "starting: waiting for the topic's leaders", ""},
		{"started", nil, func(c *Counts, _ func()) { c.Started.Store(true) }, "", ""},
		{"every broker down", nil, func(c *Counts, _ func()) {
			c.Started.Store(true)
			c.Observe(kafka.NewError(kafka.ErrAllBrokersDown, "1/1 brokers are down", false), slog.New(slog.DiscardHandler))
		}, "every broker is down", ""},
		{"a delivery after every broker was down", nil, func(c *Counts, _ func()) {
			c.Started.Store(true)
			c.Observe(kafka.NewError(kafka.ErrAllBrokersDown, "1/1 brokers are down", false), slog.New(slog.DiscardHandler))
			c.Delivered(time.Millisecond)
		}, "", ""},
		{"stopping", nil, func(c *Counts, stop func()) { c.Started.Store(true); stop() }, "stopping", ""},
		{"fatal error", nil, func(c *Counts, _ func()) {
			c.Started.Store(true)
			c.Fatal(errors.New("fatal producer error: Broker: Out of order sequence number"))
		}, "Out of order sequence number", "Out of order sequence number"},
		{"the guard gave up", guardGaveUp, func(c *Counts, _ func()) { c.Started.Store(true) }, "took longer than its bound", "took longer than its bound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCounts(kafka.ConfigMap{})
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			healthy := c.Healthy(func() error { return tt.guard })
			ready := c.Ready(ctx, healthy)
			tt.change(c, stop)
			for _, check := range []struct {
				what string
				err  error
				want string
			}{{"ready", ready(), tt.ready}, {"healthy", healthy(), tt.healthy}} {
				if check.want == "" && check.err != nil || check.want != "" && (check.err == nil || !strings.Contains(check.err.Error(), check.want)) {
					t.Errorf("%s: %v, want %q", check.what, check.err, check.want)
				}
			}
		})
	}
}

// Observe takes the client's errors and statistics: a fatal error stops
// the run, every broker down makes the producer not ready, others are
// retried by the client and said in a line.
func TestCounts_observe(t *testing.T) {
	tests := []struct {
		name        string
		event       kafka.Event
		fatal, down bool
		line        string // in the output; "" for none
	}{
		{"fatal error", kafka.NewError(kafka.ErrOutOfOrderSequenceNumber, "injected", true), true, false, ""},
		{"every broker down", kafka.NewError(kafka.ErrAllBrokersDown, "1/1 brokers are down", false), false, true, ""},
		{"another error", kafka.NewError(kafka.ErrTransport, "Connection refused", false), false, false,
			`level=WARN msg="Kafka client error, retrying" err="Connection refused"`},
		{"statistics not understood", &kafka.Stats{}, false, false, `level=WARN msg="Statistics not understood"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			c := NewCounts(kafka.ConfigMap{})
			c.Observe(tt.event, slog.New(slog.NewTextHandler(&out, nil)))
			fatal := false
			select {
			case <-c.Stopped():
				fatal = true
			default:
			}
			if fatal != tt.fatal || (c.Err() != nil) != tt.fatal || c.BrokersDown.Load() != tt.down {
				t.Errorf("Stopped closed %t, Err %v, brokers down %t; want %t, an error %t, %t", fatal, c.Err(), c.BrokersDown.Load(), tt.fatal, tt.fatal, tt.down)
			}
			if tt.fatal && !strings.HasPrefix(c.Err().Error(), "fatal producer error: ") {
				t.Errorf("Err = %v, want the fatal producer error", c.Err())
			}
			if tt.line == "" && out.Len() > 0 || !strings.Contains(out.String(), tt.line) {
				t.Errorf("output %q, want %q", out.String(), tt.line)
			}
		})
	}
}

// Only the first fatal error counts: Stopped is closed once.
func TestCounts_fatalKeepsTheFirstError(t *testing.T) {
	c := NewCounts(kafka.ConfigMap{})
	c.Fatal(errors.New("first"))
	c.Fatal(errors.New("second"))
	if err := c.Err(); err == nil || err.Error() != "first" {
		t.Errorf("Err = %v, want the first fatal error", err)
	}
}

func TestCounts_errAndSummary(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 15, 4, 5, 0, time.UTC).UnixNano()
	tests := []struct {
		name                     string
		attempted, acked, failed int64
		first, last              time.Duration // after t0; first < 0: nothing sent
		fatal                    error
		err                      string
		summary                  []any
	}{
		{"nothing sent", 0, 0, 0, -1, 0, nil, "",
			[]any{"attempted", int64(0), "delivered", int64(0), "failed", int64(0), "unknown", int64(0), "recovered", int64(1)}},
		{"all delivered", 500, 500, 0, 0, 2 * time.Second, nil, "",
			[]any{"attempted", int64(500), "delivered", int64(500), "failed", int64(0), "unknown", int64(0), "recovered", int64(1),
				"elapsed", 2 * time.Second, "events_per_s", 250.0}},
		{"the rate is cut to a tenth", 1, 1, 0, 0, 3 * time.Second, nil, "",
			[]any{"attempted", int64(1), "delivered", int64(1), "failed", int64(0), "unknown", int64(0), "recovered", int64(1),
				"elapsed", 3 * time.Second, "events_per_s", 0.3}},
		{"the elapsed time to the microsecond", 3, 3, 0, 0, 1234567 * time.Nanosecond, nil, "",
			[]any{"attempted", int64(3), "delivered", int64(3), "failed", int64(0), "unknown", int64(0), "recovered", int64(1),
				"elapsed", 1235 * time.Microsecond, "events_per_s", 2430.0}},
		{"failed and unknown", 5, 2, 1, 0, time.Second, nil,
			"3 of 5 events not delivered: 1 failed, 2 unknown (sent but unconfirmed: may have been written)",
			[]any{"attempted", int64(5), "delivered", int64(2), "failed", int64(1), "unknown", int64(2), "recovered", int64(1),
				"elapsed", time.Second, "events_per_s", 2.0}},
		{"nothing delivered", 4, 0, 0, 0, 0, nil, "4 of 4 events not delivered: 0 failed, 4 unknown",
			[]any{"attempted", int64(4), "delivered", int64(0), "failed", int64(0), "unknown", int64(4), "recovered", int64(1)}},
		{"a fatal error wins", 2, 2, 0, 0, time.Second, errors.New("fatal producer error: boom"), "fatal producer error: boom",
			[]any{"attempted", int64(2), "delivered", int64(2), "failed", int64(0), "unknown", int64(0), "recovered", int64(1),
				"elapsed", time.Second, "events_per_s", 2.0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCounts(kafka.ConfigMap{})
			c.Attempted.Store(tt.attempted)
			c.Acked.Store(tt.acked)
			c.Failed.Store(tt.failed)
			if tt.first >= 0 {
				c.First.Store(t0 + int64(tt.first))
			}
			if tt.last > 0 {
				c.Last.Store(t0 + int64(tt.last))
			}
			if tt.fatal != nil {
				c.Fatal(tt.fatal)
			}
			if err := c.Err(); tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.err)) {
				t.Errorf("Err = %v, want %q", err, tt.err)
			}
			if got := c.Summary(1); !reflect.DeepEqual(got, tt.summary) {
				t.Errorf("Summary = %v, want %v", got, tt.summary)
			}
		})
	}
}

// Left, said when a shutdown is cut short, tells the reported unknown
// events from those with no report yet.
func TestCounts_left(t *testing.T) {
	c := NewCounts(kafka.ConfigMap{})
	c.Attempted.Store(10)
	c.Acked.Store(5)
	c.Failed.Store(1)
	c.Unknown.Store(1)
	want := []any{"attempted", int64(10), "delivered", int64(5), "failed", int64(1), "unknown", int64(1), "unconfirmed", int64(3)}
	if got := c.Left(); !reflect.DeepEqual(got, want) {
		t.Errorf("Left = %v, want %v", got, want)
	}
}

func TestCounts_metrics(t *testing.T) {
	c := NewCounts(kafka.ConfigMap{"statistics.interval.ms": 1000})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.Metrics(func() int64 { return 2 })...)
	c.Attempted.Add(5)
	c.Delivered(2 * time.Millisecond)
	c.Delivered(300 * time.Millisecond)
	c.Delivered(4 * time.Second)
	c.Failed.Add(1)
	c.Unknown.Add(1)
	want := `# HELP producer_events_delivered_total Events acknowledged by all in-sync replicas.
# TYPE producer_events_delivered_total counter
producer_events_delivered_total 3
# HELP producer_events_failed_total Events surely not written.
# TYPE producer_events_failed_total counter
producer_events_failed_total 1
# HELP producer_events_sent_total Events the Kafka client accepted.
# TYPE producer_events_sent_total counter
producer_events_sent_total 5
# HELP producer_events_unconfirmed_total Events maybe written: timed out or purged in flight.
# TYPE producer_events_unconfirmed_total counter
producer_events_unconfirmed_total 1
# HELP producer_recoveries_total Times the Kafka client was re-created after a leader stall.
# TYPE producer_recoveries_total counter
producer_recoveries_total 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "producer_events_sent_total", "producer_events_delivered_total",
		"producer_events_failed_total", "producer_events_unconfirmed_total", "producer_recoveries_total"); err != nil {
		t.Error(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, mf := range mfs {
		if mf.GetName() != "producer_delivery_seconds" {
			continue
		}
		found = true
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() != 3 || math.Abs(h.GetSampleSum()-4.302) > 1e-9 {
			t.Errorf("producer_delivery_seconds: %d deliveries, %gs in all; want 3, 4.302s", h.GetSampleCount(), h.GetSampleSum())
		}
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == 0.25 && b.GetCumulativeCount() != 1 || b.GetUpperBound() == 5 && b.GetCumulativeCount() != 3 {
				t.Errorf("bucket le=%g holds %d deliveries", b.GetUpperBound(), b.GetCumulativeCount())
			}
		}
	}
	if !found {
		t.Error("no producer_delivery_seconds")
	}
	if n := testutil.CollectAndCount(c.Stats); n != 0 {
		t.Errorf("%d series of the client's statistics before any came, want none", n)
	}
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
