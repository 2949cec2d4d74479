package receiver

import (
	"context"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/consumer/internal/config"
	"github.com/event-driven-go/kafka-go/consumer/internal/leaderstall"
)

// guarded gives r a leader-stall guard that asks ask instead of the
// cluster, with the times of a test.
func guarded(r *Receiver, ask func(context.Context) (leaderstall.View, error)) *leaderstall.Guard {
	g := leaderstall.New(r.cfg.Topic, r.log, ask)
	g.After, g.Every = 2*time.Second, 200*time.Millisecond
	r.guard = g
	return g
}

// stuck tells g, every few milliseconds until the test ends, that the client
// holds no leader for partition 0: the view of a client stuck in
// librdkafka#5430. The client's own statistics must be off.
func stuck(t *testing.T, g *leaderstall.Guard) {
	t.Helper()
	b, err := os.ReadFile("testdata/stats-up.json")
	if err != nil {
		t.Fatal(err)
	}
	js := strings.Replace(string(b), `"partition":0, "broker":1, "leader":1,`, `"partition":0, "broker":-1, "leader":-1,`, 1)
	g.Observe(js)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
				g.Observe(js)
			}
		}
	}()
}

// The mock cluster coordinates "test-group" on broker 2 and leads the topic
// on broker 1. With broker 2 down the client holds no coordinator; the
// guard is told that the cluster's answers, as a cluster would that moved
// it where the stuck client does not look: librdkafka#5430's lost
// coordinator. The client is re-created without it (the old one closes
// without a coordinator to leave), and once the coordinator is back, every
// event arrives.
func TestReceiver_recreatesAClientThatHoldsNoCoordinator(t *testing.T) {
	mc := newMockCluster(t, 3, map[string]int{topic: 1, topic + ".dlq": 1})
	const n = 300
	produceSingly(t, mc.BootstrapServers(), n)
	var out syncBuffer
	r := newReceiver(t, mc, &out, config.Config{}, kafka.ConfigMap{
		"max.partition.fetch.bytes": 2000, "queued.max.messages.kbytes": 1, "queued.min.messages": 5,
		"auto.commit.interval.ms": 100, "group.protocol": "consumer", "statistics.interval.ms": 200,
	})
	guarded(r, func(context.Context) (leaderstall.View, error) {
		return leaderstall.View{Leaders: map[int32]int32{0: 1}, HasCoordinator: true}, nil
	})
	r.now = func() time.Time { time.Sleep(5 * time.Millisecond); return time.Now() }
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the consumer's lines but events:\n%s", withoutEvents(out.String()))
		}
	})
	ids := func() map[string]bool {
		seen := map[string]bool{}
		for _, rec := range out.records(t, "Received: ") {
			seen[rec["id"].(string)] = true
		}
		return seen
	}
	down := false
	res := runUntil(t, r, time.Minute, func() bool {
		if !down && len(ids()) >= 20 {
			if err := mc.SetBrokerDown(2); err != nil {
				t.Fatal(err)
			}
			down = true
		}
		if down && r.recovered.Load() > 0 {
			if err := mc.SetBrokerUp(2); err != nil {
				t.Fatal(err)
			}
		}
		return len(ids()) == n
	})
	if res.Recovered < 1 || len(ids()) != n {
		t.Fatalf("result %+v, %d distinct events; want all %d and a recovery:\n%s", res, len(ids()), n, out.String())
	}
	line := out.records(t, "Leader stall")[0]
	if line["level"] != "WARN" || line["stall"] != "the client holds no group coordinator, the cluster's answers" {
		t.Errorf("stall line %v", line)
	}
}

// The guard's checks run outside the poll loop: while one waits for the
// cluster's answer, events go on arriving.
func TestReceiver_aCheckDoesNotHoldUpThePollLoop(t *testing.T) {
	mc := mockCluster(t)
	var out syncBuffer
	// No statistics of its own: the test tells the guard what the client holds.
	r := newReceiver(t, mc, &out, config.Config{}, kafka.ConfigMap{"statistics.interval.ms": 600_000})
	asked, release := make(chan struct{}, 1), make(chan struct{})
	defer close(release)
	g := guarded(r, func(ctx context.Context) (leaderstall.View, error) {
		select {
		case asked <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return leaderstall.View{}, ctx.Err()
	})
	g.Every = 2 * time.Second // the check waits that long for its answer
	stuck(t, g)
	var during atomic.Int64
	runUntil(t, r, 20*time.Second, func() bool {
		select {
		case <-asked:
			produce(t, mc.BootstrapServers(), goodEvent(1), goodEvent(2), goodEvent(3))
			waitFor(t, time.Second, "events while the check waits", func() bool { return len(out.records(t, "Received: ")) == 3 })
			during.Store(3)
		default:
		}
		return during.Load() == 3
	})
	if during.Load() != 3 {
		t.Fatalf("the guard never asked the cluster:\n%s", out.String())
	}
}

// A re-creation that outlasts its bound leaves the consumer unhealthy at
// once and ends its run with the error.
func TestReceiver_aRecreationOverItsBoundFailsTheRun(t *testing.T) {
	mc := mockCluster(t)
	var out syncBuffer
	r := newReceiver(t, mc, &out, config.Config{}, kafka.ConfigMap{"statistics.interval.ms": 600_000})
	g := guarded(r, func(context.Context) (leaderstall.View, error) {
		return leaderstall.View{Leaders: map[int32]int32{0: 1}, HasCoordinator: true}, nil
	})
	g.After, g.Bound = 300*time.Millisecond, time.Nanosecond // no close and create is that fast
	stuck(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := r.Run(ctx); done <- err }()
	select {
	case <-r.Failed():
	case <-ctx.Done():
		t.Fatalf("the guard did not give up:\n%s", out.String())
	}
	if r.Healthy() == nil {
		t.Error("healthy once the guard gave up")
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "took longer than") {
		t.Errorf("Run = %v, want the guard's error", err)
	}
}

// produceSingly writes events 1 to n, one a batch, so that a fetch of a few
// kilobytes takes a few.
func produceSingly(t *testing.T, bootstrap string, n int) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "batch.num.messages": 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	reports := make(chan kafka.Event, 1)
	for i := range n {
		if err := p.Produce(goodEvent(i+1), reports); err != nil {
			t.Fatal(err)
		}
		if m := (<-reports).(*kafka.Message); m.TopicPartition.Error != nil {
			t.Fatal(m.TopicPartition.Error)
		}
	}
}

// withoutEvents is log without its "Received:" lines.
func withoutEvents(log string) string {
	var keep []string
	for l := range strings.Lines(log) {
		if !strings.Contains(l, `"msg":"Received: `) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}
