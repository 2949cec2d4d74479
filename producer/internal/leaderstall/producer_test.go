package leaderstall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// harness is a Producer to the topic "timestamp" of a mock cluster. It
// sends events numbered from 1 (the number is the Opaque, and the "seq"
// header) and counts the delivery reports that come on Events.
type harness struct {
	t      *testing.T
	mc     *kafka.MockCluster
	p      *Producer
	log    *syncWriter
	topic  string
	closed bool

	mu        sync.Mutex
	reports   map[uint64]int // by event
	delivered int
	failed    int           // surely not written
	unknown   int           // maybe written: timed out, purged in flight, or sent again after a stall
	fatal     []kafka.Error // fatal client errors
	ended     chan struct{} // closed once Events is
}

// newHarness starts a mock cluster of brokers, with the topic's one
// partition, and an idempotent Producer whose own statistics come too
// seldom to matter, unless props, added last, say otherwise.
func newHarness(t *testing.T, brokers int, props kafka.ConfigMap) *harness {
	t.Helper()
	mc, err := kafka.NewMockCluster(brokers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mc.Close)
	if err := mc.CreateTopic("timestamp", 1, 1); err != nil {
		t.Fatal(err)
	}
	cm := kafka.ConfigMap{"bootstrap.servers": mc.BootstrapServers(), "enable.idempotence": true, "allow.auto.create.topics": false,
		"go.delivery.report.fields": "none", "go.logs.channel.enable": true, "statistics.interval.ms": 600_000}
	maps.Copy(cm, props)
	h := &harness{t: t, mc: mc, log: &syncWriter{w: &bytes.Buffer{}}, topic: "timestamp", reports: map[uint64]int{}, ended: make(chan struct{})}
	h.p, err = NewProducer(cm, h.topic, slog.New(slog.NewTextHandler(h.log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.close)
	go h.count()
	for deadline := time.Now().Add(10 * time.Second); h.leader() < 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the topic has no leader after 10s")
		}
	}
	return h
}

// leader is the cluster's leader of partition 0, or -1.
func (h *harness) leader() int {
	md, err := h.p.GetMetadata(&h.topic, false, 5000)
	if err != nil || len(md.Topics[h.topic].Partitions) == 0 {
		return -1
	}
	return int(md.Topics[h.topic].Partitions[0].Leader)
}

func (h *harness) count() {
	defer close(h.ended)
	for e := range h.p.Events() {
		switch e := e.(type) {
		case *kafka.Message:
			seq, ok := e.Opaque.(uint64)
			if !ok {
				h.t.Errorf("a delivery report with the Opaque %v, not the one given to Produce", e.Opaque)
				continue
			}
			h.mu.Lock()
			h.reports[seq]++
			switch err := e.TopicPartition.Error; {
			case err == nil:
				h.delivered++
			case errors.Is(err, ErrResent) || code(err) == kafka.ErrPurgeInflight || code(err) == kafka.ErrMsgTimedOut:
				h.unknown++
			default:
				h.failed++
			}
			h.mu.Unlock()
		case kafka.Error:
			if e.IsFatal() {
				h.mu.Lock()
				h.fatal = append(h.fatal, e)
				h.mu.Unlock()
			}
		}
	}
}

// counts returns the delivered, failed and unknown events so far.
func (h *harness) counts() (delivered, failed, unknown int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.delivered, h.failed, h.unknown
}

// send produces n events, one every interval, or until ctx ends when n is
// 0; a full queue is waited out. It returns how many the client took.
func (h *harness) send(ctx context.Context, n int, interval time.Duration) int {
	seq := 0
	for n == 0 || seq < n {
		id := strconv.Itoa(seq + 1)
		m := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &h.topic, Partition: kafka.PartitionAny},
			Value: []byte(id), Headers: []kafka.Header{{Key: "seq", Value: []byte(id)}}, Opaque: uint64(seq + 1)}
		err := h.p.Produce(m)
		for code(err) == kafka.ErrQueueFull && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
			err = h.p.Produce(m)
		}
		if err != nil {
			if ctx.Err() == nil {
				h.t.Errorf("Produce %s: %v", id, err)
			}
			return seq
		}
		seq++
		select {
		case <-ctx.Done():
			return seq
		case <-time.After(interval):
		}
	}
	return seq
}

