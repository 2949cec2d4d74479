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
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/consumer/dedup"
	"github.com/event-driven-go/kafka-go/consumer/dlq"
	"github.com/event-driven-go/kafka-go/consumer/event"
	"github.com/event-driven-go/kafka-go/consumer/latency"
)

// shutdownBudget bounds Close as a whole (commit, leaving the group,
// closing the consumer, flushing the dead-letter producer), well inside
// the 10 s that docker stop grants.
const shutdownBudget = 5 * time.Second

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
	// StallAfter is how long a partition with something to read may
	// deliver nothing before the client counts as stalled; 0 means 15 s.
	StallAfter time.Duration
	// Admin makes EnsureTopics' admin requests; nil uses the dead-letter producer's client.
	Admin Admin
	// Kafka holds librdkafka properties: bootstrap.servers and any overrides.
	Kafka kafka.ConfigMap
}

// Result counts what one run did.
type Result struct {
	Received     int64 // events handled, duplicates included
	Duplicates   int64 // events whose id was seen before in this run
	DeadLettered int64 // messages written to the dead-letter topic
	Recovered    int64 // times a stalled client was re-created
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
	c        *kafka.Consumer
	cm       kafka.ConfigMap // the consumer's configuration, to re-create it
	dlq      *dlq.Writer
	dlqProps kafka.ConfigMap // the dead-letter producer's, to size it
	pending  map[int32]*deadLetter
	stall    stallWatch
	// uncommitted counts the offsets stored since the last successful
	// commit, for a second stop signal to say what it gives up.
	uncommitted atomic.Int64
	dec         event.Decoder
	keys        keyer
	seen        *dedup.Window[eventKey]
	log         *slog.Logger
	opts        Options
	now         func() time.Time
	res         Result

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
		pending:  map[int32]*deadLetter{},
		stall:    newStallWatch(opts.StallAfter),
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
		if !consumerOnly(k) {
			dm[k] = v
		}
	}
	// EnsureTopics replaces this writer with one sized for the topic.
	w, err := dlq.New(opts.DLQTopic, dm, 0, log)
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	r.c, r.cm, r.dlq, r.dlqProps = c, cm, w, dm
	go r.forwardLogs()
	return r, nil
}

// consumerOnly tells the librdkafka properties only consumers have (scope
// "C" in librdkafka's CONFIGURATION.md), which the dead-letter producer is
// not given; allow.auto.create.topics has both scopes, but the producer
// must not create the dead-letter topic with the broker's defaults.
func consumerOnly(key string) bool {
	switch key {
	case "partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms",
		"coordinator.query.interval.ms", "max.poll.interval.ms", "auto.commit.interval.ms",
		"queued.min.messages", "queued.max.messages.kbytes", "max.partition.fetch.bytes",
		"isolation.level", "enable.partition.eof", "check.crcs", "auto.offset.reset", "allow.auto.create.topics":
		return true
	}
	return strings.HasPrefix(key, "group.") || strings.HasPrefix(key, "fetch.") || strings.HasPrefix(key, "enable.auto.")
}

// EnsureTopics creates the topic and the dead-letter topic unless they
// exist, so that the consumer can start before the producer, and gives the
// dead-letter topic and producer room for anything the topic accepts. Its
// errors say whether Kafka was out of reach within timeout or refused.
func (r *Receiver) EnsureTopics(ctx context.Context, timeout time.Duration) error {
	limit, err := r.sizeTopics(ctx, timeout)
	if err != nil {
		return err
	}
	// A producer's message.max.bytes is fixed when it is created.
	w, err := dlq.New(r.opts.DLQTopic, r.dlqProps, limit, r.log)
	if err != nil {
		return err
	}
	r.dlq.Close(0)
	r.dlq = w
	return nil
}

func (r *Receiver) sizeTopics(ctx context.Context, timeout time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s := setup{p: r.dlq.Producer(), admin: r.opts.Admin, servers: fmt.Sprint(r.opts.Kafka["bootstrap.servers"]), timeout: timeout, log: r.log}
	if s.admin == nil {
		a, err := kafka.NewAdminClientFromProducer(r.dlq.Producer())
		if err != nil {
			return 0, fmt.Errorf("create admin client: %w", err)
		}
		defer a.Close()
		s.admin = a
	}
	return s.topics(ctx, r.opts.Topic, r.opts.DLQTopic)
}

// Run consumes until Count events were received or ctx ends, then commits
// and closes. It returns an error for a fatal client error or a message
// the dead-letter topic refused; that message's offset is never committed.
func (r *Receiver) Run(ctx context.Context) (Result, error) {
	err := r.consume(ctx)
	r.Close()
	if r.res.Received > 0 {
		r.res.Elapsed = r.last.Sub(r.first)
	}
	return r.res, err
}

