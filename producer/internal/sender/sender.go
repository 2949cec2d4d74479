// Package sender sends timestamp events to Kafka with an idempotent producer
// and accounts for every one: each event the client accepts ends up
// delivered (acknowledged by all in-sync replicas), failed (surely not
// written) or unknown (maybe written), and the counts and lines say which.
package sender

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

	"github.com/event-driven-go/kafka-go/producer/internal/event"
	"github.com/event-driven-go/kafka-go/producer/internal/leaderstall"
)

// FlushTimeout bounds the wait for outstanding deliveries after a stop.
const FlushTimeout = 2500 * time.Millisecond

// Options configures a Sender.
type Options struct {
	Topic, Source string        // Source is the ce_source of every event
	Interval      time.Duration // time between events; 0 sends back to back
	Count         int           // events to send; 0 sends until the context ends
	ValueSize     int           // bytes each value is padded to; 0 sends the bare value
	KeyBySource   bool          // key events by Source (one partition, in order); else spread them
	LogEvents     bool          // log "Sending: ..." for each event
	Tracer        trace.Tracer  // starts a publish span per event; nil: no trace context
	Kafka         kafka.ConfigMap
}

// Result counts what happened to the events of one run.
type Result struct {
	Attempted, Delivered int64 // accepted by the client; acknowledged by the broker
	Failed, Unknown      int64 // surely not written; maybe written (timed out or purged in flight)
	Recovered            int64 // times the client was re-created after a leader stall (librdkafka#5430)
	Elapsed              time.Duration
}

// Rate is the delivered events per second over Elapsed; 0 when nothing was sent.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Delivered) / r.Elapsed.Seconds()
}

// Sender owns a Kafka producer, re-created after a leader stall (see package leaderstall).
type Sender struct {
	log      *slog.Logger
	opts     Options
	cm       kafka.ConfigMap
	key      []byte // Source, or nil when events are spread
	tracer   trace.Tracer
	stats    *clientStats
	delivery prometheus.Histogram
	fatal    context.Context // cancelled with the first fatal client error, or when the leader-stall guard gives up
	setFatal context.CancelCauseFunc
	guard    *leaderstall.Guard

	attempted, delivered, failed, unknown, recovered atomic.Int64

	lastReport atomic.Int64 // Unix nanoseconds of the latest delivery report
	full       atomic.Int64 // the queue length when a send found it full
	room       chan struct{}

	mu     sync.RWMutex
	c      *client // read-held mu to use it, write-held to replace it
	closed bool    // by Close: no client replaces it any more

	qmu sync.Mutex
	// pending are the events sent and not yet reported, by the id each
	// report names in Opaque: after retries, reports may come out of order.
	pending map[uint64]pending
}

type pending struct {
	ev           event.Event
	span         trace.Span // publish, ended by the delivery report
	maybeWritten bool       // held by a replaced client, then sent again
}

// client is one Kafka producer and the goroutines that drain it.
type client struct {
	p       *kafka.Producer
	drained sync.WaitGroup
	hasID   chan struct{} // closed once the idempotent producer has its id
	retired atomic.Bool   // replaced: its events went again on the new client
}

