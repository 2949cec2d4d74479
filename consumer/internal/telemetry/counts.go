package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
)

// maxSources bounds the (partition, source) pairs remembered for duplicates.
const maxSources = 10_000

// Counts say what the consumer did, for the summary line, /metrics and
// /readyz. The counters are safe from any goroutine; Received is for the
// goroutine that polls.
type Counts struct {
	Handled, Duplicates, DeadLettered atomic.Int64
	Started, Assigned, BrokersDown    atomic.Bool // topics checked; an assignment came (maybe empty); every broker down, nothing since
	Latency                           prometheus.Histogram
	Rebalances                        *prometheus.CounterVec
	Stats                             *ClientStats

	first, last time.Time             // of the first and the latest event handled
	highest     map[fromSource]uint64 // the highest id seen from each source
	fatalOnce   sync.Once
	fatal       atomic.Pointer[error]
	stopped     chan struct{}
}

// fromSource is where ids count up: one source's events on one partition.
type fromSource struct {
	partition int32
	source    string
}

// NewCounts returns the counts of a client configured by cm.
func NewCounts(cm kafka.ConfigMap) *Counts {
	ms, _ := strconv.Atoi(fmt.Sprint(cm["statistics.interval.ms"]))
	return &Counts{Stats: NewClientStats(time.Duration(ms) * time.Millisecond), highest: map[fromSource]uint64{}, stopped: make(chan struct{}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "consumer_event_latency_seconds",
			Help: "Time from an event's ce_time (when it was sent) to its handling here.", Buckets: latencyBuckets}),
		Rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "consumer_rebalances_total",
			Help: "Changes of this consumer's assignment, by change: assigned, revoked or lost."}, []string{"change"})}
}

// latencyBuckets, in seconds, resolve a local broker's milliseconds and a backlog's minutes.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// Received counts an event of id from source on partition, sent at sent
// (zero: unknown), and tells whether it is a copy: our producer's ids count
// up per source and partition, so an id at or below the highest is one.
// Other producers' ids (not numbers) are not checked.
func (c *Counts) Received(partition int32, source, id string, sent, now time.Time) (dup bool) {
	if c.Handled.Add(1) == 1 {
		c.first = now
	}
	c.last = now
	c.BrokersDown.Store(false)
	if !sent.IsZero() {
		c.Latency.Observe(now.Sub(sent).Seconds())
	}
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return false
	}
	k := fromSource{partition, source}
	high, ok := c.highest[k]
	if dup = ok && n <= high; dup {
		c.Duplicates.Add(1)
	} else if !ok && len(c.highest) >= maxSources {
		clear(c.highest)
	}
	c.highest[k] = max(high, n)
	return dup
}

// Observe takes the client's errors and statistics; it returns a fatal error.
func (c *Counts) Observe(e kafka.Event, log *slog.Logger) error {
	switch e := e.(type) {
	case kafka.Error:
		switch {
		case e.IsFatal():
			return fmt.Errorf("fatal consumer error: %w", e)
		case e.Code() == kafka.ErrAllBrokersDown:
			c.BrokersDown.Store(true)
		}
		log.Warn("Kafka client error, retrying", "err", e) // the client retries by itself
	case *kafka.Stats:
		c.statistics(e.String(), log)
	}
	return nil
}

// Fatal records the first fatal error: only a restart helps. It closes
// Stopped. A nil err is none.
func (c *Counts) Fatal(err error) {
	if err == nil {
		return
	}
	c.fatalOnce.Do(func() {
		c.fatal.Store(&err)
		close(c.stopped)
	})
}

// Stopped is closed by Fatal: the run ends by itself, and the process must end too, should the client hang.
func (c *Counts) Stopped() <-chan struct{} { return c.stopped }

// Err is the fatal error, if any.
func (c *Counts) Err() error {
	if err := c.fatal.Load(); err != nil {
		return *err
	}
	return nil
}

// Summary are the attributes of the last line: the counts and the rate.
func (c *Counts) Summary(recovered int64) []any {
	n := c.Handled.Load()
	s := []any{"received", n, "duplicates", c.Duplicates.Load(), "dead_lettered", c.DeadLettered.Load(), "recovered", recovered}
	if n > 0 {
		rate, elapsed := 0.0, c.last.Sub(c.first)
		if elapsed > 0 { // the gaps between the events, one fewer than the events
			rate = float64(int(float64(n-1)/elapsed.Seconds()*10)) / 10
		}
		s = append(s, "elapsed", elapsed.Round(time.Microsecond), "events_per_s", rate)
	}
	return s
}

// Healthy is the fatal error, or the first of the others'.
func (c *Counts) Healthy(others ...func() error) func() error {
	return func() error {
		err := c.Err()
		for _, f := range others {
			err = errors.Join(err, f())
		}
		return err
	}
}

// Ready says why the consumer cannot take its part in the group now, judged
// by the client's own events: once the topics are checked and the group
// gave it an assignment (an empty one too: the group has more members than
// partitions), and not while every broker is down.
func (c *Counts) Ready(ctx context.Context, healthy func() error) func() error {
	return func() error {
		switch {
		case ctx.Err() != nil:
			return errors.New("stopping")
		case !c.Started.Load():
			return errors.New("starting: checking the topics")
		case !c.Assigned.Load():
			return errors.New("starting: waiting for the group's assignment")
		case c.BrokersDown.Load():
			return errors.New("every broker is down, by the Kafka client; nothing received since")
		}
		return healthy()
	}
}

// Metrics are the counts, the events' latency, the rebalances and the client's statistics.
func (c *Counts) Metrics(recovered func() int64) []prometheus.Collector {
	return []prometheus.Collector{c.Latency, c.Rebalances, c.Stats,
		Counter("consumer_events_received_total", "Events decoded and handled (duplicates included).", &c.Handled),
		Counter("consumer_events_duplicate_total", "Events handled again: an id at or below the highest seen from its source.", &c.Duplicates),
		Counter("consumer_events_dead_lettered_total", "Messages that could not be decoded, copied to the dead-letter topic.", &c.DeadLettered),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "consumer_recoveries_total",
			Help: "Times the Kafka client was re-created after a leader stall."}, func() float64 { return float64(recovered()) })}
}

// statistics takes the client's statistics. An idle client gets no other
// event to say that a broker is back: they do.
func (c *Counts) statistics(js string, log *slog.Logger) {
	if err := c.Stats.Update(js, time.Now()); err != nil {
		log.Warn("Statistics not understood", "err", err)
	} else if c.Stats.BrokerUp() {
		c.BrokersDown.Store(false)
	}
}