func (r *Receiver) subscribe() error {
	if err := r.c.SubscribeTopics([]string{r.opts.Topic}, r.rebalanced); err != nil {
		return fmt.Errorf("subscribe to %q: %w", r.opts.Topic, err)
	}
	return nil
}

func (r *Receiver) consume(ctx context.Context) error {
	if err := r.subscribe(); err != nil {
		return err
	}
	for ctx.Err() == nil && (r.opts.Count == 0 || r.res.Received < int64(r.opts.Count)) {
		switch e := r.c.Poll(100).(type) {
		case *kafka.Message:
			r.stall.seen(e.TopicPartition.Partition)
			if err := r.handle(e); err != nil {
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
		if err := r.deadLetters(); err != nil {
			return err
		}
		if err := r.checkStall(ctx); err != nil {
			return err
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
	r.uncommitted.Store(0)
	for _, tp := range e.Offsets {
		if tp.Error != nil {
			r.log.Warn("Commit failed for a partition", "partition", tp.Partition, "offset", int64(tp.Offset), "err", tp.Error)
		}
	}
}

// handle decodes and handles one message and stores its offset, or starts
// writing it to the dead-letter topic.
func (r *Receiver) handle(m *kafka.Message) error {
	ev, err := r.dec.Decode(m.Value, m.Headers)
	if err != nil {
		return r.deadLetter(m, err)
	}
	r.receive(ev, m)
	r.store(m)
	return nil
}

// store stores the offset after m, for the next commit.
func (r *Receiver) store(m *kafka.Message) {
	if _, err := r.c.StoreMessage(m); err != nil {
		// The partition was taken away meanwhile; its new owner reads the
		// event again, as at-least-once allows.
		r.log.Warn("Offset not stored", "partition", m.TopicPartition.Partition,
			"offset", int64(m.TopicPartition.Offset), "err", err)
		return
	}
	r.uncommitted.Add(1)
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
// partitions are given away, so that their next owner starts after it
// (librdkafka commits the stored offsets of removed partitions too, in the
// background; this commit returns only once the broker answered).
// A dead-letter write still pending for a partition that goes is given up:
// its offset was never stored, so the next owner reads the message again.
func (r *Receiver) rebalanced(c *kafka.Consumer, e kafka.Event) error {
	switch e := e.(type) {
	case kafka.AssignedPartitions:
		r.stall.assigned(e.Partitions)
		r.log.Info("Partitions assigned", "partitions", partitions(e.Partitions))
	case kafka.RevokedPartitions:
		for _, tp := range e.Partitions {
			if _, ok := r.pending[tp.Partition]; ok {
				delete(r.pending, tp.Partition)
				// Should the partition come back, it must not come back paused.
				_ = c.Resume([]kafka.TopicPartition{tp})
			}
		}
		r.stall.revoked(e.Partitions)
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
		return
	}
	r.uncommitted.Store(0)
}

// Uncommitted is about how many events were handled since the last
// successful commit: what a crash now would deliver again. It is safe to
// call from any goroutine.
func (r *Receiver) Uncommitted() int64 { return r.uncommitted.Load() }

// Close commits the stored offsets, leaves the group and closes both
// clients, within shutdownBudget: the steps that take a timeout get what
// is left of it, and should one outlast it, Close returns and leaves the
// clients to the end of the process. Run calls it; call it yourself only
// when Run is never called.
func (r *Receiver) Close() {
	deadline := time.Now().Add(shutdownBudget)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.closeConsumer(deadline)
		r.dlq.Close(max(time.Until(deadline), 0))
		close(r.logs) // both clients are closed: nothing writes to it any more
		<-r.logsDone
	}()
	select {
	case <-done:
	case <-time.After(shutdownBudget):
		r.log.Warn("Kafka clients still closing after the shutdown budget; leaving them", "budget", shutdownBudget)
	}
}

// closeConsumer commits the stored offsets, leaves the group and closes
// the consumer.
func (r *Receiver) closeConsumer(deadline time.Time) {
	r.commit()
	// Give the partitions up before closing: closing a consumer while a
	// rebalance is still pending can hang inside librdkafka.
	if err := r.c.Unsubscribe(); err == nil {
		for time.Now().Before(deadline) {
			if a, err := r.c.Assignment(); err != nil || len(a) == 0 {
				break
			}
			r.c.Poll(100)
		}
	}
	if err := r.c.Close(); err != nil {
		r.log.Warn("Consumer close", "err", err)
	}
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
