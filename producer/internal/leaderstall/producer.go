package leaderstall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// ErrResent marks the failed delivery report of an event sent again after a
// leader stall: the stalled client may have written it, so it is unknown,
// not failed.
var ErrResent = errors.New("sent again after a leader stall; the stalled client may have written it")

// Producer is a kafka.Producer that its Guard re-creates after a leader
// stall, sending again, in their order, the events the old client still
// held. Produce, Events, Flush, Purge and Close work as on kafka.Producer
// with a nil delivery channel; each delivery report carries the Opaque
// given to Produce.
type Producer struct {
	guard     *Guard
	cm        kafka.ConfigMap
	log       *slog.Logger
	events    chan kafka.Event // of every client, one stream
	recovered atomic.Int64
	closing   sync.WaitGroup // replaced clients, closing

	mu     sync.RWMutex // read-held to use c, write-held to replace it
	c      *client
	closed bool

	qmu     sync.Mutex
	seq     uint64
	pending map[uint64]*held // by seq: produced, not yet reported
}

// held is an event the client has: the message as given, and whether it went again after a stall.
type held struct {
	m      *kafka.Message
	resent bool
}

// client is one kafka.Producer and the goroutines that drain it.
type client struct {
	p       *kafka.Producer
	drained sync.WaitGroup
	retired atomic.Bool // replaced: its events went again on the new client
}

// NewProducer creates the producer of cm and its guard for topic.
func NewProducer(cm kafka.ConfigMap, topic string, log *slog.Logger) (*Producer, error) {
	g := New(topic, log, Ask(cm, topic))
	// A slow but healthy broker answers within request.timeout.ms: no stall is seen before.
	if ms, err := strconv.Atoi(fmt.Sprint(cm["request.timeout.ms"])); err == nil {
		g.After = max(g.After, time.Duration(ms)*time.Millisecond)
	}
	if every, _ := strconv.Atoi(fmt.Sprint(cm["statistics.interval.ms"])); every <= 0 {
		log.Warn("The leader-stall guard is off: it reads the client's statistics, and statistics.interval.ms is 0")
	}
	p := &Producer{guard: g, cm: cm, log: log, events: make(chan kafka.Event, 10000), pending: map[uint64]*held{}}
	var err error
	p.c, err = p.newClient()
	return p, err
}

func (p *Producer) newClient() (*client, error) {
	kp, err := kafka.NewProducer(&p.cm)
	if err != nil {
		return nil, fmt.Errorf("create producer: %w", err)
	}
	c := &client{p: kp}
	c.drained.Go(func() { p.drain(c) })
	c.drained.Go(func() {
		if kp.Logs() == nil {
			return // go.logs.channel.enable is off: librdkafka writes its lines itself
		}
		for l := range kp.Logs() { // errors as warnings: the client recovers from them
			level := slog.LevelDebug
			if l.Level <= 3 {
				level = slog.LevelWarn
			}
			p.log.Log(context.Background(), level, "librdkafka: "+l.Message, "facility", l.Tag)
		}
	})
	return c, nil
}

func (c *client) close() {
	c.p.Close()
	c.drained.Wait()
}

// Produce hands m to the client; its delivery report comes on Events.
func (p *Producer) Produce(m *kafka.Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	p.qmu.Lock()
	defer p.qmu.Unlock()
	p.seq++
	return p.produce(p.c.p, p.seq, &held{m: m})
}

// produce sends h under seq and holds it until its report; qmu is held.
func (p *Producer) produce(kp *kafka.Producer, seq uint64, h *held) error {
	m := *h.m
	m.Opaque = seq // the report names the event by seq; Events gives the caller's Opaque back
	err := kp.Produce(&m, nil)
	if err == nil {
		p.pending[seq] = h
	}
	return err
}

// drain forwards c's events: the first report of each event (a replaced
// client's failures are left to the new client), client errors, and the
// statistics, which the guard reads too.
func (p *Producer) drain(c *client) {
	for e := range c.p.Events() {
		switch e := e.(type) {
		case *kafka.Message:
			seq, _ := e.Opaque.(uint64) // 0: no event of ours
			p.qmu.Lock()
			h, ok := p.pending[seq]
			if !ok || (e.TopicPartition.Error != nil && c.retired.Load()) {
				p.qmu.Unlock()
				continue // settled already (written twice, if both clients wrote it), or left to the new client
			}
			delete(p.pending, seq)
			p.qmu.Unlock()
			e.Opaque = h.m.Opaque
			if e.TopicPartition.Error != nil && h.resent {
				e.TopicPartition.Error = fmt.Errorf("%w (%w)", e.TopicPartition.Error, ErrResent)
			}
			p.events <- e
		case *kafka.Stats:
			if !c.retired.Load() {
				p.guard.Observe(e.String())
				p.events <- e
			}
		default:
			if !c.retired.Load() {
				p.events <- e
			}
		}
	}
}