// sending sends as send does, in a goroutine; wait returns how many the client took.
func (h *harness) sending(ctx context.Context, n int, interval time.Duration) (wait func() int) {
	sent := make(chan int, 1)
	go func() { sent <- h.send(ctx, n, interval) }()
	return sync.OnceValue(func() int { return <-sent })
}

// waitDelivered returns once an event was delivered: the client connected and got its producer id.
func (h *harness) waitDelivered() {
	h.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if d, _, _ := h.counts(); d > 0 {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("nothing delivered within 10s:\n%s", h.log.String())
		}
	}
}

// guarding runs the Producer's guard until the test ends, and returns the
// error it gave up with, once it did.
func (h *harness) guarding() (gaveUp <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	failed, ended := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(ended)
		h.p.Guard(ctx, func(err error) { failed <- err })
	}()
	h.t.Cleanup(func() { cancel(); <-ended })
	return failed
}

// finish waits up to timeout for every report, closes the Producer and
// waits for the reports to end.
func (h *harness) finish(timeout time.Duration) {
	h.t.Helper()
	if left := h.p.Flush(timeout); left > 0 {
		h.t.Errorf("%d events not reported within %s", left, timeout)
	}
	h.close()
}

func (h *harness) close() {
	if !h.closed {
		h.closed = true
		h.p.Close()
		<-h.ended
	}
}

// checkOnce asserts that events 1 to n were each reported once, and delivered.
func (h *harness) checkOnce(n int) {
	h.t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	var wrong []string
	for seq := uint64(1); seq <= uint64(n); seq++ {
		if h.reports[seq] != 1 {
			wrong = append(wrong, fmt.Sprintf("%d: %d", seq, h.reports[seq]))
		}
	}
	if len(wrong) > 0 {
		h.t.Errorf("%d events not reported once (event: reports): %.300s", len(wrong), strings.Join(wrong, ", "))
	}
	if len(h.reports) != n || h.delivered != n || h.failed != 0 || h.unknown != 0 {
		h.t.Errorf("%d events reported: %d delivered, %d failed, %d unknown; want all %d delivered",
			len(h.reports), h.delivered, h.failed, h.unknown, n)
	}
}

// stalled gives the Producer a guard that asks ask instead of the cluster,
// with the times of a test, and tells it, until the first re-creation,
// that the client holds no leader for partition 0 while events wait: the
// view of a client stuck in librdkafka#5430. The client's own statistics
// must be off.
func (h *harness) stalled(ask func(context.Context) (map[int32]int32, error)) *Guard {
	h.t.Helper()
	g := New(h.topic, h.p.log, ask)
	g.After, g.Every = time.Second, 100*time.Millisecond
	stuck := statsOf(h.t, "-1", "-1", "5")
	g.Observe(stuck)
	done := make(chan struct{})
	stopped := make(chan struct{})
	h.t.Cleanup(func() { close(done); <-stopped })
	go func() {
		defer close(stopped)
		for h.p.Recovered() == 0 {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
				g.Observe(stuck)
			}
		}
	}()
	h.p.guard = g
	return g
}

// readSequences reads partition 0 until it has seen events 1 to n or the
// timeout passed, and counts the copies of each.
func readSequences(t *testing.T, bootstrap string, n int, timeout time.Duration) map[int]int {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": "reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	topic := "timestamp"
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	seqs := map[int]int{}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		m, err := c.ReadMessage(100 * time.Millisecond)
		if err != nil {
			continue
		}
		var seq int
		for _, hd := range m.Headers {
			if hd.Key == "seq" {
				seq, _ = strconv.Atoi(string(hd.Value))
			}
		}
		if seqs[seq]++; seqs[seq] == 1 && len(seqs) == n {
			break
		}
	}
	return seqs
}

