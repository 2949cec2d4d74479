// Package receiver consumes timestamp events from Kafka in a consumer group,
// at least once: an offset is stored only after its event was handled or
// dead-lettered, and stored offsets are committed in the background, before
// partitions are given away, and on close. After a crash the events handled
// since the last commit arrive again; none is skipped. A fatal client error
// and a dead-letter write only a person can fix stop it; a bad message never.
package receiver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/consumer/internal/event"
)

const (
	shutdownBudget = 5 * time.Second // for Close as a whole, inside docker stop's 10 s
	storeEvery     = 500             // handled events per StoreOffsets call
	maxSources     = 10_000          // (partition, source) pairs remembered for duplicates
)

// Options configures a Receiver.
type Options struct {
	Topic, DLQTopic, Group string
	Count                  int           // stop after this many events; 0: until ctx ends
	LogEvents              bool          // log "Received: ..." for each event
	StallAfter             time.Duration // silence that counts as a leader stall; 0: 15 s
	Admin                  Admin         // nil: the cluster's admin API
	Kafka                  kafka.ConfigMap
}

// Result counts what one run did; Elapsed runs from the first event to the last.
type Result struct {
	Received, Duplicates, DeadLettered, Recovered int64
	Elapsed                                       time.Duration
}

// Receiver owns a group consumer and the producer of its dead-letter topic.
type Receiver struct {
	c            *kafka.Consumer
	dlq          *kafka.Producer
	cm, dlqProps kafka.ConfigMap
	opts         Options
	log          *slog.Logger
	now          func() time.Time
	res          Result
	first, last  time.Time
	storeEvery   int
	toStore      map[int32]kafka.TopicPartition // offset after the last event handled, per partition
	unstored     int64
	storedAt     time.Time
	uncommitted  atomic.Int64 // events handled since the last commit
	highest      map[fromSource]uint64
	pending      map[int32]*deadLetter
	stall        stallWatch
	logs         chan kafka.LogEvent // librdkafka's lines, of both clients
	logsDone     chan struct{}
}

// fromSource is where ids count up: one source's events on one partition.
type fromSource struct {
	partition int32
	source    string
}

// New creates the consumer and the dead-letter producer; its errors come
// from the client configuration.
func New(opts Options, log *slog.Logger) (*Receiver, error) {
	r := &Receiver{opts: opts, log: log, now: time.Now, storeEvery: storeEvery, toStore: map[int32]kafka.TopicPartition{},
		highest: map[fromSource]uint64{}, pending: map[int32]*deadLetter{}, logs: make(chan kafka.LogEvent, 1000), logsDone: make(chan struct{}),
		stall: stallWatch{after: cmp.Or(opts.StallAfter, 15*time.Second), last: map[int32]time.Time{}, quiet: map[int32]time.Time{}}}
	// Start from the oldest event when the group has no offset yet, so that
	// events sent while no consumer ran are not skipped. librdkafka waits a
	// second to refill a full local queue, which stalls a fast reader.
	r.cm = kafka.ConfigMap{"auto.offset.reset": "earliest", "log.connection.close": false, "fetch.queue.backoff.ms": 100}
	r.dlqProps = kafka.ConfigMap{"go.logs.channel.enable": true, "go.logs.channel": r.logs}
	for k, v := range opts.Kafka {
		r.cm[k] = v
		if !consumerOnly(k) {
			r.dlqProps[k] = v
		}
	}
	// At-least-once: handle stores offsets itself, after handling; the
	// background commit sends stored offsets only.
	for k, v := range map[string]any{"enable.auto.offset.store": false, "enable.auto.commit": true, "group.id": opts.Group,
		"go.logs.channel.enable": true, "go.logs.channel": r.logs} {
		r.cm[k] = v
	}
	var err error
	if r.c, err = kafka.NewConsumer(&r.cm); err != nil {
		return nil, fmt.Errorf("create consumer: %w", err)
	}
	if r.dlq, err = newDeadLetterProducer(r.dlqProps, 0); err != nil {
		_ = r.c.Close()
		return nil, err
	}
	go func() { // librdkafka's errors as warnings (the client recovers), the rest at debug level
		defer close(r.logsDone)
		for l := range r.logs {
			level := slog.LevelDebug
			if l.Level <= 3 {
				level = slog.LevelWarn
			}
			r.log.Log(context.Background(), level, "librdkafka: "+l.Message, "client", l.Name, "facility", l.Tag)
		}
	}()
	return r, nil
}

