// Package receiver consumes timestamp events from Kafka in a consumer group,
// at least once: an event's offset is stored only after the event was
// handled or written to the dead-letter topic, and stored offsets are
// committed in the background, before partitions are given away, and on
// close. After a crash the events handled since the last commit arrive
// again; nothing is skipped.
//
// What stops the consumer: a fatal client error, and a dead-letter write
// that only a person can make succeed. A bad message never does.
package receiver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/consumer/internal/event"
)

// shutdownBudget bounds Close as a whole, well inside docker stop's 10 s.
const shutdownBudget = 5 * time.Second

// storeEvery is how many handled events share one StoreOffsets call.
const storeEvery = 500

// maxSources bounds the duplicate detection's memory; a restarted
// producer is a new source, so old ones pile up.
const maxSources = 10_000

// Options configures a Receiver.
type Options struct {
	Topic, DLQTopic, Group string
	Count                  int  // stop after this many events; 0 runs until the context ends
	LogEvents              bool // log "Received: ..." for each event
	// StallAfter is how long a partition with something to read may
	// deliver nothing before the client counts as stalled; 0 means 15 s.
	StallAfter time.Duration
	Admin      Admin           // makes EnsureTopics' requests; nil: the cluster's admin API
	Kafka      kafka.ConfigMap // bootstrap.servers and any -X overrides
}

// Result counts what one run did.
type Result struct {
	Received, Duplicates, DeadLettered, Recovered int64
	Elapsed                                       time.Duration // from the first event received to the last
}

// Receiver owns a group consumer and the producer of its dead-letter topic.
type Receiver struct {
	c            *kafka.Consumer
	cm, dlqProps kafka.ConfigMap // to re-create the clients
	dlq          *kafka.Producer
	opts         Options
	log          *slog.Logger
	now          func() time.Time
	res          Result
	first, last  time.Time
	storeEvery   int
	toStore      map[int32]kafka.TopicPartition // per partition, the offset after the last event handled
	unstored     int64
	storedAt     time.Time
	uncommitted  atomic.Int64 // events handled since the last commit, for a cut-short shutdown to name
	highest      map[fromSource]uint64
	pending      map[int32]*deadLetter
	stall        stallWatch
	logs         chan kafka.LogEvent // librdkafka's log lines of both clients
	logsDone     chan struct{}
}

// fromSource is where duplicates are looked for: ids count up per source,
// and one partition keeps a source's events in order.
type fromSource struct {
	partition int32
	source    string
}

// New creates the consumer and the dead-letter producer. Errors here come
// from the client configuration.
func New(opts Options, log *slog.Logger) (*Receiver, error) {
	r := &Receiver{opts: opts, log: log, now: time.Now, storeEvery: storeEvery,
		toStore: map[int32]kafka.TopicPartition{}, highest: map[fromSource]uint64{}, pending: map[int32]*deadLetter{},
		stall: stallWatch{after: cmp.Or(opts.StallAfter, 15*time.Second), last: map[int32]time.Time{}, quiet: map[int32]time.Time{}},
		logs:  make(chan kafka.LogEvent, 1000), logsDone: make(chan struct{})}
	r.cm = kafka.ConfigMap{
		// Start from the oldest event when the group has no offset yet, so
		// that events sent while no consumer ran are not skipped.
		"auto.offset.reset":    "earliest",
		"log.connection.close": false,
		// librdkafka pauses a second before refilling a full local queue,
		// which stalls a fast reader (132k instead of 300k events/s here).
		"fetch.queue.backoff.ms": 100,
		// partition.assignment.strategy stays the eager default: closing an
		// evicted cooperative-sticky member mid-rebalance can hang.
	}
	r.dlqProps = kafka.ConfigMap{"go.logs.channel.enable": true, "go.logs.channel": r.logs}
	for k, v := range opts.Kafka {
		r.cm[k] = v
		if !consumerOnly(k) {
			r.dlqProps[k] = v
		}
	}
	// At-least-once: handle stores each offset after its event was handled
	// (or dead-lettered); the background commit sends stored offsets only.
	r.cm["enable.auto.offset.store"] = false
	r.cm["enable.auto.commit"] = true
	r.cm["group.id"] = opts.Group
	r.cm["go.logs.channel.enable"] = true
	r.cm["go.logs.channel"] = r.logs
	var err error
	if r.c, err = kafka.NewConsumer(&r.cm); err != nil {
		return nil, fmt.Errorf("create consumer: %w", err)
	}
	if r.dlq, err = newDeadLetterProducer(r.dlqProps, 0); err != nil {
		_ = r.c.Close()
		return nil, err
	}
	go r.forwardLogs()
	return r, nil
}