// New creates the producer. Errors here come from the client configuration.
func New(opts Options, log *slog.Logger) (*Sender, error) {
	cm := kafka.ConfigMap{"log.connection.close": false, // idle disconnects are normal
		// Readiness, the client's metrics and the leader-stall guard read the client's statistics.
		"statistics.interval.ms": 5000}
	maps.Copy(cm, opts.Kafka)
	maps.Copy(cm, kafka.ConfigMap{
		"enable.idempotence":        true,   // one copy per event, in order, across retries and failover; implies acks=all
		"go.delivery.report.fields": "none", // Opaque names the event
		"go.logs.channel.enable":    true,
		"allow.auto.create.topics":  false, // a missing topic is an error, never created by a typo
		"go.events.channel.size":    10000, // not a million entries for the GC to scan
		"go.produce.channel.size":   1,
	})
	// librdkafka says when the idempotent producer got its id only in its "eos" debug logs.
	debug, _ := cm["debug"].(string)
	cm["debug"] = strings.TrimPrefix(debug+",eos", ",")
	every, _ := strconv.Atoi(fmt.Sprint(cm["statistics.interval.ms"]))
	s := &Sender{log: log, opts: opts, cm: cm, room: make(chan struct{}, 1), pending: map[uint64]pending{},
		stats: newClientStats(time.Duration(every) * time.Millisecond), tracer: cmp.Or(opts.Tracer, trace.Tracer(noop.Tracer{})),
		delivery: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "producer_delivery_seconds",
			Help: "Time from sending an event to its delivery report.", Buckets: latencyBuckets})}
	if opts.KeyBySource {
		s.key = []byte(opts.Source)
	}
	s.fatal, s.setFatal = context.WithCancelCause(context.Background())
	s.guard = leaderstall.New(opts.Topic, log, leaderstall.Ask(opts.Kafka, opts.Topic))
	// A slow but healthy broker answers within request.timeout.ms: no stall is seen before.
	if ms, err := strconv.Atoi(fmt.Sprint(cm["request.timeout.ms"])); err == nil {
		s.guard.After = max(s.guard.After, time.Duration(ms)*time.Millisecond)
	}
	if every <= 0 {
		log.Warn("The leader-stall guard is off: it reads the client's statistics, and statistics.interval.ms is 0")
	}
	var err error
	s.c, err = s.newClient()
	return s, err
}
func (s *Sender) newClient() (*client, error) {
	p, err := kafka.NewProducer(&s.cm)
	if err != nil {
		return nil, fmt.Errorf("create producer: %w", err)
	}
	c := &client{p: p, hasID: make(chan struct{})}
	c.drained.Go(func() { s.reports(c) })
	c.drained.Go(func() {
		gotID := sync.OnceFunc(func() { close(c.hasID) })
		for l := range p.Logs() { // errors as warnings: the client recovers from them
			if l.Tag == "IDEMPSTATE" && strings.HasSuffix(l.Message, "-> Assigned") {
				gotID()
			}
			level := slog.LevelDebug
			if l.Level <= 3 {
				level = slog.LevelWarn
			}
			s.log.Log(context.Background(), level, "librdkafka: "+l.Message, "facility", l.Tag)
		}
	})
	return c, nil
}
func (c *client) close() {
	c.p.Close()
	c.drained.Wait()
}

// Run sends events, waits for their reports and closes the producer. It
// fails on a fatal client error or when any accepted event was not delivered.
func (s *Sender) Run(ctx context.Context) (Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	context.AfterFunc(s.fatal, cancel) // a fatal client error stops the run as a stop signal does
	var watching sync.WaitGroup
	watching.Go(func() {
		if err := s.guard.Run(ctx, s.replaceClient); err != nil {
			s.setFatal(err)
		}
	})
	first, err := s.produce(ctx)
	s.finish(ctx)
	cancel() // ends the guard
	watching.Wait()
	s.Close()
	s.qmu.Lock()
	left := s.pending
	s.pending = map[uint64]pending{} // a replaced client's late reports find nothing to count
	s.qmu.Unlock()
	for _, in := range left { // no report came: their spans end here
		in.span.SetStatus(codes.Error, "no delivery report")
		in.span.End()
	}
	res := s.Counts()
	res.Unknown = res.Attempted - res.Delivered - res.Failed // no report: may have been written
	if last := s.lastReport.Load(); res.Attempted > 0 && last > 0 {
		res.Elapsed = time.Unix(0, last).Sub(first)
	}
	if err = cmp.Or(err, context.Cause(s.fatal)); err == nil && res.Delivered != res.Attempted {
		err = fmt.Errorf("%d of %d events not delivered: %d failed, %d unknown (sent but unconfirmed: may have been written)",
			res.Attempted-res.Delivered, res.Attempted, res.Failed, res.Unknown)
	}
	return res, err
}

