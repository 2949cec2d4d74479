// Package receiver consumes timestamp events from Kafka in a consumer group, at least once:
// after a crash the events handled since the last commit arrive again; none is skipped.
// A fatal client error or a dead letter only a person can fix stops it; a bad message never.
package receiver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/event-driven-go/kafka-go/consumer/internal/config"
	"github.com/event-driven-go/kafka-go/consumer/internal/event"
	"github.com/event-driven-go/kafka-go/consumer/internal/leaderstall"
)

const (
	shutdownBudget = 5 * time.Second // for Close as a whole, inside docker stop's 10 s
	storeEvery     = 500             // handled events per StoreOffsets call
	maxSources     = 10_000          // (partition, source) pairs remembered for duplicates
)

// Result counts what one run did; Elapsed runs from the first event to the last.
type Result struct {
	Received, Duplicates, DeadLettered, Recovered int64
	Elapsed                                       time.Duration
}

// Receiver owns a group consumer and the producer of its dead-letter topic.
type Receiver struct {
	cfg       config.Config
	c         *kafka.Consumer
	dlq       *kafka.Producer
	cm, dlqCM kafka.ConfigMap // to create the clients again
	log       *slog.Logger
	logs      chan kafka.LogEvent // librdkafka's lines, of both clients
	logsDone  chan struct{}
	tracer    trace.Tracer
	now       func() time.Time // the handler's clock
	guard     *leaderstall.Guard
	recreate  chan chan error                // the guard's requests for a new client, answered by the poll loop
	replacing bool                           // while the poll loop replaces the client: no commit can reach the group
	current   atomic.Pointer[kafka.Consumer] // c, for the rebalance callbacks of clients being closed
	closing   sync.WaitGroup                 // the replaced clients' closes

	// Read by /metrics and the watchdog while the loop counts.
	received, duplicates, deadLettered, recovered atomic.Int64
	uncommitted                                   atomic.Int64 // events handled since the last commit
	failed                                        atomic.Pointer[error]
	stats                                         *clientStats
	latency                                       prometheus.Histogram
	rebalances                                    *prometheus.CounterVec

	// The poll loop's own.
	first, last, storedAt time.Time
	storeEvery, unstored  int
	toStore               map[int32]kafka.TopicPartition // offset after the last event handled
	highest               map[fromSource]uint64
	pending               map[int32]*deadLetter
}

// fromSource is where ids count up: one source's events on one partition.
type fromSource struct {
	partition int32
	source    string
}

