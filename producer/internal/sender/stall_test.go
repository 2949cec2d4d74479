package sender

import (
	"bytes"
	"context"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/trace"

	"github.com/event-driven-go/kafka-go/producer/internal/event"
	"github.com/event-driven-go/kafka-go/producer/internal/leaderstall"
)

// guarded gives s a leader-stall guard that asks ask instead of the
// cluster, with the times of a test, and tells it, until the first
// re-creation, that the client holds no leader for partition 0 while events
// wait: the view of a client stuck in librdkafka#5430. The client's own
// statistics must be off.
func guarded(t *testing.T, s *Sender, ask func(context.Context) (map[int32]int32, error)) *leaderstall.Guard {
	t.Helper()
	g := leaderstall.New(s.opts.Topic, s.log, ask)
	g.After, g.Every = time.Second, 100*time.Millisecond
	b, err := os.ReadFile("testdata/stats-up.json")
	if err != nil {
		t.Fatal(err)
	}
	old := `"partition":0, "broker":1, "leader":1, "desired":false, "unknown":false, "msgq_cnt":0,`
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("the recorded statistics lack %q", old)
	}
	stuck := strings.Replace(string(b), old, `"partition":0, "broker":-1, "leader":-1, "desired":false, "unknown":false, "msgq_cnt":5,`, 1)
	g.Observe(stuck)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		for s.Counts().Recovered == 0 {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
				g.Observe(stuck)
			}
		}
	}()
	s.guard = g
	return g
}

// While the leader is away, the guard takes the client for stalled (the
// cluster names a leader it does not hold): the new client sends again what
// the old one held, and once the leader is back every event is delivered,
// counted once, and in the topic.
func TestSender_leaderStallRecreatesTheClientAndLosesNothing(t *testing.T) {
	mc := mockCluster(t, 3)
	var out syncBuffer
	const n = 400
	goroutines := runtime.NumGoroutine()
	s := newSender(t, mc, Options{Interval: 10 * time.Millisecond, Count: n, Source: quietSource},
		&out, kafka.ConfigMap{"reconnect.backoff.max.ms": 500, "statistics.interval.ms": 600_000})
	leader := leaderOf(t, s)
	guarded(t, s, func(context.Context) (map[int32]int32, error) { return map[int32]int32{0: int32(leader)}, nil })

	ran := runInBackground(context.Background(), s)
	waitDelivered(s)
	if err := mc.SetBrokerDown(leader); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); s.Counts().Recovered == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery within 10s:\n%s", out.String())
		}
	}
	// Events queue in the new client too while the leader is away.
	time.Sleep(time.Second)
	if err := mc.SetBrokerUp(leader); err != nil {
		t.Fatal(err)
	}
	r := <-ran
	if r.err != nil {
		t.Fatalf("Run: %v\n%s", r.err, out.String())
	}
	if c := s.Counts(); r.res.Attempted != n || c.Delivered != n || c.Failed != 0 || c.Unknown != 0 || r.res.Recovered != 1 {
		t.Fatalf("result %+v, counts %+v; want all %d delivered, each counted once, after one recovery", r.res, c, n)
	}
	// The client library's goroutines end soon after Close returns.
	for deadline := time.Now().Add(time.Second); runtime.NumGoroutine() > goroutines; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after the run, %d before: the old client's were left behind", runtime.NumGoroutine(), goroutines)
		}
	}
	want := `level=WARN msg="Leader stall (librdkafka#5430): re-creating the Kafka client" topic=timestamp ` +
		`stall="partition 0: the client holds no leader, the cluster's is broker ` + strconv.Itoa(leader) + `"`
	if !strings.Contains(out.String(), want) {
		t.Errorf("no line %q:\n%s", want, out.String())
	}
	seqs := readSequences(t, mc.BootstrapServers(), "timestamp", n, 20*time.Second)
	for seq := 1; seq <= n; seq++ {
		if seqs[seq] == 0 {
			t.Fatalf("event %d is not in the topic", seq)
		}
	}
}

// The guard's checks take no lock a send needs: while one waits for the
// cluster's answer, events go on being sent and delivered.
func TestSender_aCheckDoesNotHoldUpSends(t *testing.T) {
	mc := mockCluster(t, 1)
	var out syncBuffer
	s := newSender(t, mc, Options{Interval: 5 * time.Millisecond, Source: quietSource}, &out,
		kafka.ConfigMap{"statistics.interval.ms": 600_000})
	asked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	g := guarded(t, s, func(ctx context.Context) (map[int32]int32, error) {
		once.Do(func() { close(asked) })
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, ctx.Err()
	})
	g.Every = 3 * time.Second // the check waits that long for its answer
	ctx, cancel := context.WithCancel(context.Background())
	ran := runInBackground(ctx, s)
	select {
	case <-asked:
	case <-time.After(10 * time.Second):
		t.Fatal("the guard never asked the cluster")
	}
	before := s.Counts().Delivered
	time.Sleep(time.Second)
	during := s.Counts().Delivered - before
	close(release)
	cancel()
	if r := <-ran; r.err != nil {
		t.Fatalf("Run: %v", r.err)
	}
	if during < 50 {
		t.Errorf("%d events delivered in the second the check waited, want about 200", during)
	}
}