// produce is the tutorial's loop: an event every Interval, on a fixed grid,
// until Count is reached or ctx ends. It returns when the first was sent.
func (s *Sender) produce(ctx context.Context) (first time.Time, err error) {
	next, timer := time.Now(), time.NewTimer(0) // when the next event is due
	defer timer.Stop()
	for id := uint64(1); s.opts.Count == 0 || id <= uint64(s.opts.Count); id++ {
		at := time.Now()
		if s.opts.Interval > 0 {
			timer.Reset(time.Until(next))
			select {
			case <-ctx.Done():
				return first, nil
			case <-timer.C:
			}
			var late time.Duration
			var skipped int64
			if at, late, skipped = slot(next, time.Now(), s.opts.Interval); late > 0 {
				s.log.Warn("Behind schedule: sending now, skipping the missed events", "late", late.Round(time.Millisecond), "skipped", skipped)
			}
			next = at.Add(s.opts.Interval)
		}
		if ctx.Err() != nil {
			return first, nil
		} else if id == 1 {
			first = time.Now()
		}
		ev := event.Event{ID: id, Source: s.opts.Source, Time: at}
		// A publish span per event; its trace context travels in the headers, and the delivery report ends it.
		sctx, span := s.tracer.Start(ctx, "publish "+s.opts.Topic, trace.WithSpanKind(trace.SpanKindProducer))
		// Attributes, by OpenTelemetry's messaging conventions, cost only where spans are exported.
		if span.IsRecording() {
			span.SetAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", s.opts.Topic),
				attribute.String("messaging.operation.type", "send"), attribute.String("messaging.operation.name", "publish"),
				attribute.String("messaging.message.id", strconv.FormatUint(id, 10)))
		}
		if err := s.send(ctx, pending{ev: ev, span: span}); err != nil {
			span.End()
			switch {
			case ctx.Err() != nil:
				return first, nil
			case code(err) == kafka.ErrFatal:
				s.mu.RLock()
				s.setFatal(fmt.Errorf("fatal producer error: %w", cmp.Or(s.c.p.GetFatalError(), err)))
				s.mu.RUnlock()
				return first, context.Cause(s.fatal)
			default:
				return first, fmt.Errorf("send event %d: %w", id, err)
			}
		}
		s.attempted.Add(1)
		if s.opts.LogEvents {
			s.log.InfoContext(sctx, "Sending: "+ev.Timestamp(), "id", strconv.FormatUint(id, 10))
		}
	}
	return first, nil
}

// slot stamps an event due at due, waited for until now, with its slot on
// the grid up to 100 ms late, so that high rates hold on average. Later (a
// laptop slept), the schedule restarts at now: no burst of stale events.
func slot(due, now time.Time, interval time.Duration) (at time.Time, late time.Duration, skipped int64) {
	if d := now.Sub(due); d > 100*time.Millisecond {
		return now, d, int64(d / interval)
	}
	return due, 0, 0
}

// send hands an event to the client; a full local queue is back-pressure,
// so it waits for room instead of failing the event.
func (s *Sender) send(ctx context.Context, in pending) error {
	for {
		s.mu.RLock()
		err := s.produceLocked(s.c.p, in)
		if code(err) == kafka.ErrQueueFull {
			s.full.Store(int64(max(s.c.p.Len(), 1)))
		}
		s.mu.RUnlock()
		if s.full.Load() == 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.room:
		case <-time.After(100 * time.Millisecond): // the queue drained before full was set
		}
		s.full.Store(0)
	}
}

// produceLocked sends an event and queues it in pending before its report can come.
func (s *Sender) produceLocked(p *kafka.Producer, in pending) error {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return s.producePending(p, in)
}

// producePending sends an event and queues it in pending; qmu is held.
func (s *Sender) producePending(p *kafka.Producer, in pending) error {
	headers := headerCarrier(in.ev.Headers())
	propagation.TraceContext{}.Inject(trace.ContextWithSpan(context.Background(), in.span), &headers)
	// librdkafka hashes the key to pick the partition: one source's events share one, in order; unkeyed ones spread.
	err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &s.opts.Topic, Partition: kafka.PartitionAny},
		Key: s.key, Value: in.ev.Value(s.opts.ValueSize), Headers: headers, Opaque: in.ev.ID}, nil)
	if err == nil {
		s.pending[in.ev.ID] = in
	}
	return err
}

