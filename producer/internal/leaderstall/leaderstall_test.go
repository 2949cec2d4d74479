package leaderstall

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// statsWith is a statistics event recorded from librdkafka 2.15 (a
// producer to "timestamp"), with the client's leader of partition 0 (and
// the broker it sends to) and the events waiting for it replaced.
func statsWith(t *testing.T, leader, queued string) string {
	return statsOf(t, "1", leader, queued)
}

func statsOf(t *testing.T, broker, leader, queued string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/stats-up.json")
	if err != nil {
		t.Fatal(err)
	}
	old := `"partition":0, "broker":1, "leader":1, "desired":false, "unknown":false, "msgq_cnt":0,`
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("the recorded statistics lack %q", old)
	}
	return strings.Replace(string(b), old, `"partition":0, "broker":`+broker+`, "leader":`+leader+`, "desired":false, "unknown":false, "msgq_cnt":`+queued+`,`, 1)
}

func TestObserve_readsTheClientsView(t *testing.T) {
	tests := []struct {
		name, broker, leader, queued string
		want                         map[int32]int32
	}{
		{"leader held", "1", "1", "3", map[int32]int32{0: 1}},
		{"no leader", "-1", "-1", "3", map[int32]int32{0: -1}},
		{"old leader id, sending to no broker", "-1", "1", "3", map[int32]int32{0: -1}},
		{"nothing waiting", "-1", "-1", "0", map[int32]int32{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New("timestamp", slog.New(slog.DiscardHandler), nil)
			g.Observe(statsOf(t, tt.broker, tt.leader, tt.queued))
			got := g.client.Load()
			if got == nil || len(got.leaders) != len(tt.want) || got.leaders[0] != tt.want[0] {
				t.Errorf("view %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStalled(t *testing.T) {
	tests := []struct {
		name            string
		client, cluster map[int32]int32
		want            string
	}{
		{"leader held", map[int32]int32{0: 1}, map[int32]int32{0: 1}, ""},
		{"no leader", map[int32]int32{0: -1, 1: 2}, map[int32]int32{0: 3, 1: 2},
			"partition 0: the client holds no leader, the cluster's is broker 3"},
		{"the cluster has none either", map[int32]int32{0: -1}, map[int32]int32{0: -1}, ""},
		{"the cluster does not know it", map[int32]int32{4: -1}, map[int32]int32{0: 1}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stalled(tt.client, tt.cluster); got != tt.want {
				t.Errorf("stalled = %q, want %q", got, tt.want)
			}
		})
	}
}

func newGuard(ask func(context.Context) (map[int32]int32, error), log *bytes.Buffer) *Guard {
	g := New("timestamp", slog.New(slog.NewTextHandler(&syncWriter{w: log}, nil)), ask)
	g.After, g.Every, g.Bound = 400*time.Millisecond, 20*time.Millisecond, 300*time.Millisecond
	return g
}

func leaderOne(context.Context) (map[int32]int32, error) { return map[int32]int32{0: 1}, nil }

// The stall is acted on once it lasted After, not before, and only once
// per client.
func TestGuard_recreatesOnceTheStallLastedAfter(t *testing.T) {
	var log bytes.Buffer
	g := newGuard(leaderOne, &log)
	stopObserving := observing(t, g, statsWith(t, "-1", "3"))
	start := time.Now()
	recreated := make(chan time.Duration, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = g.Run(ctx, func(context.Context) error { stopObserving(); recreated <- time.Since(start); return nil })
	}()
	select {
	case after := <-recreated:
		if after < g.After {
			t.Errorf("re-created after %s, before the stall lasted %s", after, g.After)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("not re-created within 5s: %s", log.String())
	}
	if !strings.Contains(log.String(), "Leader stall (librdkafka#5430): re-creating the Kafka client") {
		t.Errorf("no warning: %s", log.String())
	}
	select {
	case <-recreated:
		t.Error("re-created again on the old client's statistics")
	case <-time.After(3 * g.After):
	}
}

// A client that holds its leaders is never re-created, however slow its
// broker; nor one whose cluster does not answer (an outage, which the
// client rides out) or has no leader either.
func TestGuard_leavesAHealthyClientAlone(t *testing.T) {
	for _, tt := range []struct {
		name, leader, queued string
		ask                  func(context.Context) (map[int32]int32, error)
	}{
		{"slow broker, leader held", "1", "500", leaderOne},
		{"no leader, nothing waiting", "-1", "0", leaderOne},
		{"cluster does not answer", "-1", "3", func(context.Context) (map[int32]int32, error) {
			return nil, errors.New("Local: Broker transport failure")
		}},
		{"cluster has no leader either", "-1", "3", func(context.Context) (map[int32]int32, error) {
			return map[int32]int32{0: -1}, nil
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			var asked, recreated atomic.Int64
			g := newGuard(func(ctx context.Context) (map[int32]int32, error) { asked.Add(1); return tt.ask(ctx) }, &log)
			observing(t, g, statsWith(t, tt.leader, tt.queued))
			ctx, cancel := context.WithTimeout(context.Background(), 3*g.After)
			defer cancel()
			if err := g.Run(ctx, func(context.Context) error { recreated.Add(1); return nil }); err != nil || recreated.Load() != 0 {
				t.Errorf("Run: %v; re-created %d times, want none:\n%s", err, recreated.Load(), log.String())
			}
			if tt.leader == "1" && asked.Load() != 0 {
				t.Errorf("the cluster was asked %d times about a client that holds its leader", asked.Load())
			}
		})
	}
}

// Statistics that stopped coming say nothing of the client now. They do not
// count toward a stall.
func TestGuard_staleStatisticsAreNoStall(t *testing.T) {
	var log bytes.Buffer
	g := newGuard(leaderOne, &log)
	g.Observe(statsWith(t, "-1", "3"))
	time.Sleep(4 * g.Every)
	var recreated atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 3*g.After)
	defer cancel()
	if err := g.Run(ctx, func(context.Context) error { recreated.Add(1); return nil }); err != nil || recreated.Load() != 0 {
		t.Errorf("Run: %v; re-created %d times on statistics older than %s", err, recreated.Load(), 3*g.Every)
	}
}

// A stop that comes while the client is re-created is no failure.
func TestGuard_aStopDuringARecreationIsNoFailure(t *testing.T) {
	var log bytes.Buffer
	g := newGuard(leaderOne, &log)
	observing(t, g, statsWith(t, "-1", "3"))
	ctx, cancel := context.WithCancel(context.Background())
	err := g.Run(ctx, func(ctx context.Context) error {
		cancel() // the stop signal
		<-ctx.Done()
		return ctx.Err()
	})
	if err != nil || g.Healthy() != nil {
		t.Errorf("Run = %v, Healthy = %v; want no failure", err, g.Healthy())
	}
}

// A re-creation that fails or hangs makes the guard give up within Bound:
// unhealthy, Failed closed, and Run returns the error.
func TestGuard_givesUpOnARecreationThatFailsOrHangs(t *testing.T) {
	for _, tt := range []struct {
		name     string
		recreate func(context.Context) error
		want     string
	}{
		{"fails", func(context.Context) error { return errors.New("create producer: boom") }, "boom"},
		{"hangs", func(context.Context) error { select {} }, "took longer than"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			g := newGuard(leaderOne, &log)
			observing(t, g, statsWith(t, "-1", "3"))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err := g.Run(ctx, tt.recreate)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want an error with %q", err, tt.want)
			}
			if took := time.Since(start); took > g.After+g.Bound+time.Second {
				t.Errorf("gave up after %s, want within After %s + Bound %s", took, g.After, g.Bound)
			}
			if g.Healthy() == nil {
				t.Error("healthy after giving up")
			}
			select {
			case <-g.Failed():
			default:
				t.Error("Failed not closed")
			}
		})
	}
}

// Ask reads the leaders from the cluster, and fails when it does not answer.
func TestAsk_readsTheClustersLeaders(t *testing.T) {
	mc, err := kafka.NewMockCluster(2)
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	if err := mc.CreateTopic("timestamp", 2, 1); err != nil {
		t.Fatal(err)
	}
	// The producer's own configuration, go.* properties and all: its Ask must make a client of it.
	ask := Ask(kafka.ConfigMap{"bootstrap.servers": mc.BootstrapServers(), "enable.idempotence": true,
		"go.delivery.report.fields": "none", "go.events.channel.size": 10000, "go.produce.channel.size": 1,
		"go.logs.channel.enable": true, "statistics.interval.ms": 5000}, "timestamp")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if leaders, err := ask(ctx); err != nil || len(leaders) != 2 || leaders[0] < 1 || leaders[1] < 1 {
		t.Fatalf("leaders %v, %v; want one for each of 2 partitions", leaders, err)
	}
	for id := 1; id <= 2; id++ {
		if err := mc.SetBrokerDown(id); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if leaders, err := ask(ctx); err == nil {
		t.Errorf("leaders %v from a cluster that is down", leaders)
	}
}

// observing hands g the statistics js every few milliseconds, as a client
// does, until the test ends or stop is called.
func observing(t *testing.T, g *Guard, js string) (stop func()) {
	g.Observe(js)
	done := make(chan struct{})
	stop = sync.OnceFunc(func() { close(done) })
	t.Cleanup(stop)
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
				g.Observe(js)
			}
		}
	}()
	return stop
}

// syncWriter lets the guard's goroutine and the test share a buffer.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