// consumerOnly tells the properties only consumers have, kept off the
// dead-letter producer (and allow.auto.create.topics: it must not create its topic).
func consumerOnly(k string) bool {
	return strings.HasPrefix(k, "group.") || strings.HasPrefix(k, "fetch.") || strings.HasPrefix(k, "enable.auto.") ||
		slices.Contains([]string{"partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms",
			"coordinator.query.interval.ms", "max.poll.interval.ms", "auto.commit.interval.ms", "queued.min.messages",
			"queued.max.messages.kbytes", "max.partition.fetch.bytes", "isolation.level", "enable.partition.eof",
			"check.crcs", "auto.offset.reset", "allow.auto.create.topics"}, k)
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
		var err error
		switch e := r.c.Poll(100).(type) {
		case *kafka.Message:
			r.stall.last[e.TopicPartition.Partition] = time.Now()
			err = r.handle(e)
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
		if err != nil {
			return err
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

// handle is the tutorial's handler: print "Received: 15:04:05". A message
// that cannot be decoded takes the dead-letter path instead.
func (r *Receiver) handle(m *kafka.Message) error {
	ev, err := event.Decode(m.Value, m.Headers)
	if err != nil {
		return r.deadLetter(m, err)
	}
	now, p := r.now(), m.TopicPartition.Partition
	if r.res.Received++; r.res.Received == 1 {
		r.first = now
	}
	r.last = now
	// Our producer's ids count up per source, in order on a partition: an id
	// at or below the highest handled is a copy, counted but still handled.
	// Other producers' ids (not numbers) are not checked.
	dup := false
	if id, err := strconv.ParseUint(ev.ID, 10, 64); err == nil {
		k := fromSource{p, ev.Source}
		high, ok := r.highest[k]
		if dup = ok && id <= high; dup {
			r.res.Duplicates++
		} else if !ok && len(r.highest) >= maxSources {
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

// handled marks m's offset for storing, now that it was handled. Offsets
// are stored in batches, one cgo call per storeEvery events or per second.
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
	r.storedAt, r.unstored = time.Now(), 0
	if len(r.toStore) == 0 {
		return
	}
	tps := make([]kafka.TopicPartition, 0, len(r.toStore))
	for _, tp := range r.toStore {
		tps = append(tps, tp)
	}
	clear(r.toStore)
	if _, err := r.c.StoreOffsets(tps); err != nil { // a partition went meanwhile: its next owner reads them again
		r.log.Warn("Offsets not stored", "offsets", fmt.Sprint(tps), "err", err)
	}
}

// committed reports a commit that failed: until one succeeds, a restart
// would deliver the events since the last commit again.
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

// rebalanced stores and commits what was handled before partitions go, so
// that their next owner starts after it. A dead-letter write pending for a
// partition that goes is given up: its offset was never stored, so the
// next owner reads the message again.
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
	return nil
}

func (r *Receiver) commit() {
	r.store()
	offsets, err := r.c.Commit()
	r.committed(err, offsets)
}

// Uncommitted is about how many events a crash now would deliver again;
// safe from any goroutine.
func (r *Receiver) Uncommitted() int64 { return r.uncommitted.Load() }

// Close commits, leaves the group and closes both clients within
// shutdownBudget, or leaves them to the end of the process. Run calls it.
func (r *Receiver) Close() {
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		r.closeConsumer(time.Now().Add(shutdownBudget))
		// Pending writes never had their offsets stored: their messages come again.
		_ = r.dlq.Purge(kafka.PurgeQueue | kafka.PurgeInFlight)
		r.dlq.Close()
		close(r.logs) // nothing writes to it any more
		<-r.logsDone
	}()
	select {
	case <-closed:
	case <-time.After(shutdownBudget):
		r.log.Warn("Kafka clients still closing after the shutdown budget; leaving them", "budget", shutdownBudget)
	}
}

// closeConsumer commits and gives the partitions up before closing: closing
// a consumer while a rebalance is pending can hang inside librdkafka.
func (r *Receiver) closeConsumer(deadline time.Time) {
	r.commit()
	if err := r.c.Unsubscribe(); err == nil {
		for a, err := r.c.Assignment(); err == nil && len(a) > 0 && time.Now().Before(deadline); a, err = r.c.Assignment() {
			r.c.Poll(100)
		}
	}
	if err := r.c.Close(); err != nil {
		r.log.Warn("Consumer close", "err", err)
	}
}

func partitions(tps []kafka.TopicPartition) string {
	s := make([]string, len(tps))
	for i, tp := range tps {
		s[i] = fmt.Sprintf("%s[%d]", *tp.Topic, tp.Partition)
	}
	return strings.Join(s, ",")
}
