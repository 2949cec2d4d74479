package leaderstall

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Consumer is a group consumer of one topic that its Guard re-creates after
// a leader stall; the new client resumes from the committed offsets. Poll
// does the re-creation, in the goroutine that polls, when the guard asks:
// a kafka.Consumer is not to be used from two goroutines at once.
type Consumer struct {
	guard     *Guard
	cm        kafka.ConfigMap
	topic     string
	rebalance kafka.RebalanceCb
	recreate  chan chan error // the guard's requests, answered by Poll
	recovered atomic.Int64
	closing   sync.WaitGroup // replaced clients, closing

	c         *kafka.Consumer
	current   atomic.Pointer[kafka.Consumer] // c, for the callbacks of clients being closed
	replacing bool                           // while Poll replaces the client
}

// NewConsumer creates the consumer of cm for topic, and its guard.
func NewConsumer(cm kafka.ConfigMap, topic string, log *slog.Logger) (*Consumer, error) {
	g := New(topic, log, Ask(cm, topic, fmt.Sprint(cm["group.id"])))
	// A slow but healthy broker answers within request.timeout.ms: no stall is seen before.
	if ms, err := strconv.Atoi(fmt.Sprint(cm["request.timeout.ms"])); err == nil {
		g.After = max(g.After, time.Duration(ms)*time.Millisecond)
	}
	if every, _ := strconv.Atoi(fmt.Sprint(cm["statistics.interval.ms"])); every <= 0 {
		log.Warn("The leader-stall guard is off: it reads the client's statistics, and statistics.interval.ms is 0")
	}
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		return nil, fmt.Errorf("create consumer: %w", err)
	}
	s := &Consumer{guard: g, cm: cm, topic: topic, recreate: make(chan chan error), c: c}
	s.current.Store(c)
	return s, nil
}

// Kafka is the current client; use it only in the goroutine that polls.
func (s *Consumer) Kafka() *kafka.Consumer { return s.c }

// Subscribe joins the group; rebalance is called with each change of the
// current client's partitions. The topic's metadata is fetched first, into
// the client's cache: with the consumer protocol (KIP-848) the broker names
// assigned topics by id, and librdkafka 2.15 sets aside an assignment whose
// topic id it cannot resolve yet, for up to a minute seen here.
func (s *Consumer) Subscribe(rebalance kafka.RebalanceCb) error {
	s.rebalance = rebalance
	_, _ = s.c.GetMetadata(&s.topic, false, 5000) // at worst, the join resolves the id itself
	return s.c.SubscribeTopics([]string{s.topic}, func(c *kafka.Consumer, e kafka.Event) error {
		if c != s.current.Load() {
			return nil // a replaced client, closing: its partitions are the new one's business
		}
		return rebalance(c, e)
	})
}

// Poll polls the current client, as kafka.Consumer.Poll, after answering the
// guard's request for a new client, if one waits. The guard reads the
// client's statistics on their way.
func (s *Consumer) Poll(timeoutMs int) kafka.Event {
	select {
	case reply := <-s.recreate:
		reply <- s.replace()
	default:
	}
	e := s.c.Poll(timeoutMs)
	if st, ok := e.(*kafka.Stats); ok {
		s.guard.Observe(st.String())
	}
	return e
}

// Replacing tells a rebalance callback that the partitions go because the
// client is being replaced: a commit that waits for an answer may get none.
func (s *Consumer) Replacing() bool { return s.replacing }

// Recovered is how many times the client was re-created.
func (s *Consumer) Recovered() int64 { return s.recovered.Load() }

// Healthy returns why the guard gave up, if it did.
func (s *Consumer) Healthy() error { return s.guard.Healthy() }

// Guard checks for the stall until ctx ends (see Guard.Run), and calls
// gaveUp if a re-creation failed: then the client may hang.
func (s *Consumer) Guard(ctx context.Context, gaveUp func(error)) {
	if err := s.guard.Run(ctx, s.ask); err != nil {
		gaveUp(err)
	}
}

// ask asks Poll for a new client and waits for it.
func (s *Consumer) ask(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case s.recreate <- reply:
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

// replace replaces the client with a new one. The old one gives its
// partitions up, and closes beside the new one: without a coordinator to
// leave, its close waits for its session to expire (45 s). It commits on its
// way out only if its group still answers.
func (s *Consumer) replace() error {
	s.replacing = true
	s.unsubscribe(2 * time.Second)
	s.replacing = false
	c, err := kafka.NewConsumer(&s.cm)
	if err != nil {
		return fmt.Errorf("create consumer: %w", err)
	}
	old := s.c
	s.c = c
	s.current.Store(c) // the old one's callbacks, as it closes, change nothing here
	s.closing.Go(func() { _ = old.Close() })
	s.recovered.Add(1)
	return s.Subscribe(s.rebalance)
}

// unsubscribe gives the partitions up within d; the rebalance callback runs in this goroutine.
func (s *Consumer) unsubscribe(d time.Duration) {
	deadline := time.Now().Add(d)
	if err := s.c.Unsubscribe(); err == nil {
		for a, err := s.c.Assignment(); err == nil && len(a) > 0 && time.Now().Before(deadline); a, err = s.c.Assignment() {
			s.c.Poll(100)
		}
	}
}

// Close calls first with the client (to commit), gives the partitions up
// (closing during a rebalance can hang in librdkafka), closes the client,
// and waits for those replaced, all within d; after that it leaves them and
// says so.
func (s *Consumer) Close(d time.Duration, first func(*kafka.Consumer)) error {
	closed := make(chan error, 1)
	go func() {
		first(s.c)
		s.unsubscribe(d)
		err := s.c.Close()
		s.closing.Wait()
		closed <- err
	}()
	select {
	case err := <-closed:
		return err
	case <-time.After(d):
		return fmt.Errorf("the Kafka clients are still closing after %s; leaving them", d)
	}
}
