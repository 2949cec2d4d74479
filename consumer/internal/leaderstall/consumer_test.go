package leaderstall

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

const source = "timestamp"

// newCluster starts a mock cluster of brokers brokers with the topic, one
// partition, on broker 1; the mock cluster coordinates "test-group" on
// broker 2 when there are three.
func newCluster(t *testing.T, brokers int) *kafka.MockCluster {
	t.Helper()
	mc, err := kafka.NewMockCluster(brokers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mc.Close)
	if err := mc.CreateTopic(source, 1, 1); err != nil {
		t.Fatal(err)
	}
	return mc
}

// produce writes the messages from to to, their numbers as keys, one a batch, so
// that a fetch of a few kilobytes takes a few.
func produce(t *testing.T, bootstrap string, from, to int) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "batch.num.messages": 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	reports := make(chan kafka.Event, to-from+1)
	tp := source
	for i := from; i <= to; i++ {
		if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &tp, Partition: 0},
			Key: []byte(strconv.Itoa(i)), Value: []byte(strings.Repeat("x", 200))}, reports); err != nil {
			t.Fatal(err)
		}
	}
	for i := from; i <= to; i++ {
		if m := (<-reports).(*kafka.Message); m.TopicPartition.Error != nil {
			t.Fatal(m.TopicPartition.Error)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the clients' goroutines and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newConsumer is a Consumer of the topic in group "test-group", with the
// extra properties props, whose guard asks ask instead of the cluster, with
// the times of a test.
func newConsumer(t *testing.T, mc *kafka.MockCluster, out *syncBuffer, props kafka.ConfigMap, ask func(context.Context) (View, error)) *Consumer {
	t.Helper()
	cm := kafka.ConfigMap{"bootstrap.servers": mc.BootstrapServers(), "group.id": "test-group", "auto.offset.reset": "earliest"}
	for k, v := range props {
		cm[k] = v
	}
	log := slog.New(slog.NewJSONHandler(out, nil))
	s, err := NewConsumer(cm, source, log)
	if err != nil {
		t.Fatal(err)
	}
	s.guard = New(source, log, ask)
	s.guard.After, s.guard.Every = 2*time.Second, 200*time.Millisecond
	return s
}

// stuck tells g, every few milliseconds until the test ends, that the client
// holds no leader for partition 0: the view of a client stuck in
// librdkafka#5430. The client's own statistics must be off.
func stuck(t *testing.T, g *Guard) {
	t.Helper()
	observing(t, g, statsWith(t, "-1", "up"))
}

// settled is the cluster's answer: broker 1 leads partition 0, the coordinator answers.
func settled(context.Context) (View, error) {
	return View{Leaders: map[int32]int32{0: 1}, HasCoordinator: true}, nil
}

// The mock cluster coordinates "test-group" on broker 2 and leads the topic
// on broker 1. With broker 2 down the client holds no coordinator; the guard
// is told that the cluster's answers, as a cluster would that moved it where
// the stuck client does not look: librdkafka#5430's lost coordinator. Poll
// re-creates the client (the old one closes beside it), and once the
// coordinator is back, every event arrives: nothing is lost.
func TestConsumer_recreatesAClientThatHoldsNoCoordinator(t *testing.T) {
	mc := newCluster(t, 3)
	const n = 300
	produce(t, mc.BootstrapServers(), 1, n)
	var out syncBuffer
	s := newConsumer(t, mc, &out, kafka.ConfigMap{
		"max.partition.fetch.bytes": 2000, "queued.max.messages.kbytes": 1, "queued.min.messages": 5,
		"auto.commit.interval.ms": 100, "group.protocol": "consumer", "statistics.interval.ms": 200,
	}, settled)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the consumer's lines:\n%s", out.String())
		}
	})
	var assigned, revokedReplacing atomic.Int64
	if err := s.Subscribe(func(_ *kafka.Consumer, e kafka.Event) error {
		switch e.(type) {
		case kafka.AssignedPartitions:
			assigned.Add(1)
		case kafka.RevokedPartitions:
			if s.Replacing() {
				revokedReplacing.Add(1)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var gaveUp atomic.Pointer[error]
	go s.Guard(ctx, func(err error) { gaveUp.Store(&err) })

	seen := map[string]bool{}
	down, up := false, false
	// The old client cannot leave the group: the new one gets the partition once
	// the old one's session expired, 45 s.
	for deadline := time.Now().Add(150 * time.Second); len(seen) < n && time.Now().Before(deadline); {
		if m, ok := s.Poll(100).(*kafka.Message); ok {
			seen[string(m.Key)] = true
			time.Sleep(5 * time.Millisecond) // handling takes a while
		}
		if !down && len(seen) >= 20 {
			if err := mc.SetBrokerDown(2); err != nil {
				t.Fatal(err)
			}
			down = true
			t.Logf("%s: broker 2 down", time.Now().Format("15:04:05.000"))
		}
		if down && !up && s.Recovered() > 0 {
			if err := mc.SetBrokerUp(2); err != nil {
				t.Fatal(err)
			}
			up = true
			t.Logf("%s: recovered, broker 2 up, %d seen", time.Now().Format("15:04:05.000"), len(seen))
		}
	}
	cancel()
	t.Logf("%s: %d seen", time.Now().Format("15:04:05.000"), len(seen))
	if s.Recovered() < 1 || len(seen) != n {
		t.Fatalf("recovered %d times, %d distinct events; want all %d and a recovery", s.Recovered(), len(seen), n)
	}
	if err := gaveUp.Load(); err != nil {
		t.Errorf("the guard gave up: %v", *err)
	}
	if s.Healthy() != nil {
		t.Errorf("Healthy = %v after a recovery, want nil", s.Healthy())
	}
	var line struct{ Level, Msg, Stall string }
	for l := range strings.Lines(out.String()) {
		if strings.Contains(l, "Leader stall") {
			_ = json.Unmarshal([]byte(l), &line)
			break
		}
	}
	if line.Level != "WARN" || line.Stall != "the client holds no group coordinator, the cluster's answers" {
		t.Errorf("stall line %+v, want a warning naming the lost coordinator", line)
	}
	if assigned.Load() < 2 || revokedReplacing.Load() < 1 {
		t.Errorf("%d assignments, %d revokes while replacing; want the new client assigned and the old one's partitions revoked first",
			assigned.Load(), revokedReplacing.Load())
	}
	start := time.Now()
	var committed atomic.Bool
	if err := s.Close(10*time.Second, func(*kafka.Consumer) { committed.Store(true) }); err != nil {
		t.Errorf("Close: %v", err)
	}
	if took := time.Since(start); took > 11*time.Second || !committed.Load() {
		t.Errorf("Close took %s, called its first function: %t", took, committed.Load())
	}
}

// The guard's checks run outside the poll loop: while one waits for the
// cluster's answer, events go on arriving.
func TestConsumer_aCheckDoesNotHoldUpPoll(t *testing.T) {
	mc := newCluster(t, 1)
	var out syncBuffer
	asked, release := make(chan struct{}, 1), make(chan struct{})
	defer close(release)
	// No statistics of its own: the test tells the guard what the client holds.
	s := newConsumer(t, mc, &out, kafka.ConfigMap{"statistics.interval.ms": 600_000}, func(ctx context.Context) (View, error) {
		select {
		case asked <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return View{}, ctx.Err()
	})
	s.guard.Every = 5 * time.Second // the check waits that long for its answer
	stuck(t, s.guard)
	if err := s.Subscribe(func(*kafka.Consumer, kafka.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close(5*time.Second, func(*kafka.Consumer) {}) }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Guard(ctx, func(error) {})
	var during int
	for deadline := time.Now().Add(20 * time.Second); during < 3 && time.Now().Before(deadline); {
		select {
		case <-asked:
			produce(t, mc.BootstrapServers(), 1, 3)
			// The check waits for its answer meanwhile.
			for until := time.Now().Add(4 * time.Second); during < 3 && time.Now().Before(until); {
				if _, ok := s.Poll(100).(*kafka.Message); ok {
					during++
				}
			}
			if during < 3 {
				t.Fatalf("%d of 3 events arrived while the check waited", during)
			}
		default:
			s.Poll(100)
		}
	}
	if during != 3 {
		t.Fatalf("the guard never asked the cluster:\n%s", out.String())
	}
}

// A re-creation that outlasts its bound makes the guard give up: the
// consumer is unhealthy at once, and gaveUp has the error, to end the run.
func TestConsumer_aRecreationOverItsBoundGivesUp(t *testing.T) {
	mc := newCluster(t, 1)
	var out syncBuffer
	s := newConsumer(t, mc, &out, kafka.ConfigMap{"statistics.interval.ms": 600_000}, settled)
	s.guard.After, s.guard.Bound = 300*time.Millisecond, time.Nanosecond // no close and create is that fast
	stuck(t, s.guard)
	if err := s.Subscribe(func(*kafka.Consumer, kafka.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close(5*time.Second, func(*kafka.Consumer) {}) }()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gaveUp := make(chan error, 1)
	go s.Guard(ctx, func(err error) { gaveUp <- err })
	var err error
	for err == nil && ctx.Err() == nil {
		select {
		case err = <-gaveUp:
		default:
			s.Poll(100)
		}
	}
	if err == nil || !strings.Contains(err.Error(), "took longer than its bound") {
		t.Fatalf("the guard gave up with %v, want the bound's error:\n%s", err, out.String())
	}
	if h := s.Healthy(); h == nil || h.Error() != err.Error() {
		t.Errorf("Healthy = %v, want %v", h, err)
	}
}

// Close keeps to its budget even when the group's coordinator is gone:
// first (the commit) runs, and Close returns within the budget.
func TestConsumer_closeKeepsToItsBudget(t *testing.T) {
	mc := newCluster(t, 3)
	produce(t, mc.BootstrapServers(), 1, 1)
	var out syncBuffer
	s := newConsumer(t, mc, &out, nil, settled)
	if err := s.Subscribe(func(*kafka.Consumer, kafka.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		if _, ok := s.Poll(100).(*kafka.Message); ok {
			break
		}
	}
	if err := mc.SetBrokerDown(2); err != nil {
		t.Fatal(err)
	}
	const budget = 2 * time.Second
	start := time.Now()
	var first atomic.Pointer[kafka.Consumer]
	err := s.Close(budget, func(c *kafka.Consumer) {
		first.Store(c)
		_, _ = c.Commit() // waits for a coordinator that does not come
	})
	if took := time.Since(start); took > budget+time.Second {
		t.Errorf("Close took %s, want at most its budget of %s", took.Round(time.Millisecond), budget)
	}
	if first.Load() != s.Kafka() {
		t.Error("Close did not hand the client to its first function")
	}
	t.Logf("Close: %v", err)
}