// code is the Kafka error code of err; ErrNoError for nil or another error.
func code(err error) kafka.ErrorCode {
	var kerr kafka.Error
	errors.As(err, &kerr)
	return kerr.Code()
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

// While the leader is away, the guard takes the client for stalled (the
// cluster names a leader it does not hold): the new client sends again what
// the old one held, and once the leader is back every event is delivered,
// reported once, and in the topic; the old client leaves nothing behind.
func TestProducer_leaderStallRecreatesTheClientAndLosesNothing(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	const n = 400
	h := newHarness(t, 3, kafka.ConfigMap{"reconnect.backoff.max.ms": 500})
	leader := h.leader()
	h.stalled(func(context.Context) (map[int32]int32, error) { return map[int32]int32{0: int32(leader)}, nil })
	ctx, stopGuard := context.WithCancel(context.Background())
	guarded := make(chan struct{})
	go func() {
		defer close(guarded)
		h.p.Guard(ctx, func(err error) { t.Errorf("the guard gave up: %v", err) })
	}()
	sent := h.sending(context.Background(), n, 10*time.Millisecond)
	h.waitDelivered()
	if err := h.mc.SetBrokerDown(leader); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); h.p.Recovered() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no re-creation within 10s:\n%s", h.log.String())
		}
	}
	// Events queue in the new client too while the leader is away.
	time.Sleep(time.Second)
	if err := h.mc.SetBrokerUp(leader); err != nil {
		t.Fatal(err)
	}
	if got := sent(); got != n {
		t.Fatalf("the client took %d events, want %d", got, n)
	}
	stopGuard()
	<-guarded
	h.finish(30 * time.Second)
	h.checkOnce(n)
	if r := h.p.Recovered(); r != 1 {
		t.Errorf("re-created %d times, want once", r)
	}
	want := `level=WARN msg="Leader stall (librdkafka#5430): re-creating the Kafka client" topic=timestamp ` +
		`stall="partition 0: the client holds no leader, the cluster's is broker ` + strconv.Itoa(leader) + `"`
	if !strings.Contains(h.log.String(), want) {
		t.Errorf("no line %q:\n%s", want, h.log.String())
	}
	seqs := readSequences(t, h.mc.BootstrapServers(), n, 20*time.Second)
	for seq := 1; seq <= n; seq++ {
		if seqs[seq] == 0 {
			t.Fatalf("event %d is not in the topic", seq)
		}
	}
	// The client library's goroutines end soon after Close returns.
	for deadline := time.Now().Add(3 * time.Second); runtime.NumGoroutine() > goroutines; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after the run, %d before: the old client's were left behind", runtime.NumGoroutine(), goroutines)
		}
	}
}

// The guard's checks take no lock a send needs: while one waits for the
// cluster's answer, events go on being sent and delivered.
func TestProducer_aCheckDoesNotHoldUpSends(t *testing.T) {
	h := newHarness(t, 1, nil)
	asked, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	g := h.stalled(func(ctx context.Context) (map[int32]int32, error) {
		once.Do(func() { close(asked) })
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, ctx.Err()
	})
	g.Every = 3 * time.Second // the check waits that long for its answer
	h.guarding()
	ctx, stop := context.WithCancel(context.Background())
	sent := h.sending(ctx, 0, 5*time.Millisecond)
	select {
	case <-asked:
	case <-time.After(10 * time.Second):
		t.Fatal("the guard never asked the cluster")
	}
	before, _, _ := h.counts()
	time.Sleep(time.Second)
	after, _, _ := h.counts()
	close(release)
	stop()
	n := sent()
	h.finish(10 * time.Second)
	h.checkOnce(n)
	if during := after - before; during < 50 {
		t.Errorf("%d events delivered in the second the check waited, want about 200", during)
	}
}

