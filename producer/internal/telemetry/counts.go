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

// Counts say what became of the events the client accepted, for the
// summary line, /metrics and /readyz; safe from any goroutine.
type Counts struct {
	Attempted, Acked atomic.Int64 // accepted by the client; acknowledged by the broker
	Failed, Unknown  atomic.Int64 // reported surely not written; maybe written (timed out, purged in flight, sent twice)
	First, Last      atomic.Int64 // Unix nanoseconds of the first send and of the latest delivery report
	Started          atomic.Bool  // the topic has its leaders
	BrokersDown      atomic.Bool  // the client reported every broker down, and nothing was delivered since
	Delivery         prometheus.Histogram
	Stats            *ClientStats

	fatalOnce sync.Once
	fatal     atomic.Pointer[error]
	failed    chan struct{}
}

// NewCounts returns the counts of a client configured by cm.
func NewCounts(cm kafka.ConfigMap) *Counts {
	ms, _ := strconv.Atoi(fmt.Sprint(cm["statistics.interval.ms"]))
	return &Counts{Stats: NewClientStats(time.Duration(ms) * time.Millisecond), failed: make(chan struct{}),
		Delivery: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "producer_delivery_seconds",
			Help: "Time from sending an event to its delivery report.", Buckets: latencyBuckets})}
}

// latencyBuckets, in seconds, resolve a local broker's milliseconds and a remote one's seconds.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Delivered counts an event acknowledged latency after it was made.
func (c *Counts) Delivered(latency time.Duration) {
	c.Acked.Add(1)
	c.Last.Store(time.Now().UnixNano())
	c.BrokersDown.Store(false)
	c.Delivery.Observe(latency.Seconds())
}

// Observe takes the client's other events: errors and statistics.
func (c *Counts) Observe(e kafka.Event, log *slog.Logger) {
	switch e := e.(type) {
	case kafka.Error:
		switch {
		case e.IsFatal():
			c.Fatal(fmt.Errorf("fatal producer error: %w", e))
		case e.Code() == kafka.ErrAllBrokersDown:
			c.BrokersDown.Store(true)
		default:
			log.Warn("Kafka client error, retrying", "err", e) // the client retries by itself
		}
	case *kafka.Stats:
		c.statistics(e.String(), log)
	}
}

// Fatal records the first fatal error: only a restart helps. It closes Stopped.
func (c *Counts) Fatal(err error) {
	c.fatalOnce.Do(func() {
		c.fatal.Store(&err)
		close(c.failed)
	})
}

// Stopped is closed by Fatal: the run ends by itself, and the process must end too, should the client hang.
func (c *Counts) Stopped() <-chan struct{} { return c.failed }

// Err is the fatal error, or an error saying how many events were not
// delivered, or nil.
func (c *Counts) Err() error {
	if err := c.fatal.Load(); err != nil {
		return *err
	}
	if a, d := c.Attempted.Load(), c.Acked.Load(); a != d {
		return fmt.Errorf("%d of %d events not delivered: %d failed, %d unknown (sent but unconfirmed: may have been written)",
			a-d, a, c.Failed.Load(), a-d-c.Failed.Load())
	}
	return nil
}

// Summary are the attributes of the last line: the counts and the rate.
func (c *Counts) Summary(recovered int64) []any {
	a, d, f := c.Attempted.Load(), c.Acked.Load(), c.Failed.Load()
	s := []any{"attempted", a, "delivered", d, "failed", f, "unknown", a - d - f, "recovered", recovered}
	if first, last := c.First.Load(), c.Last.Load(); first > 0 && last > first {
		elapsed := time.Duration(last - first)
		s = append(s, "elapsed", elapsed.Round(time.Microsecond), "events_per_s", float64(int(float64(d)/elapsed.Seconds()*10))/10)
	}
	return s
}

// Left are the attributes of a line written when the shutdown is cut short.
func (c *Counts) Left() []any {
	a, d, f, u := c.Attempted.Load(), c.Acked.Load(), c.Failed.Load(), c.Unknown.Load()
	return []any{"attempted", a, "delivered", d, "failed", f, "unknown", u, "unconfirmed", a - d - f - u}
}

// Healthy is the fatal error, or the other's (the leader-stall guard's).
func (c *Counts) Healthy(other func() error) func() error {
	return func() error {
		if err := c.fatal.Load(); err != nil {
			return *err
		}
		return other()
	}
}

// Ready says why the producer cannot deliver events now, judged by the
// client's own events: started once the topic has its leaders, not while
// every broker is down.
func (c *Counts) Ready(ctx context.Context, healthy func() error) func() error {
	return func() error {
		switch {
		case ctx.Err() != nil:
			return errors.New("stopping")
		case !c.Started.Load():
			return errors.New("starting: waiting for the topic's leaders")
		case c.BrokersDown.Load():
			return errors.New("every broker is down, by the Kafka client; nothing delivered since")
		}
		return healthy()
	}
}

// Metrics are the counts, the delivery time and the client's statistics.
func (c *Counts) Metrics(recovered func() int64) []prometheus.Collector {
	return []prometheus.Collector{c.Delivery, c.Stats,
		Counter("producer_events_sent_total", "Events the Kafka client accepted.", &c.Attempted),
		Counter("producer_events_delivered_total", "Events acknowledged by all in-sync replicas.", &c.Acked),
		Counter("producer_events_failed_total", "Events surely not written.", &c.Failed),
		Counter("producer_events_unconfirmed_total", "Events maybe written: timed out or purged in flight.", &c.Unknown),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "producer_recoveries_total",
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
