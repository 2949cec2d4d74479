// Package sender sends timestamp events to Kafka with an idempotent producer
// and accounts for every one of them: each event the client accepts ends up
// either delivered (acknowledged by all in-sync replicas) or reported as not
// delivered, and the counts say which.
package sender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/producer/event"
)

// FlushTimeout bounds the wait for outstanding deliveries after a stop.
// With the purge that follows, shutdown stays well under the 4 s that Mage
// allows a target after Ctrl-C and the 10 s of docker stop.
const FlushTimeout = 2500 * time.Millisecond

// Options configures a Sender.
type Options struct {
	Topic     string
	Source    string        // the ce_source of every event
	Interval  time.Duration // time between events; 0 sends back to back
	Count     int           // events to send; 0 sends until the context ends
	ValueSize int           // bytes each value is padded to; 0 sends the bare value
	LogEvents bool          // log "Sending: ..." for each event
	// StallAfter is how long events may wait without any delivery report
	// before the client is checked for a leader stall (see stall.go);
	// 0 means DefaultStallAfter.
	StallAfter time.Duration
	// Kafka holds librdkafka properties: bootstrap.servers and any overrides.
	Kafka kafka.ConfigMap
}

// Result counts what happened to the events of one run.
type Result struct {
	Attempted int64 // accepted by the client for delivery
	Delivered int64 // acknowledged by the broker
	Failed    int64 // not written: refused, or purged from the queue at shutdown
	// Unknown counts events that may have been written: purged in flight
	// at shutdown, timed out (possibly in flight), or failed after a
	// leader stall purged them in flight once.
	Unknown   int64
	Recovered int64 // times the client was re-created after a leader stall
	// Elapsed runs from the first event handed to the client to the last
	// delivery report; 0 when nothing was sent.
	Elapsed time.Duration
}

// Rate is the delivered events per second over Elapsed; 0 when nothing was sent.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Delivered) / r.Elapsed.Seconds()
}

// Sender owns a Kafka producer, re-created after a leader stall, and the
// goroutines that drain its events.
type Sender struct {
	log  *slog.Logger
	opts Options
	cm   kafka.ConfigMap // the client's configuration, to re-create it
	enc  *event.Encoder

	mu sync.RWMutex // read-held to use c, write-held to replace it
	c  *client

	// Counts, read while Run runs (Counts).
	attempted, delivered, failed, unknown, recovered atomic.Int64

	lastReport atomic.Int64  // Unix nanoseconds of the latest delivery report
	progress   chan struct{} // a delivery report arrived: queue space may be free
	fatal      chan struct{} // closed on the first fatal client error
	fatalOnce  sync.Once
	fatalErr   error
}

// client is one Kafka producer and the goroutines that drain it.
type client struct {
	p       *kafka.Producer
	drained sync.WaitGroup // the goroutines of Events() and Logs()
	// retiring is set before a recovery purges p: the purged events are
	// then kept in purged, to be sent again, instead of being counted.
	retiring atomic.Bool
	purged   []*inflight // written by the Events() goroutine; read once drained
}

// New creates the producer. Errors here come from the client configuration.
func New(opts Options, log *slog.Logger) (*Sender, error) {
	enc, err := event.NewEncoder(opts.ValueSize)
	if err != nil {
		return nil, err
	}
	cm := kafka.ConfigMap{}
	for k, v := range opts.Kafka {
		cm[k] = v
	}
	// Idempotence gives exactly one copy per event in the log, in order,
	// across retries and broker failover (it implies acks=all).
	cm["enable.idempotence"] = true
	// Delivery reports identify events by Opaque; copying keys and values
	// back to Go would cost an allocation per event for nothing.
	cm["go.delivery.report.fields"] = "none"
	cm["go.logs.channel.enable"] = true
	// Topics are created on purpose (EnsureTopic), never as a side effect
	// of a metadata request.
	cm["allow.auto.create.topics"] = false
	if _, ok := cm["log.connection.close"]; !ok {
		cm["log.connection.close"] = false // idle disconnects are normal
	}
	// The client's default buffers hold a million entries each: 24 MiB of
	// pointers that the garbage collector scans on every cycle. Reports are
	// drained as they come, and ProduceChannel is never used.
	cm["go.events.channel.size"] = 10000
	cm["go.produce.channel.size"] = 1
	if opts.StallAfter == 0 {
		opts.StallAfter = DefaultStallAfter
	}
	s := &Sender{
		log:      log,
		opts:     opts,
		cm:       cm,
		enc:      enc,
		progress: make(chan struct{}, 1),
		fatal:    make(chan struct{}),
	}
	if s.c, err = s.newClient(); err != nil {
		return nil, err
	}
	return s, nil
}