// A re-creation that outlasts its bound makes the Producer unhealthy and
// is reported to the caller of Guard, which ends the run.
func TestProducer_aRecreationOverItsBoundGivesUp(t *testing.T) {
	h := newHarness(t, 1, nil)
	g := h.stalled(func(context.Context) (map[int32]int32, error) { return map[int32]int32{0: 1}, nil })
	g.Bound = time.Nanosecond // no client closes that fast
	if err := h.p.Healthy(); err != nil {
		t.Fatalf("unhealthy before the stall: %v", err)
	}
	gaveUp := h.guarding()
	select {
	case err := <-gaveUp:
		if err == nil || !strings.Contains(err.Error(), "took longer than") {
			t.Errorf("gave up with %v, want the bound's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the guard did not give up:\n%s", h.log.String())
	}
	if err := h.p.Healthy(); err == nil || !strings.Contains(err.Error(), "took longer than") {
		t.Errorf("Healthy = %v once the guard gave up, want its error", err)
	}
	// The re-creation goes on after the guard gave up; the Producer is
	// closed once the new client took over.
	for deadline := time.Now().Add(10 * time.Second); h.p.Recovered() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the re-creation did not end within 10s:\n%s", h.log.String())
		}
	}
}

// A broker outage is no leader stall: the cluster does not answer the
// guard's question either, and the client rides it out.
func TestProducer_outageIsNoLeaderStall(t *testing.T) {
	const n = 300
	h := newHarness(t, 1, kafka.ConfigMap{"reconnect.backoff.max.ms": 500, "statistics.interval.ms": 100})
	h.p.guard.After, h.p.guard.Every = 2*time.Second, 100*time.Millisecond
	h.guarding()
	sent := h.sending(context.Background(), n, 10*time.Millisecond)
	h.waitDelivered()
	if err := h.mc.SetBrokerDown(1); err != nil {
		t.Fatal(err)
	}
	// Long enough for a check whose metadata request fails, and one whose
	// request waits for the broker's return.
	time.Sleep(6 * time.Second)
	if err := h.mc.SetBrokerUp(1); err != nil {
		t.Fatal(err)
	}
	if got := sent(); got != n {
		t.Fatalf("the client took %d events, want %d", got, n)
	}
	h.finish(30 * time.Second)
	h.checkOnce(n)
	if r := h.p.Recovered(); r != 0 {
		t.Errorf("re-created %d times during an outage, want never:\n%s", r, h.log.String())
	}
}

// With linger.ms, events wait at every check; the client holds its leader, though.
func TestProducer_busyClientIsNoLeaderStall(t *testing.T) {
	const n = 3000
	h := newHarness(t, 1, kafka.ConfigMap{"linger.ms": 100, "statistics.interval.ms": 100})
	h.p.guard.After, h.p.guard.Every = time.Second, 100*time.Millisecond
	h.guarding()
	if got := h.send(context.Background(), n, time.Millisecond); got != n {
		t.Fatalf("the client took %d events, want %d", got, n)
	}
	h.finish(30 * time.Second)
	h.checkOnce(n)
	if r := h.p.Recovered(); r != 0 {
		t.Errorf("re-created %d times, want never:\n%s", r, h.log.String())
	}
}