// New creates the consumer and the dead-letter producer; its errors come from the client
// configuration. tracer starts a process span per event (nil: none).
func New(cfg config.Config, log *slog.Logger, tracer trace.Tracer) (*Receiver, error) {
	every := 5000 // statistics.interval.ms, unless set
	if v, set := cfg.Kafka["statistics.interval.ms"]; set {
		every, _ = strconv.Atoi(v)
	}
	r := &Receiver{cfg: cfg, log: log, now: time.Now, storeEvery: storeEvery, recreate: make(chan chan error),
		toStore: map[int32]kafka.TopicPartition{}, highest: map[fromSource]uint64{}, pending: map[int32]*deadLetter{},
		logs: make(chan kafka.LogEvent, 1000), logsDone: make(chan struct{}),
		stats: newClientStats(time.Duration(every) * time.Millisecond), tracer: cmp.Or(tracer, trace.Tracer(noop.Tracer{})),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "consumer_event_latency_seconds",
			Help: "Time from an event's ce_time (when it was sent) to its handling here.", Buckets: latencyBuckets}),
		rebalances: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "consumer_rebalances_total",
			Help: "Changes of this consumer's assignment, by change: assigned, revoked or lost."}, []string{"change"})}
	// A new group starts from the oldest event: none sent before it is skipped.
	// librdkafka waits a second to refill a full local queue, stalling a fast reader.
	// Readiness, the client's metrics and the leader-stall guard read the client's statistics.
	r.cm = kafka.ConfigMap{"auto.offset.reset": "earliest", "log.connection.close": false, "fetch.queue.backoff.ms": 100,
		"statistics.interval.ms": every}
	r.useProtocol(cfg.GroupProtocol)
	r.dlqCM = kafka.ConfigMap{"bootstrap.servers": cfg.BootstrapServers}
	for k, v := range cfg.Kafka {
		r.cm[k] = v
		if !consumerOnly(k) {
			r.dlqCM[k] = v
		}
	}
	// At-least-once: offsets are stored after handling; the background commit sends stored offsets only.
	maps.Copy(r.cm, kafka.ConfigMap{"enable.auto.offset.store": false, "enable.auto.commit": true, "group.id": cfg.Group,
		"bootstrap.servers": cfg.BootstrapServers, "go.logs.channel.enable": true, "go.logs.channel": r.logs})
	r.guard = leaderstall.New(cfg.Topic, log, leaderstall.Ask(r.dlqCM, cfg.Topic, cfg.Group))
	// A slow but healthy broker answers within request.timeout.ms: no stall is seen before.
	if ms, err := strconv.Atoi(cfg.Kafka["request.timeout.ms"]); err == nil {
		r.guard.After = max(r.guard.After, time.Duration(ms)*time.Millisecond)
	}
	if every <= 0 {
		log.Warn("The leader-stall guard is off: it reads the client's statistics, and statistics.interval.ms is 0")
	}
	var err error
	if r.c, err = kafka.NewConsumer(&r.cm); err != nil {
		return nil, fmt.Errorf("create consumer: %w", err)
	}
	r.current.Store(r.c)
	if r.dlq, err = r.newDeadLetterProducer(); err != nil {
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

// useProtocol sets the group protocol. With consumer (KIP-848) the broker moves only the
// partitions that must move; with classic the members assign them, and cooperative-sticky
// likewise moves only those, without stopping the whole group as the eager assignors do.
func (r *Receiver) useProtocol(protocol string) {
	if protocol == "" {
		return // librdkafka's default, classic
	}
	r.cm["group.protocol"] = protocol
	if _, set := r.cfg.Kafka["partition.assignment.strategy"]; protocol == "classic" && !set {
		r.cm["partition.assignment.strategy"] = "cooperative-sticky"
	}
}

// consumerOnly tells the properties kept off the dead-letter producer, which must not create its topic either.
func consumerOnly(k string) bool {
	return strings.HasPrefix(k, "group.") || strings.HasPrefix(k, "fetch.") || strings.HasPrefix(k, "enable.auto.") ||
		slices.Contains([]string{"partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms",
			"coordinator.query.interval.ms", "max.poll.interval.ms", "auto.commit.interval.ms", "queued.min.messages",
			"queued.max.messages.kbytes", "max.partition.fetch.bytes", "isolation.level", "enable.partition.eof",
			"check.crcs", "auto.offset.reset", "allow.auto.create.topics", "statistics.interval.ms"}, k)
}

// Run consumes until Count events were received or ctx ends, then commits and closes. It
// returns an error for a fatal client error, a message the dead-letter topic refused, or a
// leader stall the client could not be re-created after.
func (r *Receiver) Run(ctx context.Context) (Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var guarding sync.WaitGroup
	guarding.Go(func() {
		if r.guard.Run(ctx, r.askNewClient) != nil {
			cancel()
		}
	})
	err := r.consume(ctx)
	cancel()
	guarding.Wait()
	if err == nil {
		err = r.guard.Healthy() // set when the guard gave up and ended the run
	}
	if err != nil {
		r.failed.Store(&err)
	}
	r.Close()
	return r.result(), err
}

// Failed is closed when the leader-stall guard gave up: the client may hang, so the process must end.
func (r *Receiver) Failed() <-chan struct{} { return r.guard.Failed() }

func (r *Receiver) result() Result {
	return Result{Received: r.received.Load(), Duplicates: r.duplicates.Load(), DeadLettered: r.deadLettered.Load(),
		Recovered: r.recovered.Load(), Elapsed: r.last.Sub(r.first)}
}

func (r *Receiver) consume(ctx context.Context) error {
	err := r.subscribe()
	for err == nil && ctx.Err() == nil && (r.cfg.Count == 0 || r.received.Load() < int64(r.cfg.Count)) {
		ev := r.c.Poll(100)
		now := time.Now() // once per event: four reads were 4.5 % of the CPU at full speed
		switch e := ev.(type) {
		case *kafka.Message:
			err = r.handle(e, now)
		case kafka.Error:
			if e.IsFatal() {
				return fmt.Errorf("fatal consumer error: %w", e)
			}
			r.log.Warn("Kafka client error, retrying", "err", e)
		case kafka.OffsetsCommitted:
			r.committed(e.Error, e.Offsets)
		case *kafka.Stats:
			if err := r.stats.update(e.String(), now); err != nil {
				r.log.Warn("Statistics not understood", "err", err)
			}
			r.guard.Observe(e.String())
		case nil:
			r.store() // idle: nothing to batch with
		}
		if err == nil {
			err = r.deadLetters()
		}
		select {
		case reply := <-r.recreate:
			err = r.newClient() // a failure ends the run: no client is left to poll
			reply <- err
		default:
		}
	}
	return err
}

// handle is the tutorial's handler: print "Received: 15:04:05", or dead-letter what cannot be decoded.
func (r *Receiver) handle(m *kafka.Message, polled time.Time) error {
	// A process span per event, a child of the producer's publish span when the headers carry its traceparent.
	ctx := propagation.TraceContext{}.Extract(context.Background(), headerCarrier(m.Headers))
	ctx, span := r.tracer.Start(ctx, "process "+r.cfg.Topic, trace.WithSpanKind(trace.SpanKindConsumer))
	defer span.End()
	p := m.TopicPartition.Partition
	// Attributes, by OpenTelemetry's messaging conventions, cost only where spans are exported.
	recording := span.IsRecording()
	if recording {
		span.SetAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", r.cfg.Topic),
			attribute.String("messaging.operation.type", "process"), attribute.String("messaging.operation.name", "process"),
			attribute.String("messaging.consumer.group.name", r.cfg.Group),
			attribute.String("messaging.destination.partition.id", strconv.Itoa(int(p))),
			attribute.Int64("messaging.kafka.offset", int64(m.TopicPartition.Offset)))
	}
	ev, err := event.Decode(m.Value, m.Headers)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return r.deadLetter(m, err)
	}
	if recording {
		span.SetAttributes(attribute.String("messaging.message.id", ev.ID))
	}
	now := r.now()
	if r.received.Add(1) == 1 {
		r.first = now
	}
	r.last = now
	// Our producer's ids count up per source and partition: an id at or below the highest is a
	// copy, counted but still handled. Other producers' ids (not numbers) are not checked.
	dup := false
	if id, err := strconv.ParseUint(ev.ID, 10, 64); err == nil {
		k := fromSource{p, ev.Source}
		high, ok := r.highest[k]
		if dup = ok && id <= high; dup {
			r.duplicates.Add(1)
		} else if !ok && len(r.highest) >= maxSources {
			clear(r.highest)
		}
		r.highest[k] = max(high, id)
	}
	if r.cfg.LogEvents {
		var attrs []any
		if ev.ID != "" {
			attrs = []any{"id", ev.ID}
		}
		attrs = append(attrs, "partition", p, "offset", int64(m.TopicPartition.Offset))
		if !ev.Time.IsZero() {
			attrs = append(attrs, "latency", now.Sub(ev.Time).Round(time.Microsecond))
		}
		if dup {
			attrs = append(attrs, "duplicate", true)
		}
		r.log.InfoContext(ctx, "Received: "+ev.Timestamp, attrs...)
	}
	if !ev.Time.IsZero() {
		r.latency.Observe(now.Sub(ev.Time).Seconds())
	}
	r.handled(m, polled)
	return nil
}