// headerCarrier takes the W3C trace context (traceparent, tracestate) into a message's headers; it is only written.
type headerCarrier []kafka.Header

func (h *headerCarrier) Set(key, value string) {
	*h = append(*h, kafka.Header{Key: key, Value: []byte(value)})
}
func (h *headerCarrier) Get(string) string { return "" }
func (h *headerCarrier) Keys() []string    { return nil }

// reports drains c's events: a delivery report per accepted event, client errors and statistics.
func (s *Sender) reports(c *client) {
	p := c.p
	for e := range p.Events() {
		switch e := e.(type) {
		case *kafka.Message:
			id, _ := e.Opaque.(uint64) // 0, no event's id: a message this sender did not send
			s.report(c, id, e.TopicPartition)
			// Wake a waiting sender only once the queue has room for many events.
			if f := s.full.Load(); f > 0 && int64(p.Len()) <= f/2 {
				select {
				case s.room <- struct{}{}:
				default:
				}
			}
		case *kafka.Stats:
			if err := s.stats.update(e.String(), time.Now()); err != nil {
				s.log.Warn("Statistics not understood", "err", err)
			}
			if !c.retired.Load() {
				s.guard.Observe(e.String())
			}
		case kafka.Error:
			if e.IsFatal() {
				s.setFatal(fmt.Errorf("fatal producer error: %w", e))
			} else {
				s.log.Warn("Kafka client error, retrying", "err", e) // the client retries by itself
			}
		}
	}
}

// report accounts for the event of one delivery report from c. The first
// report of an event settles it. A replaced client's events went again on
// the new one: only its deliveries count, the rest is left to the new one.
func (s *Sender) report(c *client, id uint64, tp kafka.TopicPartition) {
	s.qmu.Lock()
	in, ok := s.pending[id]
	if !ok || (tp.Error != nil && c.retired.Load()) {
		s.qmu.Unlock()
		return // settled already (written twice, if both clients wrote it), or left to the new client
	}
	delete(s.pending, id)
	s.qmu.Unlock()
	s.lastReport.Store(time.Now().UnixNano())
	s.settle(in, tp)
}

// settle counts an event by its report and, unless delivered, says so.
func (s *Sender) settle(in pending, tp kafka.TopicPartition) {
	code, id := code(tp.Error), strconv.FormatUint(in.ev.ID, 10)
	defer in.span.End()
	recording := in.span.IsRecording()
	if recording && tp.Error != nil {
		in.span.SetStatus(codes.Error, tp.Error.Error())
	}
	switch {
	case tp.Error == nil:
		s.delivered.Add(1)
		s.delivery.Observe(time.Since(in.ev.Time).Seconds())
		if recording {
			in.span.SetAttributes(attribute.String("messaging.destination.partition.id", strconv.Itoa(int(tp.Partition))),
				attribute.Int64("messaging.kafka.offset", int64(tp.Offset)))
		}
		s.log.Debug("Delivered: "+in.ev.Timestamp(), "id", id, "partition", tp.Partition, "offset", int64(tp.Offset))
	case code == kafka.ErrPurgeInflight || code == kafka.ErrMsgTimedOut || in.maybeWritten:
		s.unknown.Add(1)
		s.log.Error("Unconfirmed: "+in.ev.Timestamp(), "id", id, "err", tp.Error)
	default:
		s.failed.Add(1)
		s.log.Error("Not delivered: "+in.ev.Timestamp(), "id", id, "err", tp.Error)
	}
}

func code(err error) kafka.ErrorCode {
	var kerr kafka.Error
	errors.As(err, &kerr)
	return kerr.Code()
}