// consumerOnly tells the librdkafka properties only consumers have, which
// the dead-letter producer is not given; allow.auto.create.topics has both
// scopes, but the producer must not create the dead-letter topic.
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

// Run consumes until Count events were received or ctx ends, then commits
// and closes. It returns an error for a fatal client error or a message
// the dead-letter topic refused; that message's offset is never committed.
func (r *Receiver) Run(ctx context.Context) (Result, error) {
	err := r.consume(ctx)
	r.Close()
	r.res.Elapsed = r.last.Sub(r.first)
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
			r.stall.last[e.TopicPartition.Partition] = time.Now()
			if err := r.handle(e); err != nil {
				return err
			}
		case kafka.Error:
			if e.IsFatal() {
				return fmt.Errorf("fatal consumer error: %w", e)
			}
			r.log.Warn("Kafka client error, retrying", "err", e)
		case kafka.OffsetsCommitted:
			r.committed(e.Error, e.Offsets)
		case nil:
			r.store() // idle: nothing to batch with
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

// handle is the tutorial's handler, "Received: 15:04:05", followed by the
// Kafka lesson: the offset is remembered for storing only now that the event
// was handled. A message that cannot be decoded goes to the dead-letter path.
func (r *Receiver) handle(m *kafka.Message) error {
	ev, err := event.Decode(m.Value, m.Headers)
	if err != nil {
		return r.deadLetter(m, err)
	}
	now := r.now()
	if r.res.Received++; r.res.Received == 1 {
		r.first = now
	}
	r.last = now
	p := m.TopicPartition.Partition
	// Our producer's ids count up per source; an id at or below the highest
	// handled is a copy. Other producers' ids (not numbers) are not checked.
	dup := false
	if id, err := strconv.ParseUint(ev.ID, 10, 64); err == nil {
		k := fromSource{p, ev.Source}
		high, ok := r.highest[k]
		if dup = ok && id <= high; dup {
			r.res.Duplicates++
		} else if len(r.highest) >= maxSources && !ok {
			clear(r.highest)
		}
		r.highest[k] = max(high, id)
	}
	if r.opts.LogEvents {
		attrs := make([]any, 0, 10)
		if ev.ID != "" {
			attrs = append(attrs, "id", ev.ID)
		}
		attrs = append(attrs, "partition", p, "offset", int64(m.TopicPartition.Offset))
		if !ev.Time.IsZero() {
			attrs = append(attrs, "latency", now.Sub(ev.Time).Round(time.Microsecond))
		}
		if dup {
			attrs = append(attrs, "duplicate", true)
		}
		r.log.Info("Received: "+ev.Timestamp, attrs...)
	}
	r.handled(m)
	return nil
}

// handled remembers m's offset for the next store. Offsets are stored in
// batches (one cgo call per storeEvery events, or per second), not per event.
func (r *Receiver) handled(m *kafka.Message) {
	tp := m.TopicPartition
	tp.Offset++
	r.toStore[tp.Partition] = tp
	r.uncommitted.Add(1)
	if r.unstored++; r.unstored >= int64(r.storeEvery) || time.Since(r.storedAt) > time.Second {
		r.store()
	}
}

// store stores the offsets after the events handled, for the next commit.
func (r *Receiver) store() {
	r.storedAt = time.Now()
	if len(r.toStore) == 0 {
		return
	}
	tps := make([]kafka.TopicPartition, 0, len(r.toStore))
	for _, tp := range r.toStore {
		tps = append(tps, tp)
	}
	clear(r.toStore)
	r.unstored = 0
	if _, err := r.c.StoreOffsets(tps); err != nil {
		// A partition was taken away meanwhile; its new owner reads the
		// events again, as at-least-once allows.
		r.log.Warn("Offsets not stored", "offsets", fmt.Sprint(tps), "err", err)
	}
}

// committed reports a commit that failed: until a later one succeeds, a
// restart would deliver the events since the last commit again.
func (r *Receiver) committed(err error, offsets []kafka.TopicPartition) {
	var kerr kafka.Error
	if err != nil && !(errors.As(err, &kerr) && kerr.Code() == kafka.ErrNoOffset) {
		r.log.Warn("Commit failed; events handled since the last commit will be delivered again", "err", err)
		return
	}
	r.uncommitted.Store(r.unstored)
	for _, tp := range offsets {
		if tp.Error != nil {
			r.log.Warn("Commit failed for a partition", "partition", tp.Partition, "offset", int64(tp.Offset), "err", tp.Error)
		}
	}
}

// commit stores and commits what was handled, now.
func (r *Receiver) commit() {
	r.store()
	offsets, err := r.c.Commit()
	r.committed(err, offsets)
}

// rebalanced commits what was handled before partitions are given away, so
// that their next owner starts after it. A dead-letter write still pending
// for a partition that goes is given up: its offset was never stored, so
// the next owner reads the message again.
func (r *Receiver) rebalanced(c *kafka.Consumer, e kafka.Event) error {
	switch e := e.(type) {
	case kafka.AssignedPartitions:
		for _, tp := range e.Partitions {
			r.stall.last[tp.Partition] = time.Now()
		}
		r.log.Info("Partitions assigned", "partitions", partitions(e.Partitions))
	case kafka.RevokedPartitions:
		if !c.AssignmentLost() {
			r.commit()
		}
		for _, tp := range e.Partitions {
			if r.pending[tp.Partition] != nil {
				delete(r.pending, tp.Partition)
				_ = c.Resume([]kafka.TopicPartition{tp}) // should it come back, not paused
			}
			delete(r.toStore, tp.Partition)
			delete(r.stall.last, tp.Partition)
			delete(r.stall.quiet, tp.Partition)
		}
		r.log.Info("Partitions revoked", "partitions", partitions(e.Partitions), "lost", c.AssignmentLost())
	}
	return nil // the client applies the assignment itself
}

// Uncommitted is about how many events were handled since the last
// successful commit: what a crash now would deliver again. Safe from any goroutine.
func (r *Receiver) Uncommitted() int64 { return r.uncommitted.Load() }

// Close commits, leaves the group and closes both clients within
// shutdownBudget; should a step outlast it, Close leaves the clients to the
// end of the process. Run calls it; call it only when Run is never called.
func (r *Receiver) Close() {
	deadline, closed := time.Now().Add(shutdownBudget), make(chan struct{})
	go func() {
		defer close(closed)
		r.closeConsumer(deadline)
		// Writes still pending never had their offsets stored: their messages come again.
		_ = r.dlq.Purge(kafka.PurgeQueue | kafka.PurgeInFlight)
		r.dlq.Close()
		close(r.logs) // both clients are closed: nothing writes to it any more
		<-r.logsDone
	}()
	select {
	case <-closed:
	case <-time.After(shutdownBudget):
		r.log.Warn("Kafka clients still closing after the shutdown budget; leaving them", "budget", shutdownBudget)
	}
}

// closeConsumer commits, leaves the group and closes the consumer.
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
