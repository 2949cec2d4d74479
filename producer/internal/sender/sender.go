// Package sender sends timestamp events to Kafka with an idempotent producer
// and accounts for every one: each event the client accepts ends up
// delivered (acknowledged by all in-sync replicas), failed (surely not
// written) or unknown (maybe written), and the counts and lines say which.
package sender

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

	"github.com/event-driven-go/kafka-go/producer/internal/event"
)

// FlushTimeout bounds the wait for outstanding deliveries after a stop, so
// that shutdown stays well under the 10 s of docker stop.
const FlushTimeout = 2500 * time.Millisecond

// maxLate is how late an event may go out and still keep its slot.
const maxLate = 100 * time.Millisecond

// Options configures a Sender.
type Options struct {
	Topic      string
	Source     string        // the ce_source of every event
	Interval   time.Duration // time between events; 0 sends back to back
	Count      int           // events to send; 0 sends until the context ends
	ValueSize  int           // bytes each value is padded to; 0 sends the bare value
	LogEvents  bool          // log "Sending: ..." for each event
	StallAfter time.Duration // see DefaultStallAfter, the default
	Kafka      kafka.ConfigMap
}

// Result counts what happened to the events of one run.
type Result struct {
	Attempted int64 // accepted by the client for delivery
	Delivered int64 // acknowledged by the broker
	Failed    int64 // surely not written: refused, or purged from the queue
	Unknown   int64 // maybe written: timed out or purged in flight
	Recovered int64 // times the client was re-created after a leader stall
	// Elapsed runs from the first event to the last delivery report.
	Elapsed time.Duration
}

// Rate is the delivered events per second over Elapsed; 0 when nothing was sent.
func (r Result) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Delivered) / r.Elapsed.Seconds()
}

// Sender owns a Kafka producer, re-created after a leader stall.
type Sender struct {
	log       *slog.Logger
	opts      Options
	cm        kafka.ConfigMap // the client's configuration, to re-create it
	partition int32           // where every event goes (EnsureTopic picks it)

	mu sync.RWMutex // read-held to use c, write-held to replace it
	c  *client

	attempted, delivered, failed, unknown, recovered atomic.Int64
	lastReport                                       atomic.Int64  // Unix nanoseconds of the latest delivery report
	full                                             atomic.Int64  // the queue length when a send found it full; 0 when none waits
	room                                             chan struct{} // the queue drained to half of full
	fatal                                            chan struct{} // closed on the first fatal client error
	fatalOnce                                        sync.Once
	fatalErr                                         error
}

// client is one Kafka producer and the events it holds.
type client struct {
	p       *kafka.Producer
	drained sync.WaitGroup // the goroutines of Events() and Logs()

	mu sync.Mutex
	// pending are the events sent and not yet reported, oldest first.
	// librdkafka reports the events of a partition in the order they were
	// sent, so a FIFO names each report's event without a map lookup (the
	// client's Opaque costs a locked map insert and delete per event).
	pending  []pending
	retiring bool // a recovery purges p: keep its events to send again
	purgedIn int  // of those, how many were purged in flight
}

type pending struct {
	ev event.Event
	// maybeWritten: a leader stall purged the event in flight, and it was
	// sent again; should that fail, it may still have been written.
	maybeWritten bool
}

// New creates the producer. Errors here come from the client configuration.
func New(opts Options, log *slog.Logger) (*Sender, error) {
	cm := kafka.ConfigMap{
		// Idempotence: exactly one copy per event in the log, in order,
		// across retries and broker failover (it implies acks=all).
		"enable.idempotence":        true,
		"go.delivery.report.fields": "none", // the FIFO knows the events
		"go.logs.channel.enable":    true,
		"allow.auto.create.topics":  false, // EnsureTopic creates it on purpose
		"log.connection.close":      false, // idle disconnects are normal
		// The default channels hold a million entries, which the garbage
		// collector scans; reports are drained as they come.
		"go.events.channel.size":  10000,
		"go.produce.channel.size": 1,
	}
	for k, v := range opts.Kafka {
		cm[k] = v
	}
	if opts.StallAfter == 0 {
		opts.StallAfter = DefaultStallAfter
	}
	s := &Sender{log: log, opts: opts, cm: cm, room: make(chan struct{}, 1), fatal: make(chan struct{})}
	var err error
	s.c, err = s.newClient()
	return s, err
}