// A re-creation that outlasts its bound makes the sender unhealthy at once
// and ends its run with the error.
func TestSender_aRecreationOverItsBoundFailsTheRun(t *testing.T) {
	mc := mockCluster(t, 1)
	var out syncBuffer
	s := newSender(t, mc, Options{Interval: 10 * time.Millisecond, Source: quietSource}, &out,
		kafka.ConfigMap{"statistics.interval.ms": 600_000})
	g := guarded(t, s, func(context.Context) (map[int32]int32, error) { return map[int32]int32{0: 1}, nil })
	g.Bound = time.Nanosecond // no client closes that fast
	ran := runInBackground(context.Background(), s)
	select {
	case <-s.Failed():
	case <-time.After(10 * time.Second):
		t.Fatalf("the guard did not give up:\n%s", out.String())
	}
	if s.Healthy() == nil {
		t.Error("healthy once the guard gave up")
	}
	if r := <-ran; r.err == nil || !strings.Contains(r.err.Error(), "took longer than") {
		t.Errorf("Run = %v, want the guard's error", r.err)
	}
}

func TestSender_outageIsNoLeaderStall(t *testing.T) {
	mc := mockCluster(t, 1)
	var out syncBuffer
	const n = 300
	s := newSender(t, mc, Options{Interval: 10 * time.Millisecond, Count: n, Source: quietSource},
		&out, kafka.ConfigMap{"reconnect.backoff.max.ms": 500, "statistics.interval.ms": 100})
	s.guard.After, s.guard.Every = 2*time.Second, 100*time.Millisecond
	ran := runInBackground(context.Background(), s)
	waitDelivered(s)
	if err := mc.SetBrokerDown(1); err != nil {
		t.Fatal(err)
	}
	// Long enough for a check whose metadata request fails, and one whose
	// request waits for the broker's return.
	time.Sleep(6 * time.Second)
	if err := mc.SetBrokerUp(1); err != nil {
		t.Fatal(err)
	}
	r := <-ran
	if r.err != nil || r.res.Delivered != n || r.res.Recovered != 0 {
		t.Fatalf("result %+v, error %v: want all %d delivered, no recovery\n%s", r.res, r.err, n, out.String())
	}
}

// With linger.ms, events wait at every check; reports keep coming, though.
func TestSender_busyClientIsNoLeaderStall(t *testing.T) {
	mc := mockCluster(t, 1)
	var out syncBuffer
	const n = 3000
	s := newSender(t, mc, Options{Interval: time.Millisecond, Count: n, Source: quietSource},
		&out, kafka.ConfigMap{"linger.ms": 100, "statistics.interval.ms": 100})
	s.guard.After, s.guard.Every = time.Second, 100*time.Millisecond
	res, err := s.Run(context.Background())
	if err != nil || res.Delivered != n || res.Recovered != 0 {
		t.Fatalf("result %+v, error %v: want all %d delivered, no recovery\n%s", res, err, n, out.String())
	}
}

// leaderOf returns the broker that leads partition 0 of the sender's topic.
func leaderOf(t *testing.T, s *Sender) int {
	t.Helper()
	md, err := s.c.p.GetMetadata(&s.opts.Topic, false, 5000)
	if err != nil {
		t.Fatal(err)
	}
	return int(md.Topics[s.opts.Topic].Partitions[0].Leader)
}

// readSequences reads partition 0 of topic until it has seen sequences 1 to
// n or the timeout passed, and counts the copies of each.
func readSequences(t *testing.T, bootstrap, topic string, n int, timeout time.Duration) map[int]int {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": "reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	seqs := map[int]int{}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		m, err := c.ReadMessage(100 * time.Millisecond)
		if err != nil {
			continue
		}
		seq, _ := strconv.Atoi(header(m, "ce_id"))
		if seqs[seq]++; seqs[seq] == 1 && len(seqs) == n {
			break
		}
	}
	return seqs
}

// Each event is counted once, whichever client reports first: a replaced
// client's delivery settles an event sent again (the new client's report of
// it is then no second count), and its failures are left to the new client,
// whose failure of an event the old one may have written is unknown.
func TestReport_countsEachEventOnceAcrossClients(t *testing.T) {
	var out syncBuffer
	s, err := New(Options{Topic: "timestamp", Source: quietSource, Kafka: kafka.ConfigMap{"bootstrap.servers": "localhost:1"}},
		testLogger(&out))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	old, fresh := &client{}, &client{}
	old.retired.Store(true)
	span := trace.SpanFromContext(context.Background())
	for id := uint64(1); id <= 3; id++ {
		s.pending[id] = pending{ev: event.Event{ID: id, Time: time.Now()}, span: span, maybeWritten: true}
	}
	topic := "timestamp"
	ok := kafka.TopicPartition{Topic: &topic, Offset: 7}
	purged := kafka.TopicPartition{Topic: &topic, Error: kafka.NewError(kafka.ErrPurgeInflight, "purged", false)}
	timedOut := kafka.TopicPartition{Topic: &topic, Error: kafka.NewError(kafka.ErrMsgTimedOut, "timed out", false)}

	s.report(old, 1, ok)         // the old client wrote it after all
	s.report(fresh, 1, ok)       // and so did the new one: written twice, counted once
	s.report(old, 2, purged)     // left to the new client
	s.report(fresh, 2, ok)       // delivered
	s.report(old, 3, purged)     // left to the new client
	s.report(fresh, 3, timedOut) // the old one may have written it: unknown, not failed
	c := s.Counts()
	if c.Delivered != 2 || c.Unknown != 1 || c.Failed != 0 || len(s.pending) != 0 {
		t.Errorf("delivered %d, unknown %d, failed %d, %d pending; want 2, 1, 0 and none", c.Delivered, c.Unknown, c.Failed, len(s.pending))
	}
}
