// Package receiver consumes timestamp events from Kafka in a consumer group,
// at least once: an event's offset is stored only after the event was
// handled or written to the dead-letter topic, and stored offsets are
// committed in the background, before partitions are given away, and on
// close. After a crash the events handled since the last commit arrive
// again; nothing is skipped.
package receiver

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/consumer/dedup"
	"github.com/event-driven-go/kafka-go/consumer/dlq"
	"github.com/event-driven-go/kafka-go/consumer/event"
	"github.com/event-driven-go/kafka-go/consumer/latency"
)

// closeTimeout bounds the wait for the group to take the partitions back on Close.
const closeTimeout = 3 * time.Second

// Options configures a Receiver.
type Options struct {
	Topic    string
	DLQTopic string // where undecodable messages go
	Group    string
	Count    int // stop after this many events received; 0 runs until the context ends
	// DedupWindow is how many recent event ids are remembered to detect duplicates.
	DedupWindow int
	// Warmup is left out of the latency summary: events received in the
	// first Warmup after the first event.
	Warmup    time.Duration
	LogEvents bool // log "Received: ..." for each event
	// Kafka holds librdkafka properties: bootstrap.servers and any overrides.
	Kafka kafka.ConfigMap
}

// Result counts what one run did.
type Result struct {
	Received     int64 // events handled, duplicates included
	Duplicates   int64 // events whose id was seen before in this run
	DeadLettered int64 // messages written to the dead-letter topic
	// Elapsed runs from the first event received to the last.
	Elapsed time.Duration
	// Latency holds the end-to-end latencies (receive time minus the
	// event's ce_time) of the events received after the warm-up; events
	// without ce_time have none.
	Latency *latency.Histogram
}

// Rate is the events received per second over Elapsed; 0 for fewer than two events.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 || r.Received < 2 {
		return 0
	}
	// Elapsed spans the gaps between the events, one fewer than the events.
	return float64(r.Received-1) / r.Elapsed.Seconds()
}

// eventKey identifies an event for duplicate detection: a 128-bit digest
// of its source and id (ids are unique per source). A digest holds no
// pointers, so a window of 100,000 of them costs the garbage collector
// nothing to scan; two events share one with odds of about 1 in 10^28, and
// a false match would only mark an event as a duplicate, never drop it.
type eventKey [2]uint64

// keyer computes eventKeys with seeds of its own.
type keyer struct{ a, b maphash.Seed }

func newKeyer() keyer { return keyer{maphash.MakeSeed(), maphash.MakeSeed()} }

func (k keyer) key(source, id string) eventKey {
	v := struct{ source, id string }{source, id}
	return eventKey{maphash.Comparable(k.a, v), maphash.Comparable(k.b, v)}
}

// Receiver owns a group consumer and the producer of its dead-letter topic.
type Receiver struct {
	c    *kafka.Consumer
	dlq  *dlq.Writer
	dec  event.Decoder
	keys keyer
	seen *dedup.Window[eventKey]
	log  *slog.Logger
	opts Options
	now  func() time.Time
	res  Result

	first, last time.Time // when the first and the latest event arrived

	logs     chan kafka.LogEvent // librdkafka log lines of both clients
	logsDone chan struct{}
}