// newClient creates a producer and starts the goroutines that drain it.
func (s *Sender) newClient() (*client, error) {
	p, err := kafka.NewProducer(&s.cm) // NewProducer copies the map
	if err != nil {
		return nil, fmt.Errorf("create producer: %w", err)
	}
	c := &client{p: p}
	c.drained.Go(func() { s.reports(c) })
	c.drained.Go(func() { s.logs(c) })
	return c, nil
}

// close closes the producer, which closes Events() and Logs(), and waits
// for the goroutines that drained them.
func (c *client) close() {
	c.p.Close()
	c.drained.Wait()
}

// EnsureTopic creates the topic with one partition (one partition keeps the
// whole stream in order) unless it exists. It waits for the cluster until
// ctx ends.
func (s *Sender) EnsureTopic(ctx context.Context) error {
	return ensureTopic(ctx, s.c.p, s.opts.Topic, s.log)
}

// Run sends events until Count is reached or ctx ends, waits for their
// delivery reports (see finish), then closes the producer. It returns an
// error when the client failed fatally or when any accepted event was not
// delivered.
func (s *Sender) Run(ctx context.Context) (Result, error) {
	watchCtx, stopWatch := context.WithCancel(ctx)
	var watching sync.WaitGroup
	watching.Go(func() { s.watchStall(watchCtx) })
	first, err := s.produce(ctx)
	s.finish(ctx)
	stopWatch()
	watching.Wait()
	s.Close()
	res := s.Counts()
	// Events still without a report when the client closed may have been
	// written, like those purged in flight.
	res.Unknown = res.Attempted - res.Delivered - res.Failed
	if last := s.lastReport.Load(); res.Attempted > 0 && last > 0 {
		res.Elapsed = time.Unix(0, last).Sub(first)
	}
	if err == nil {
		err = s.fatalError()
	}
	if err == nil && res.Delivered != res.Attempted {
		err = fmt.Errorf("%d of %d events not delivered: %d failed, %d unknown (sent but unconfirmed: may have been written)",
			res.Attempted-res.Delivered, res.Attempted, res.Failed, res.Unknown)
	}
	return res, err
}

// Counts returns the counts so far; it is safe to call while Run runs.
// Elapsed is left 0.
func (s *Sender) Counts() Result {
	return Result{Attempted: s.attempted.Load(), Delivered: s.delivered.Load(), Failed: s.failed.Load(),
		Unknown: s.unknown.Load(), Recovered: s.recovered.Load()}
}

// finish waits for the delivery report of every accepted event. A run that
// reached its Count waits as long as it takes (message.timeout.ms bounds
// it), so that a broker outage near the end loses nothing. After a stop
// (ctx ended) or a fatal error it waits at most FlushTimeout, then purges:
// every event left gets a report, failed if it was still queued, unknown
// if it was in flight.
func (s *Sender) finish(ctx context.Context) {
	// Short flushes let a recovery replace the client in between.
	for ctx.Err() == nil && s.fatalError() == nil {
		if s.flush(100*time.Millisecond) == 0 {
			return
		}
	}
	if s.flush(FlushTimeout) > 0 {
		s.mu.RLock()
		_ = s.c.p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight)
		s.mu.RUnlock()
		s.flush(500 * time.Millisecond)
	}
}

// flush waits up to d for outstanding deliveries and returns how many are left.
func (s *Sender) flush(d time.Duration) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.c.p.Flush(int(d / time.Millisecond))
}

// Close closes the producer and waits for the goroutines that drain it.
// Run calls it; call it yourself only when Run is never called.
func (s *Sender) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.c.close()
}

// produce sends events until Count is reached or ctx ends. It returns when
// the client got the first.
func (s *Sender) produce(ctx context.Context) (first time.Time, err error) {
	sched := newSchedule(time.Now(), s.opts.Interval)
	// One message is reused: Produce copies what it needs before it returns.
	msg := kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &s.opts.Topic, Partition: kafka.PartitionAny}}
	var block []inflight
	for seq := uint64(1); s.opts.Count == 0 || seq <= uint64(s.opts.Count); seq++ {
		now := time.Now()
		if s.opts.Interval > 0 {
			if !sched.wait(ctx, s.fatal, sched.next) {
				return first, nil
			}
			var late time.Duration
			var skipped int64
			if now, late, skipped = sched.stamp(time.Now()); late > 0 {
				s.log.Warn("Behind schedule: sending now, skipping the missed events",
					"late", late.Round(time.Millisecond), "skipped", skipped)
			}
		}
		if ctx.Err() != nil {
			return first, nil
		}
		ev := event.New(s.opts.Source, seq, now)
		s.enc.Encode(&ev, &msg)
		if len(block) == 0 {
			block = make([]inflight, inflightBlock)
		}
		in := &block[0]
		block = block[1:]
		*in = inflight{seq: ev.Sequence, time: ev.Time, id: ev.ID}
		msg.Opaque = in
		if seq == 1 {
			first = time.Now()
		}
		if err := s.send(ctx, &msg); err != nil {
			var kerr kafka.Error
			switch {
			case ctx.Err() != nil:
				return first, nil
			case errors.As(err, &kerr) && kerr.Code() == kafka.ErrFatal:
				s.mu.RLock()
				ferr := s.c.p.GetFatalError()
				s.mu.RUnlock()
				if ferr == nil { // a client re-created meanwhile has none
					ferr = err
				}
				return first, s.setFatal(ferr)
			default:
				return first, fmt.Errorf("send event %d: %w", seq, err)
			}
		}
		s.attempted.Add(1)
		if s.opts.LogEvents {
			s.log.Info("Sending: "+ev.Timestamp(), "seq", ev.Sequence, "id", ev.ID)
		}
	}
	return first, nil
}