// headerCarrier hands a message's trace context (traceparent, tracestate) to the propagator, read only.
type headerCarrier []kafka.Header

func (h headerCarrier) Get(key string) string {
	for _, x := range h {
		if x.Key == key {
			return string(x.Value)
		}
	}
	return ""
}
func (h headerCarrier) Keys() []string {
	keys := make([]string, len(h))
	for i, x := range h {
		keys[i] = x.Key
	}
	return keys
}
func (h headerCarrier) Set(string, string) {}

// handled marks m's offset for storing, now that it was handled: in batches, per storeEvery events or second.
func (r *Receiver) handled(m *kafka.Message, now time.Time) {
	tp := m.TopicPartition
	tp.Offset++
	r.toStore[tp.Partition] = tp
	r.uncommitted.Add(1)
	if r.unstored++; r.unstored >= r.storeEvery || now.Sub(r.storedAt) > time.Second {
		r.store()
	}
}

// store stores the offsets after the events handled, for the next commit.
func (r *Receiver) store() {
	r.storedAt, r.unstored = time.Now(), 0
	if tps := slices.Collect(maps.Values(r.toStore)); len(tps) > 0 {
		clear(r.toStore)
		if _, err := r.c.StoreOffsets(tps); err != nil { // a partition went meanwhile: its next owner reads them again
			r.log.Warn("Offsets not stored", "offsets", fmt.Sprint(tps), "err", err)
		}
	}
}