// newClient creates a producer and starts the goroutines that drain it.
func (s *Sender) newClient() (*client, error) {
	p, err := kafka.NewProducer(&s.cm)
	if err != nil {
		return nil, fmt.Errorf("create producer: %w", err)
	}
	c := &client{p: p}
	c.drained.Go(func() { s.reports(c) })
	c.drained.Go(func() {
		for l := range p.Logs() { // librdkafka's errors as warnings: it recovers from them
			level := slog.LevelDebug
			if l.Level <= 3 {
				level = slog.LevelWarn
			}
			s.log.Log(context.Background(), level, "librdkafka: "+l.Message, "facility", l.Tag)
		}
	})
	return c, nil
}

// close closes the producer and waits for the goroutines that drained it.
func (c *client) close() {
	c.p.Close()
	c.drained.Wait()
}

// Run sends events until Count is reached or ctx ends, waits for their
// delivery reports, then closes the producer. It returns an error when the
// client failed fatally or when any accepted event was not delivered.
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
	// Events still without a report when the client closed may have been written.
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

// produce is the tutorial's loop: an event every Interval, until Count is
// reached or ctx ends. It returns when the client got the first event.
func (s *Sender) produce(ctx context.Context) (first time.Time, err error) {
	next := time.Now() // when the next event is due
	timer := time.NewTimer(0)
	defer timer.Stop()
	for id := uint64(1); s.opts.Count == 0 || id <= uint64(s.opts.Count); id++ {
		at := time.Now()
		if s.opts.Interval > 0 {
			timer.Reset(time.Until(next))
			select {
			case <-ctx.Done():
				return first, nil
			case <-s.fatal:
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
		}
		if id == 1 {
			first = time.Now()
		}
		ev := event.Event{ID: id, Source: s.opts.Source, Time: at}
		if err := s.send(ctx, pending{ev: ev}); err != nil {
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
				return first, fmt.Errorf("send event %d: %w", id, err)
			}
		}
		s.attempted.Add(1)
		if s.opts.LogEvents {
			s.log.Info("Sending: "+ev.Timestamp(), "id", strconv.FormatUint(id, 10))
		}
	}
	return first, nil
}

// slot returns the time to stamp an event due at due whose wait ended at
// now. Up to maxLate late it keeps its slot on the grid, so that high rates
// hold on average. Later (a laptop that slept, a queue kept full), the
// schedule restarts at now instead of sending a burst of stale events: late
// says by how much the slot was missed, skipped how many slots went by.
func slot(due, now time.Time, interval time.Duration) (at time.Time, late time.Duration, skipped int64) {
	if d := now.Sub(due); d > maxLate {
		return now, d, int64(d / interval)
	}
	return due, 0, 0
}

// send hands an event to the client. A full local queue is back-pressure:
// it waits for room instead of failing the event.
func (s *Sender) send(ctx context.Context, in pending) error {
	for {
		s.mu.RLock()
		err := s.c.produce(s.message(in.ev), in)
		if kerr := (kafka.Error{}); errors.As(err, &kerr) && kerr.Code() == kafka.ErrQueueFull {
			s.full.Store(int64(max(s.c.p.Len(), 1)))
		}
		s.mu.RUnlock()
		if s.full.Load() == 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.fatal:
			return s.fatalErr
		case <-s.room:
		case <-time.After(100 * time.Millisecond): // in case the reports drained it before full was set
		}
		s.full.Store(0)
	}
}