// Each event is reported once, whichever client reports first: a replaced
// client's delivery settles an event sent again (the new client's report of
// it is then no second one), its failures are left to the new client, and
// the new client's failure of an event the old one may have written says
// so with ErrResent. Reports carry the Opaque given to Produce.
func TestProducer_reportsEachEventOnceAcrossClients(t *testing.T) {
	inFlight := kafka.NewError(kafka.ErrPurgeInflight, "purged in flight", false)
	queued := kafka.NewError(kafka.ErrPurgeQueue, "purged from the queue", false) // surely not written by this client
	type report struct {
		seq any
		err error
	}
	// Events 1 to 3 went again on the new client; 4 was sent to the new one only.
	oldReports := []report{
		{uint64(1), nil},      // the old client wrote it after all
		{uint64(2), inFlight}, // left to the new client
		{uint64(3), inFlight}, // left to the new client
		{"not ours", nil},     // no event of the Producer's
	}
	newReports := []report{
		{uint64(1), nil},    // written twice, if the old client wrote it too: reported once
		{uint64(2), nil},    // delivered
		{uint64(3), queued}, // the old client may have written it: unknown
		{uint64(4), queued}, // the new client's own: failed
		{uint64(99), nil},   // no such event
	}
	for _, tt := range []struct {
		name     string
		oldFirst bool
	}{
		{"the old client reports first", true},
		{"the new client reports first", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, 1, nil)
			p := h.p
			old := p.c
			fresh, err := p.newClient()
			if err != nil {
				t.Fatal(err)
			}
			p.mu.Lock()
			old.retired.Store(true)
			p.c = fresh
			p.qmu.Lock()
			for seq := uint64(1); seq <= 4; seq++ {
				p.pending[seq] = &held{m: &kafka.Message{Opaque: 10 * seq}, resent: seq <= 3}
			}
			p.qmu.Unlock()
			p.mu.Unlock()

			send := func(c *client, reports []report) {
				for _, r := range reports {
					c.p.Events() <- &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &h.topic, Offset: 7, Error: r.err}, Opaque: r.seq}
				}
			}
			if tt.oldFirst {
				send(old, oldReports)
				old.close() // its reports are read
				send(fresh, newReports)
			} else {
				send(fresh, newReports)
				for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
					if d, f, u := h.counts(); d+f+u == 4 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("the new client's reports did not come within 10s")
					}
				}
				send(old, oldReports)
				old.close()
			}
			h.close()

			h.mu.Lock()
			defer h.mu.Unlock()
			if want := map[uint64]int{10: 1, 20: 1, 30: 1, 40: 1}; !maps.Equal(h.reports, want) {
				t.Errorf("reports by Opaque %v, want %v", h.reports, want)
			}
			if h.delivered != 2 || h.unknown != 1 || h.failed != 1 {
				t.Errorf("delivered %d, unknown %d, failed %d; want 2, 1, 1", h.delivered, h.unknown, h.failed)
			}
			if len(p.pending) != 0 {
				t.Errorf("%d events still held, want none", len(p.pending))
			}
		})
	}
}

// A fatal error of the client reaches Events as a fatal kafka.Error, and
// the next Produce fails with ErrFatal: the caller ends the run.
func TestProducer_fatalErrorReachesEvents(t *testing.T) {
	h := newHarness(t, 1, nil)
	h.p.mu.RLock()
	h.p.c.p.TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "injected by test")
	h.p.mu.RUnlock()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		h.mu.Lock()
		fatal := h.fatal
		h.mu.Unlock()
		if len(fatal) > 0 {
			if fatal[0].Code() != kafka.ErrOutOfOrderSequenceNumber {
				t.Errorf("fatal error %v, want the injected one", fatal[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no fatal error on Events within 10s")
		}
	}
	if err := h.p.GetFatalError(); err == nil || !strings.Contains(err.Error(), "injected by test") {
		t.Errorf("GetFatalError = %v, want the injected error", err)
	}
	err := h.p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &h.topic, Partition: kafka.PartitionAny}, Opaque: uint64(1)})
	if code(err) != kafka.ErrFatal {
		t.Errorf("Produce after the fatal error = %v, want ErrFatal", err)
	}
}

// Close waits for a re-creation under way: the new client's statistics
// must not reach a closed Events channel.
func TestProducer_closeDuringARecreationIsSafe(t *testing.T) {
	for _, d := range []time.Duration{0, time.Millisecond, 3 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond} {
		h := newHarness(t, 1, kafka.ConfigMap{"statistics.interval.ms": 1})
		done := make(chan error, 1)
		go func() { done <- h.p.replace(context.Background()) }()
		time.Sleep(d) // the new client being made, or made
		h.close()     // a panic here fails the test binary
		if err := <-done; err != nil {
			t.Fatalf("replace: %v", err)
		}
	}
}