// committed warns of a failed commit: a restart would deliver the events since the last commit again.
func (r *Receiver) committed(err error, offsets []kafka.TopicPartition) {
	var kerr kafka.Error
	if err != nil && !(errors.As(err, &kerr) && kerr.Code() == kafka.ErrNoOffset) {
		r.log.Warn("Commit failed; events handled since the last commit will be delivered again", "err", err)
		return
	}
	r.uncommitted.Store(int64(r.unstored))
	for _, tp := range offsets {
		if tp.Error != nil {
			r.log.Warn("Commit failed for a partition", "partition", tp.Partition, "offset", int64(tp.Offset), "err", tp.Error)
		}
	}
}

// rebalanced commits on revoke, so that the next owner starts after what was handled. A
// dead-letter write pending there is given up: the next owner reads its message again.
func (r *Receiver) rebalanced(c *kafka.Consumer, e kafka.Event) error {
	if c != r.current.Load() {
		return nil // a client the leader-stall guard replaced, closing
	}
	switch e := e.(type) {
	case kafka.AssignedPartitions:
		r.rebalances.WithLabelValues("assigned").Inc()
		r.log.Info("Partitions assigned", "partitions", partitions(e.Partitions))
	case kafka.RevokedPartitions:
		if r.replacing {
			// No commit that waits for an answer: a client in the stall may have no coordinator to
			// give one. The offsets are stored for the close's own commit, if the group can take it.
			r.store()
		} else if !c.AssignmentLost() {
			r.commit()
		}
		for _, tp := range e.Partitions {
			if r.pending[tp.Partition] != nil {
				delete(r.pending, tp.Partition)
				_ = c.Resume([]kafka.TopicPartition{tp}) // should it come back, not paused
			}
			delete(r.toStore, tp.Partition)
		}
		change := "revoked"
		if c.AssignmentLost() {
			change = "lost"
		}
		r.rebalances.WithLabelValues(change).Inc()
		r.log.Info("Partitions revoked", "partitions", partitions(e.Partitions), "lost", c.AssignmentLost())
	}
	return nil
}

func (r *Receiver) commit() {
	r.store()
	offsets, err := r.c.Commit()
	r.committed(err, offsets)
}