// produce sends msg and, once the client holds it, queues its event for the report.
func (c *client) produce(msg *kafka.Message, in pending) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.p.Produce(msg, nil)
	if err == nil {
		c.pending = append(c.pending, in)
	}
	return err
}

func (s *Sender) message(ev event.Event) *kafka.Message {
	return &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &s.opts.Topic, Partition: s.partition},
		Value: ev.Value(s.opts.ValueSize), Headers: ev.Headers()}
}

// reports drains the events of c: one delivery report per accepted event,
// and client errors. Statistics, if asked for with -X, are ignored.
func (s *Sender) reports(c *client) {
	for e := range c.p.Events() {
		switch e := e.(type) {
		case *kafka.Message:
			s.report(c, e)
			// Wake a waiting sender only once the queue has room for many events.
			if f := s.full.Load(); f > 0 && int64(c.p.Len()) <= f/2 {
				select {
				case s.room <- struct{}{}:
				default:
				}
			}
		case kafka.Error:
			if e.IsFatal() {
				s.setFatal(e)
			} else { // the client retries by itself
				s.log.Warn("Kafka client error, retrying", "err", e)
			}
		}
	}
}

// report accounts for the event of one delivery report.
func (s *Sender) report(c *client, m *kafka.Message) {
	err := m.TopicPartition.Error
	var kerr kafka.Error
	errors.As(err, &kerr)
	code := kerr.Code()
	c.mu.Lock()
	if c.retiring && (code == kafka.ErrPurgeQueue || code == kafka.ErrPurgeInflight) {
		if code == kafka.ErrPurgeInflight {
			c.purgedIn++
		}
		c.mu.Unlock()
		return
	}
	// A purge may report the queued events (always the newest) before those
	// in flight: queued ones are taken from the back, every other from the front.
	in := c.pending[0]
	if code == kafka.ErrPurgeQueue {
		in = c.pending[len(c.pending)-1]
		c.pending = c.pending[:len(c.pending)-1]
	} else {
		c.pending = c.pending[1:]
	}
	c.mu.Unlock()
	s.lastReport.Store(time.Now().UnixNano())
	id := strconv.FormatUint(in.ev.ID, 10)
	switch {
	case err == nil:
		s.delivered.Add(1)
		s.log.Debug("Delivered: "+in.ev.Timestamp(), "id", id, "partition", m.TopicPartition.Partition, "offset", int64(m.TopicPartition.Offset))
	case code == kafka.ErrPurgeInflight || code == kafka.ErrMsgTimedOut || in.maybeWritten:
		s.unknown.Add(1)
		s.log.Error("Unconfirmed: "+in.ev.Timestamp(), "id", id, "err", err)
	default:
		s.fail(in, err)
	}
}

// fail counts an event as not delivered and says so.
func (s *Sender) fail(in pending, err error) {
	s.failed.Add(1)
	s.log.Error("Not delivered: "+in.ev.Timestamp(), "id", strconv.FormatUint(in.ev.ID, 10), "err", err)
}

// Counts returns the counts so far; it is safe to call while Run runs.
func (s *Sender) Counts() Result {
	return Result{Attempted: s.attempted.Load(), Delivered: s.delivered.Load(), Failed: s.failed.Load(),
		Unknown: s.unknown.Load(), Recovered: s.recovered.Load()}
}

// finish waits for the delivery report of every accepted event. A run that
// reached its Count waits as long as message.timeout.ms allows, so that an
// outage near the end loses nothing. After a stop or a fatal error it waits
// at most FlushTimeout, then purges: every event left gets a report, failed
// if it was still queued, unknown if it was in flight.
func (s *Sender) finish(ctx context.Context) {
	for ctx.Err() == nil && s.fatalError() == nil { // short flushes let a recovery replace the client
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

// Close closes the producer. Run calls it; call it only when Run is never called.
func (s *Sender) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.c.close()
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