// Events are the delivery reports, client errors and statistics of every client; closed by Close.
func (p *Producer) Events() <-chan kafka.Event { return p.events }

// Guard checks for the stall until ctx ends (see Guard.Run), and calls
// gaveUp if a re-creation failed: then the client may hang.
func (p *Producer) Guard(ctx context.Context, gaveUp func(error)) {
	if err := p.guard.Run(ctx, p.replace); err != nil {
		gaveUp(err)
	}
}

// Healthy returns why the guard gave up, if it did.
func (p *Producer) Healthy() error { return p.guard.Healthy() }

// Recovered is how many times the client was re-created.
func (p *Producer) Recovered() int64 { return p.recovered.Load() }

// Flush waits up to timeout for every event to be reported, and returns how
// many were not. It flushes in short steps, so that a re-creation may go on.
func (p *Producer) Flush(timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		p.mu.RLock()
		left := p.c.p.Flush(int(min(time.Until(deadline), 100*time.Millisecond).Milliseconds()))
		p.mu.RUnlock()
		if left == 0 || !time.Now().Before(deadline) {
			return left
		}
	}
}

// Purge purges the client's queues, as kafka.Producer.Purge.
func (p *Producer) Purge(flags int) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.c.p.Purge(flags)
}

// GetFatalError returns the client's fatal error, if any.
func (p *Producer) GetFatalError() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.c.p.GetFatalError()
}

// GetMetadata asks the cluster's metadata, as kafka.Producer.GetMetadata.
func (p *Producer) GetMetadata(topic *string, all bool, timeoutMs int) (*kafka.Metadata, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.c.p.GetMetadata(topic, all, timeoutMs)
}

// Close closes the client, waits for those being replaced, and closes Events.
func (p *Producer) Close() {
	p.mu.Lock()
	p.closed = true
	p.c.close()
	p.mu.Unlock()
	p.closing.Wait()
	close(p.events)
}

// replace replaces the client with a new one and sends again, in their
// order, the events the old one still held; then it closes the old one.
// A Produce waits only while the clients are swapped.
func (p *Producer) replace(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closing.Add(1) // Close waits for this re-creation, which may outlive the guard
	p.mu.Unlock()
	fresh, err := p.newClient()
	if err != nil {
		p.closing.Done()
		return err
	}
	p.mu.Lock()
	if p.closed { // the run ended meanwhile
		p.mu.Unlock()
		fresh.close()
		p.closing.Done()
		return nil
	}
	old := p.c
	old.retired.Store(true) // before the events are read: a failure it reports after is left to the new client
	// Events still queued were not written: purged now, the old client cannot write them after the new one.
	_ = old.p.Purge(kafka.PurgeQueue | kafka.PurgeNonBlocking)
	p.c = fresh
	p.qmu.Lock()
	seqs := slices.Sorted(maps.Keys(p.pending)) // in the order they were first sent
	var refused []kafka.Event
	for _, seq := range seqs {
		h := p.pending[seq]
		h.resent = true // the old client may have written it
		if err := p.produce(fresh.p, seq, h); err != nil {
			delete(p.pending, seq)
			refused = append(refused, &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: h.m.TopicPartition.Topic,
				Partition: kafka.PartitionAny, Error: fmt.Errorf("%w (%w)", err, ErrResent)}, Opaque: h.m.Opaque})
		}
	}
	p.qmu.Unlock()
	p.mu.Unlock()
	for _, e := range refused {
		p.events <- e
	}
	p.recovered.Add(1)
	p.log.Warn("Leader stall: the events the old client held were sent again; those it had in flight may be written twice",
		"resent", len(seqs))
	_ = old.p.Purge(kafka.PurgeInFlight)
	closed := make(chan struct{})
	go func() {
		defer p.closing.Done()
		old.close()
		close(closed)
	}()
	select {
	case <-closed:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close the stalled client: %w", ctx.Err())
	}
}
