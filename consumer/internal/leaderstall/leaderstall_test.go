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
// consumer of "timestamp" in a settled group), with the client's leader of
// partition 0 (and the broker it fetches from) and its group state replaced.
func statsWith(t *testing.T, leader, groupState string) string {
	return statsOf(t, "1", leader, groupState)
}

func statsOf(t *testing.T, broker, leader, groupState string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/stats-up.json")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for old, new := range map[string]string{
		`"partition":0, "broker":1, "leader":1,`: `"partition":0, "broker":` + broker + `, "leader":` + leader + `,`,
		`"cgrp": { "state": "up",`:               `"cgrp": { "state": "` + groupState + `",`,
	} {
		if !strings.Contains(s, old) {
			t.Fatalf("the recorded statistics lack %q", old)
		}
		s = strings.Replace(s, old, new, 1)
	}
	return s
}

func TestObserve_readsTheClientsView(t *testing.T) {
	tests := []struct {
		name, broker, leader, group string
		want                        View
	}{
		{"settled", "1", "1", "up", View{map[int32]int32{0: 1}, true}},
		{"no leader", "-1", "-1", "up", View{map[int32]int32{0: -1}, true}},
		{"old leader id, fetching from no broker", "-1", "1", "up", View{map[int32]int32{0: -1}, true}},
		{"looking for the coordinator", "1", "1", "query-coord", View{map[int32]int32{0: 1}, false}},
		{"waiting for the coordinator", "1", "1", "wait-coord", View{map[int32]int32{0: 1}, false}},
		{"not subscribed yet", "1", "1", "init", View{map[int32]int32{0: 1}, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := New("timestamp", slog.New(slog.DiscardHandler), nil)
			g.Observe(statsOf(t, tt.broker, tt.leader, tt.group))
			got := g.client.Load()
			if got == nil || got.HasCoordinator != tt.want.HasCoordinator || len(got.Leaders) != 1 || got.Leaders[0] != tt.want.Leaders[0] {
				t.Errorf("view %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestStalled(t *testing.T) {
	tests := []struct {
		name            string
		client, cluster View
		want            string // "" is no stall
	}{
		{"both hold everything", View{map[int32]int32{0: 1}, true}, View{map[int32]int32{0: 1}, true}, ""},
		{"the client holds no leader", View{map[int32]int32{0: -1, 1: 2}, true}, View{map[int32]int32{0: 1, 1: 2}, true},
			"partition 0: the client holds no leader, the cluster's is broker 1"},
		{"the cluster has no leader either", View{map[int32]int32{0: -1}, true}, View{map[int32]int32{0: -1}, true}, ""},
		{"the cluster does not know the partition", View{map[int32]int32{3: -1}, true}, View{map[int32]int32{0: 1}, true}, ""},
		{"the client holds no coordinator", View{map[int32]int32{0: 1}, false}, View{map[int32]int32{0: 1}, true},
			"the client holds no group coordinator, the cluster's answers"},
		{"the cluster has no coordinator either", View{map[int32]int32{0: 1}, false}, View{map[int32]int32{0: 1}, false}, ""},
		{"both", View{map[int32]int32{0: -1}, false}, View{map[int32]int32{0: 1}, true},
			"partition 0: the client holds no leader, the cluster's is broker 1; the client holds no group coordinator, the cluster's answers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stalled(tt.client, tt.cluster); got != tt.want {
				t.Errorf("stalled = %q, want %q", got, tt.want)
			}
		})
	}
}

// run starts g with recreate in the background; the result is its error.
func run(g *Guard, recreate func(context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, recreate) }()
	return func() error { cancel(); return <-done }
}

func newGuard(ask func(context.Context) (View, error), log *bytes.Buffer) *Guard {
	g := New("timestamp", slog.New(slog.NewTextHandler(&syncWriter{w: log}, nil)), ask)
	g.After, g.Every, g.Bound = 400*time.Millisecond, 20*time.Millisecond, 300*time.Millisecond
	return g
}

// The stall is acted on once it lasted After, not before: a client whose
// leader or coordinator comes back within After is left alone.
func TestGuard_recreatesOnceTheStallLastedAfter(t *testing.T) {
	for _, tt := range []struct{ name, leader, group string }{
		{"no leader", "-1", "up"},
		{"no coordinator", "1", "wait-coord"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			g := newGuard(func(context.Context) (View, error) { return View{map[int32]int32{0: 1}, true}, nil }, &log)
			stopObserving := observing(t, g, statsWith(t, tt.leader, tt.group))
			start := time.Now()
			recreated := make(chan time.Duration, 10)
			stop := run(g, func(context.Context) error { stopObserving(); recreated <- time.Since(start); return nil })
			defer stop()
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
			// Only statistics of the new client count: none came, so nothing happens again.
			select {
			case <-recreated:
				t.Error("re-created again on the old client's statistics")
			case <-time.After(3 * g.After):
			}
		})
	}
}

// A client that holds its leaders and coordinator is never re-created,
// however slow its broker; nor one whose cluster does not answer (an
// outage, which the client rides out) or has no leader either.
func TestGuard_leavesAHealthyClientAlone(t *testing.T) {
	leader := func(context.Context) (View, error) { return View{map[int32]int32{0: 1}, true}, nil }
	for _, tt := range []struct {
		name, leader, group string
		ask                 func(context.Context) (View, error)
	}{
		{"slow broker, leader and coordinator held", "1", "up", leader},
		{"cluster does not answer", "-1", "query-coord", func(context.Context) (View, error) {
			return View{}, errors.New("Local: Broker transport failure")
		}},
		{"cluster has no leader either", "-1", "up", func(context.Context) (View, error) {
			return View{map[int32]int32{0: -1}, true}, nil
		}},
		{"no statistics", "", "", leader},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			var asked atomic.Int64
			g := newGuard(func(ctx context.Context) (View, error) { asked.Add(1); return tt.ask(ctx) }, &log)
			if tt.leader != "" {
				observing(t, g, statsWith(t, tt.leader, tt.group))
			}
			var recreated atomic.Int64
			stop := run(g, func(context.Context) error { recreated.Add(1); return nil })
			time.Sleep(3 * g.After)
			if err := stop(); err != nil || recreated.Load() != 0 {
				t.Errorf("Run: %v; re-created %d times, want none:\n%s", err, recreated.Load(), log.String())
			}
			if tt.group == "up" && tt.leader == "1" && asked.Load() != 0 {
				t.Errorf("the cluster was asked %d times about a client that holds everything", asked.Load())
			}
		})
	}
}