// New creates the consumer and the dead-letter writer. Errors here come
// from the client configuration.
func New(opts Options, log *slog.Logger) (*Receiver, error) {
	r := &Receiver{
		keys:     newKeyer(),
		seen:     dedup.New[eventKey](opts.DedupWindow),
		res:      Result{Latency: new(latency.Histogram)},
		log:      log,
		opts:     opts,
		now:      time.Now,
		logs:     make(chan kafka.LogEvent, 1000),
		logsDone: make(chan struct{}),
	}
	cm := kafka.ConfigMap{
		// Start from the oldest event when the group has no offset yet, so
		// that events sent while no consumer ran are not skipped.
		"auto.offset.reset":    "earliest",
		"log.connection.close": false,
		// Once the local queue holds queued.min.messages, librdkafka pauses
		// fetching for this long: its default of a second turns every
		// refill of a fast reader into a stall (132k instead of 300k
		// events/s over a backlog here); a tenth keeps the queue fed.
		"fetch.queue.backoff.ms": 100,
		// partition.assignment.strategy stays librdkafka's eager default:
		// with cooperative-sticky, closing a consumer that was evicted in
		// the middle of a rebalance can hang in incremental unassign.
	}
	for k, v := range opts.Kafka {
		cm[k] = v
	}
	cm["group.id"] = opts.Group
	// At-least-once: the offset of a message is stored by handle, after
	// the event was handled; the background commit sends stored offsets only.
	cm["enable.auto.offset.store"] = false
	cm["enable.auto.commit"] = true
	cm["go.logs.channel.enable"] = true
	cm["go.logs.channel"] = r.logs
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return nil, fmt.Errorf("create consumer: %w", err)
	}
	dm := kafka.ConfigMap{"go.logs.channel.enable": true, "go.logs.channel": r.logs}
	for k, v := range opts.Kafka {
		dm[k] = v
	}
	w, err := dlq.New(opts.DLQTopic, dm, log)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	r.c, r.dlq = c, w
	go r.forwardLogs()
	return r, nil
}

// EnsureTopics creates the topic and the dead-letter topic unless they
// exist, so that the consumer can start before the producer.
func (r *Receiver) EnsureTopics(ctx context.Context) error {
	for _, t := range []string{r.opts.Topic, r.opts.DLQTopic} {
		if err := ensureTopic(ctx, r.dlq.Producer(), t, r.log); err != nil {
			return err
		}
	}
	return nil
}

// Run consumes until Count events were received or ctx ends, then commits
// and closes. It returns an error only for a fatal client error.
func (r *Receiver) Run(ctx context.Context) (Result, error) {
	err := r.consume(ctx)
	r.Close()
	if r.res.Received > 0 {
		r.res.Elapsed = r.last.Sub(r.first)
	}
	return r.res, err
}

func (r *Receiver) consume(ctx context.Context) error {
	if err := r.c.SubscribeTopics([]string{r.opts.Topic}, r.rebalanced); err != nil {
		return fmt.Errorf("subscribe to %q: %w", r.opts.Topic, err)
	}
	for ctx.Err() == nil && (r.opts.Count == 0 || r.res.Received < int64(r.opts.Count)) {
		switch e := r.c.Poll(100).(type) {
		case *kafka.Message:
			if err := r.handle(ctx, e); err != nil {
				if ctx.Err() != nil {
					return nil // stopping: the message was not stored and comes again
				}
				return err
			}
		case kafka.Error:
			if e.IsFatal() {
				return fmt.Errorf("fatal consumer error: %w", e)
			}
			r.log.Warn("Kafka client error, retrying", "err", e)
		case kafka.OffsetsCommitted:
			r.committed(e)
		}
	}
	return nil
}

// committed reports a background commit that failed: until a later one
// succeeds, a restart would deliver the events since the last commit again.
func (r *Receiver) committed(e kafka.OffsetsCommitted) {
	var kerr kafka.Error
	if e.Error != nil && !(errors.As(e.Error, &kerr) && kerr.Code() == kafka.ErrNoOffset) {
		r.log.Warn("Commit failed; events handled since the last commit will be delivered again", "err", e.Error)
		return
	}
	for _, tp := range e.Offsets {
		if tp.Error != nil {
			r.log.Warn("Commit failed for a partition", "partition", tp.Partition, "offset", int64(tp.Offset), "err", tp.Error)
		}
	}
}

// handle decodes and handles one message, or dead-letters it, and only then
// stores its offset.
func (r *Receiver) handle(ctx context.Context, m *kafka.Message) error {
	ev, err := r.dec.Decode(m.Value, m.Headers)
	if err != nil {
		if err := r.dlq.Write(ctx, m, err); err != nil {
			return fmt.Errorf("dead-letter offset %d of %s: %w", m.TopicPartition.Offset, m.TopicPartition, err)
		}
		r.res.DeadLettered++
		r.log.Warn("Dead-lettered", "reason", err, "partition", m.TopicPartition.Partition,
			"offset", int64(m.TopicPartition.Offset), "dlq", r.dlq.Topic())
	} else {
		r.receive(ev, m)
	}
	if _, err := r.c.StoreMessage(m); err != nil {
		// The partition was taken away meanwhile; its new owner reads the
		// event again, as at-least-once allows.
		r.log.Warn("Offset not stored", "partition", m.TopicPartition.Partition,
			"offset", int64(m.TopicPartition.Offset), "err", err)
	}
	return nil
}