// latencyBuckets, in seconds, resolve a local broker's milliseconds and a backlog's minutes.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// Metrics are the receiver's metrics: its counts, the events' latency, the
// rebalances, and the client's statistics with the lag.
func (r *Receiver) Metrics() []prometheus.Collector {
	counter := func(name, help string, n *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(n.Load()) })
	}
	return []prometheus.Collector{r.latency, r.rebalances, r.stats,
		counter("consumer_events_received_total", "Events decoded and handled (duplicates included).", &r.received),
		counter("consumer_events_duplicate_total", "Events handled again: an id at or below the highest seen from its source.", &r.duplicates),
		counter("consumer_events_dead_lettered_total", "Messages that could not be decoded, copied to the dead-letter topic.", &r.deadLettered),
		counter("consumer_recoveries_total", "Times the Kafka client was re-created after a leader stall.", &r.recovered)}
}

// Healthy returns the error that stopped the consumer, if any, or the leader-stall guard's.
func (r *Receiver) Healthy() error {
	if err := r.failed.Load(); err != nil {
		return *err
	}
	return r.guard.Healthy() // at once: the loop may hang in the client it could not replace
}

// Ready returns why the consumer cannot take its part in the group now, or nil.
func (r *Receiver) Ready() error {
	return cmp.Or(r.Healthy(), r.stats.ready(r.cfg.Topic, time.Now()))
}

// Uncommitted is about how many events a crash now would deliver again; safe from any goroutine.
func (r *Receiver) Uncommitted() int64 { return r.uncommitted.Load() }

// Close commits, leaves the group and closes both clients within shutdownBudget, or leaves them.
func (r *Receiver) Close() {
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		r.closeConsumer()
		r.closing.Wait() // replaced clients, still closing
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

// closeConsumer commits, gives the partitions up first (closing during a rebalance can hang
// in librdkafka), and closes the consumer.
func (r *Receiver) closeConsumer() {
	r.commit()
	r.unsubscribe(shutdownBudget)
	if err := r.c.Close(); err != nil {
		r.log.Warn("Consumer close", "err", err)
	}
}

// unsubscribe gives the partitions up within d; the revoke callback runs in this goroutine.
func (r *Receiver) unsubscribe(d time.Duration) {
	deadline := time.Now().Add(d)
	if err := r.c.Unsubscribe(); err == nil {
		for a, err := r.c.Assignment(); err == nil && len(a) > 0 && time.Now().Before(deadline); a, err = r.c.Assignment() {
			r.c.Poll(100)
		}
	}
}

func partitions(tps []kafka.TopicPartition) string {
	s := make([]string, len(tps))
	for i, tp := range tps {
		s[i] = fmt.Sprintf("%s[%d]", *tp.Topic, tp.Partition)
	}
	return strings.Join(s, ",")
}

// askNewClient asks the poll loop for a new client, for the leader-stall guard, and waits for it.
func (r *Receiver) askNewClient(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case r.recreate <- reply:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// newClient replaces the consumer with a new one, which resumes from the committed offsets.
// The old one gives its partitions up, and closes beside the new one: without a coordinator
// to leave, its close waits for its session to expire (45 s). It commits on its way out only
// if its group still answers.
func (r *Receiver) newClient() error {
	r.replacing = true
	r.store()
	r.unsubscribe(2 * time.Second)
	r.replacing = false
	clear(r.pending) // their offsets were never stored: the messages come again
	c, err := kafka.NewConsumer(&r.cm)
	if err != nil {
		return fmt.Errorf("create consumer: %w", err)
	}
	old := r.c
	r.c = c
	r.current.Store(c) // the old one's callbacks, as it closes, change nothing here
	r.closing.Go(func() { _ = old.Close() })
	r.recovered.Add(1)
	return r.subscribe()
}

// subscribe joins the group. The topic's metadata is fetched first, into the client's cache: with
// the consumer protocol (KIP-848) the broker names assigned topics by id, and librdkafka 2.15 sets
// aside an assignment whose topic id it cannot resolve yet, for up to a minute seen here.
func (r *Receiver) subscribe() error {
	_, _ = r.c.GetMetadata(&r.cfg.Topic, false, 5000) // at worst, the join resolves the id itself
	return r.c.SubscribeTopics([]string{r.cfg.Topic}, r.rebalanced)
}