// Statistics that stopped coming say nothing of the client now: the poll
// loop that hands them over may be busy. They do not count toward a stall.
func TestGuard_staleStatisticsAreNoStall(t *testing.T) {
	var log bytes.Buffer
	g := newGuard(func(context.Context) (View, error) { return View{map[int32]int32{0: 1}, true}, nil }, &log)
	g.Observe(statsWith(t, "-1", "up"))
	time.Sleep(4 * g.Every)
	var recreated atomic.Int64
	stop := run(g, func(context.Context) error { recreated.Add(1); return nil })
	time.Sleep(3 * g.After)
	if err := stop(); err != nil || recreated.Load() != 0 {
		t.Errorf("Run: %v; re-created %d times on statistics older than %s", err, recreated.Load(), 3*g.Every)
	}
}

// A stop that comes while the client is re-created is no failure.
func TestGuard_aStopDuringARecreationIsNoFailure(t *testing.T) {
	var log bytes.Buffer
	g := newGuard(func(context.Context) (View, error) { return View{map[int32]int32{0: 1}, true}, nil }, &log)
	observing(t, g, statsWith(t, "-1", "up"))
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
		{"fails", func(context.Context) error { return errors.New("create consumer: boom") }, "boom"},
		{"hangs", func(context.Context) error { select {} }, "took longer than"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var log bytes.Buffer
			g := newGuard(func(context.Context) (View, error) { return View{map[int32]int32{0: 1}, true}, nil }, &log)
			observing(t, g, statsWith(t, "-1", "up"))
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

// Ask reads the leaders and the coordinator from the cluster, and fails
// when the cluster does not answer.
func TestAsk_readsTheClustersView(t *testing.T) {
	mc, err := kafka.NewMockCluster(3)
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	if err := mc.CreateTopic("timestamp", 2, 1); err != nil {
		t.Fatal(err)
	}
	// The consumer's own configuration, its logs channel and all: its Ask must make a client of it.
	logs := make(chan kafka.LogEvent, 100)
	ask := Ask(kafka.ConfigMap{"bootstrap.servers": mc.BootstrapServers(), "group.id": "test-group", "group.protocol": "consumer",
		"enable.auto.offset.store": false, "go.logs.channel.enable": true, "go.logs.channel": logs, "statistics.interval.ms": 5000},
		"timestamp", "test-group")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := ask(ctx)
	if err != nil || len(v.Leaders) != 2 || v.Leaders[0] < 1 || v.Leaders[1] < 1 || !v.HasCoordinator {
		t.Fatalf("view %+v, %v; want a leader for each of 2 partitions and a coordinator", v, err)
	}
	for id := 1; id <= 3; id++ {
		if err := mc.SetBrokerDown(id); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if v, err := ask(ctx); err == nil {
		t.Errorf("view %+v from a cluster that is down", v)
	}
}