// receive is the handler of the tutorial: print the timestamp.
// Everything it does for an event that is not printed allocates nothing.
func (r *Receiver) receive(ev event.Event, m *kafka.Message) {
	now := r.now()
	r.res.Received++
	if r.res.Received == 1 {
		r.first = now
	}
	r.last = now
	var lat time.Duration
	if !ev.Time.IsZero() {
		lat = now.Sub(ev.Time)
		if now.Sub(r.first) >= r.opts.Warmup {
			r.res.Latency.Record(lat)
		}
	}
	dup := ev.ID != "" && r.seen.Seen(r.keys.key(ev.Source, ev.ID))
	if dup {
		r.res.Duplicates++
	}
	if !r.opts.LogEvents {
		return
	}
	attrs := make([]any, 0, 14)
	if !ev.Time.IsZero() {
		attrs = append(attrs, "latency", lat.Round(time.Microsecond))
	}
	if ev.Sequence != 0 {
		attrs = append(attrs, "seq", ev.Sequence)
	}
	if dup {
		attrs = append(attrs, "duplicate", true)
	}
	if ev.ID != "" {
		attrs = append(attrs, "id", ev.ID)
	}
	attrs = append(attrs, "partition", m.TopicPartition.Partition, "offset", int64(m.TopicPartition.Offset))
	r.log.Info("Received: "+ev.Timestamp, attrs...)
}

// rebalanced logs assignments and commits what was handled before
// partitions are given away, so that their next owner starts after it.
func (r *Receiver) rebalanced(c *kafka.Consumer, e kafka.Event) error {
	switch e := e.(type) {
	case kafka.AssignedPartitions:
		r.log.Info("Partitions assigned", "partitions", partitions(e.Partitions))
	case kafka.RevokedPartitions:
		if !c.AssignmentLost() {
			r.commit()
		}
		r.log.Info("Partitions revoked", "partitions", partitions(e.Partitions), "lost", c.AssignmentLost())
	}
	return nil // the client applies the (incremental) assignment itself
}

// commit commits the stored offsets now.
func (r *Receiver) commit() {
	_, err := r.c.Commit()
	var kerr kafka.Error
	if err != nil && !(errors.As(err, &kerr) && kerr.Code() == kafka.ErrNoOffset) {
		r.log.Warn("Commit failed; events handled since the last commit will be delivered again", "err", err)
	}
}

// Close commits the stored offsets, leaves the group and closes both
// clients. Run calls it; call it yourself only when Run is never called.
func (r *Receiver) Close() {
	r.commit()
	// Give the partitions up before closing: closing a consumer while a
	// rebalance is still pending can hang inside librdkafka.
	if err := r.c.Unsubscribe(); err == nil {
		for deadline := time.Now().Add(closeTimeout); time.Now().Before(deadline); {
			if a, err := r.c.Assignment(); err != nil || len(a) == 0 {
				break
			}
			r.c.Poll(100)
		}
	}
	if err := r.c.Close(); err != nil {
		r.log.Warn("Consumer close", "err", err)
	}
	r.dlq.Close()
	close(r.logs) // both clients are closed: nothing writes to it any more
	<-r.logsDone
}

// forwardLogs writes librdkafka's own log lines: errors as warnings (the
// client recovers from them), the rest at debug level.
func (r *Receiver) forwardLogs() {
	defer close(r.logsDone)
	for l := range r.logs {
		level := slog.LevelDebug
		if l.Level <= 3 {
			level = slog.LevelWarn
		}
		r.log.Log(context.Background(), level, "librdkafka: "+l.Message, "client", l.Name, "facility", l.Tag)
	}
}

func partitions(tps []kafka.TopicPartition) string {
	s := make([]string, len(tps))
	for i, tp := range tps {
		s[i] = fmt.Sprintf("%s[%d]", *tp.Topic, tp.Partition)
	}
	return strings.Join(s, ",")
}