// latencyBuckets, in seconds, resolve a local broker's milliseconds and a remote one's seconds.
var latencyBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// Metrics are the sender's metrics: its counts, the time from sending to
// the delivery report, and the client's statistics.
func (s *Sender) Metrics() []prometheus.Collector {
	counter := func(name, help string, n *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(n.Load()) })
	}
	return []prometheus.Collector{s.delivery, s.stats,
		counter("producer_events_sent_total", "Events the Kafka client accepted.", &s.attempted),
		counter("producer_events_delivered_total", "Events acknowledged by all in-sync replicas.", &s.delivered),
		counter("producer_events_failed_total", "Events surely not written.", &s.failed),
		counter("producer_events_unconfirmed_total", "Events maybe written: timed out or purged in flight.", &s.unknown),
		counter("producer_recoveries_total", "Times the Kafka client was re-created after a leader stall.", &s.recovered)}
}

// Healthy returns the fatal client error, if any: then only a restart helps.
func (s *Sender) Healthy() error { return context.Cause(s.fatal) }

// Failed is closed with the first fatal error: the run ends by itself, and
// the process must end too, should the client hang.
func (s *Sender) Failed() <-chan struct{} { return s.fatal.Done() }

// Ready returns why the sender cannot deliver events now, or nil.
func (s *Sender) Ready() error {
	if err := s.Healthy(); err != nil {
		return err
	}
	return s.stats.ready(s.opts.Topic, time.Now())
}

// Counts returns the counts so far; it is safe to call while Run runs.
func (s *Sender) Counts() Result {
	return Result{Attempted: s.attempted.Load(), Delivered: s.delivered.Load(), Failed: s.failed.Load(),
		Unknown: s.unknown.Load(), Recovered: s.recovered.Load()}
}

// finish waits for every report: after Count, as long as message.timeout.ms
// allows, so that an outage at the end loses nothing; after a stop or a
// fatal error at most FlushTimeout, then it purges: the events still queued
// fail, those in flight are unknown.
func (s *Sender) finish(ctx context.Context) {
	flush := func(d time.Duration, purge bool) int {
		s.mu.RLock()
		defer s.mu.RUnlock()
		if purge {
			_ = s.c.p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight)
		}
		return s.c.p.Flush(int(d / time.Millisecond))
	}
	for ctx.Err() == nil { // short flushes let a recovery replace the client
		if flush(100*time.Millisecond, false) == 0 {
			return
		}
	}
	if flush(FlushTimeout, false) > 0 {
		flush(500*time.Millisecond, true)
	}
}

// Close closes the producer. Run calls it; call it only when Run is never called.
func (s *Sender) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.c.close()
}

// replaceClient replaces the client with a new one, for the leader-stall
// guard, and sends again, in their order, the events the old one still held;
// then it closes the old one. A send waits only while the client is swapped.
func (s *Sender) replaceClient(ctx context.Context) error {
	fresh, err := s.newClient()
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed { // the run ended meanwhile
		s.mu.Unlock()
		fresh.close()
		return nil
	}
	old := s.c
	old.retired.Store(true) // before the events are read: a failure it reports after is left to the new client
	// Events still queued were not written: purged now, the old client cannot write them after the new one.
	_ = old.p.Purge(kafka.PurgeQueue | kafka.PurgeNonBlocking)
	s.qmu.Lock()
	held := slices.Sorted(maps.Keys(s.pending)) // in the order they were first sent
	s.qmu.Unlock()
	s.c = fresh
	for _, id := range held {
		s.qmu.Lock()
		in, still := s.pending[id] // the old client's delivery may have settled it meanwhile
		var err error
		if still {
			in.maybeWritten = true // the old client may have written it
			if err = s.producePending(fresh.p, in); err != nil {
				delete(s.pending, id)
			}
		}
		s.qmu.Unlock()
		if err != nil {
			s.settle(in, kafka.TopicPartition{Error: err})
		}
	}
	s.mu.Unlock()
	s.recovered.Add(1)
	s.log.Warn("Leader stall: the events the old client held were sent again; those it had in flight may be written twice",
		"resent", len(held))
	_ = old.p.Purge(kafka.PurgeInFlight)
	closed := make(chan struct{})
	go func() { old.close(); close(closed) }()
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close the stalled client: %w", ctx.Err())
	}
}