// inflight names an event in its delivery report. They are allocated in
// blocks of inflightBlock, so that sending an event allocates nothing of
// its own; a block is freed once the reports of all its events are in.
type inflight struct {
	seq  uint64
	time time.Time
	id   event.ID
	// maybeWritten: a leader stall purged the event in flight, and it was
	// sent again; should that fail, it may still have been written.
	maybeWritten bool
}

const inflightBlock = 1024

// send hands msg to the client, waiting while its local queue is full:
// back-pressure slows the producer down instead of failing it.
func (s *Sender) send(ctx context.Context, msg *kafka.Message) error {
	for {
		s.mu.RLock()
		err := s.c.p.Produce(msg, nil)
		s.mu.RUnlock()
		var kerr kafka.Error
		if !errors.As(err, &kerr) || kerr.Code() != kafka.ErrQueueFull {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.fatal:
			return s.fatalErr
		case <-s.progress:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reports drains the events of c: one delivery report per accepted event,
// and client errors.
func (s *Sender) reports(c *client) {
	for e := range c.p.Events() {
		switch e := e.(type) {
		case *kafka.Message:
			s.report(c, e)
			select {
			case s.progress <- struct{}{}:
			default:
			}
		case kafka.Error:
			if e.IsFatal() {
				s.setFatal(e)
				continue
			}
			// The client retries by itself; say so and go on.
			s.log.Warn("Kafka client error, retrying", "err", e)
		case *kafka.Stats:
			// Only there when asked for with -X statistics.interval.ms.
			logStats(s.log, e.String())
		}
	}
}

func (s *Sender) report(c *client, m *kafka.Message) {
	in, _ := m.Opaque.(*inflight)
	if in == nil {
		return
	}
	var kerr kafka.Error
	errors.As(m.TopicPartition.Error, &kerr)
	purged := kerr.Code() == kafka.ErrPurgeQueue || kerr.Code() == kafka.ErrPurgeInflight
	if purged && c.retiring.Load() {
		in.maybeWritten = in.maybeWritten || kerr.Code() == kafka.ErrPurgeInflight
		c.purged = append(c.purged, in)
		return
	}
	s.lastReport.Store(time.Now().UnixNano())
	if err := m.TopicPartition.Error; err != nil {
		if kerr.Code() == kafka.ErrPurgeInflight || kerr.Code() == kafka.ErrMsgTimedOut || in.maybeWritten {
			s.unknown.Add(1)
			s.log.Error("Unconfirmed: "+in.time.Format(event.TimestampLayout), "seq", in.seq, "id", in.id, "err", err)
			return
		}
		s.fail(in, err)
		return
	}
	s.delivered.Add(1)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("Delivered: "+in.time.Format(event.TimestampLayout), "seq", in.seq, "id", in.id,
			"partition", m.TopicPartition.Partition, "offset", int64(m.TopicPartition.Offset))
	}
}

// fail counts in as not delivered and says so.
func (s *Sender) fail(in *inflight, err error) {
	s.failed.Add(1)
	s.log.Error("Not delivered: "+in.time.Format(event.TimestampLayout), "seq", in.seq, "id", in.id, "err", err)
}

// logs forwards librdkafka's own log lines of c: errors as warnings (the
// client recovers from them), the rest at debug level.
func (s *Sender) logs(c *client) {
	for l := range c.p.Logs() {
		level := slog.LevelDebug
		if l.Level <= 3 {
			level = slog.LevelWarn
		}
		s.log.Log(context.Background(), level, "librdkafka: "+l.Message, "facility", l.Tag)
	}
}

// setFatal records the first fatal client error and returns it.
func (s *Sender) setFatal(err error) error {
	s.fatalOnce.Do(func() {
		s.fatalErr = fmt.Errorf("fatal producer error: %w", err)
		close(s.fatal)
	})
	return s.fatalErr
}

func (s *Sender) fatalError() error {
	select {
	case <-s.fatal:
		return s.fatalErr
	default:
		return nil
	}
}
