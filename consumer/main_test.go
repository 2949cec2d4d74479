package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func TestRun_exitCodes(t *testing.T) {
	mc := mockCluster(t)
	broker := mc.BootstrapServers()
	produce(t, broker, nil, rawMessage("", `{"timestamp":"10:00:00"}`), rawMessage("", `"10:00:05"`),
		rawMessage("", strings.Repeat("x", 10_000)))
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		code   int
		stdout []string
		once   string   // text that must be on stdout exactly once
		absent []string // text that must not be on stdout
		stderr string
		stop   time.Duration // a stop signal after this long; 0: none
		within time.Duration // the longest the run may take; 0: any
		after  func(t *testing.T)
	}{
		{name: "help", args: []string{"--help"}, code: 0, stdout: []string{"Usage: consumer"}},
		{name: "unknown flag", args: []string{"--brokers", "x:1"}, code: 2, absent: []string{"Usage"},
			stderr: `consumer: invalid flags "--brokers x:1": flag provided but not defined: -brokers (see --help)`},
		{name: "bad flag value", args: []string{"--log-format", "xml"}, code: 2,
			stderr: `consumer: invalid --log-format "xml": want one of text, json`},
		{name: "bad environment value", env: map[string]string{"KAFKA_GROUP_ID": " "}, code: 2,
			stderr: `consumer: invalid KAFKA_GROUP_ID " "`},
		{name: "receives and stops after count", args: []string{"--bootstrap-servers", broker, "--count", "2"}, code: 0,
			// No id and no latency: the tutorial's messages carry no headers.
			stdout: []string{"Received: 10:00:00 partition=0 offset=0\n", "Received: 10:00:05 partition=0 offset=1\n",
				"Consumer stopped received=2 duplicates=0 dead_lettered=0 recovered=0 elapsed="}},
		{name: "summary only", args: []string{"--bootstrap-servers", broker, "--count", "2", "--group", "quiet", "--log-events=false"}, code: 0,
			stdout: []string{"Consumer stopped received=2 duplicates=0 dead_lettered=0 recovered=0 elapsed=", " events_per_s="},
			absent: []string{"Received: "}},
		{name: "stopped while Kafka is out of reach", args: []string{"--bootstrap-servers", "127.0.0.1:1"}, stop: time.Second, code: 0,
			stdout: []string{"Consumer stopped received=0 duplicates=0 dead_lettered=0 recovered=0\n"}, within: 4 * time.Second},
		{name: "missing topic", args: []string{"--bootstrap-servers", broker, "--topic", "nowhere"}, code: 1, within: 5 * time.Second,
			once:  `topic \"nowhere\" does not exist at ` + broker + `: the consumer creates none; create \"nowhere\" and \"nowhere.dlq\" first`,
			after: func(t *testing.T) { notCreated(t, broker, "nowhere", "nowhere.dlq") }},
		{name: "missing dead-letter topic", args: []string{"--bootstrap-servers", broker, "--dlq-topic", "lost"}, code: 1, within: 5 * time.Second,
			once:  `topic \"lost\" does not exist at ` + broker + `: the consumer creates none; create \"timestamp\" and \"lost\" first`,
			after: func(t *testing.T) { notCreated(t, broker, "lost") }},
		{name: "healthcheck without an endpoint", args: []string{"healthcheck"}, code: 2,
			stderr: "consumer healthcheck: no endpoint to ask: set --http-addr or HTTP_ADDR"},
		{name: "healthcheck of no consumer", args: []string{"healthcheck", "--http-addr", freeAddr(t)}, code: 1,
			stderr: "consumer healthcheck: not ready: "},
		{name: "events through a channel", args: []string{"-X", "go.events.channel.enable=true"}, code: 2,
			stderr: `consumer: invalid -X "go.events.channel.enable=true": go.* properties change how the client hands events to the consumer, which it relies on`},
		{name: "HTTP port taken", args: []string{"--bootstrap-servers", broker, "--http-addr", taken.Addr().String()}, code: 1,
			within: 5 * time.Second, once: "ERROR Consumer stopped received=0 duplicates=0 dead_lettered=0 recovered=0 err=\"HTTP endpoint: listen tcp " + taken.Addr().String()},
		{name: "dead-letter topic refuses", code: 1,
			// A dead-letter producer that takes 5,000 bytes, as a topic made too small would.
			args: []string{"--bootstrap-servers", broker, "--group", "refused", "--log-events=false", "-X", "message.max.bytes=5000"},
			stdout: []string{`ERROR Consumer stopped received=2 duplicates=0 dead_lettered=0 recovered=0 elapsed=`,
				`err="cannot dead-letter offset 2 of timestamp[0] to \"timestamp.dlq\": Broker: Message size too large (MSG_SIZE_TOO_LARGE)"`},
			// The refused message comes again at the next start: its offset was never stored.
			after: func(t *testing.T) {
				if got := committed(t, broker, "refused", source, 0); got != 2 {
					t.Errorf("committed offset %d, want 2: the refused message must come again", got)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stdout, stderr syncBuffer
			signals := make(chan os.Signal, 1)
			if tt.stop > 0 {
				time.AfterFunc(tt.stop, func() { signals <- syscall.SIGTERM })
			}
			start := time.Now()
			code := run(ctx, env{args: tt.args, getenv: func(k string) string { return tt.env[k] },
				stdout: &stdout, stderr: &stderr, signals: signals,
				exit: func(code int) { t.Errorf("the shutdown was cut short with exit code %d", code) }})
			if took := time.Since(start); tt.within > 0 && took > tt.within {
				t.Errorf("run took %s, want at most %s", took.Round(time.Millisecond), tt.within)
			}
			if code != tt.code {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			if n := strings.Count(stdout.String(), tt.once); tt.once != "" && n != 1 {
				t.Errorf("stdout has %q %d times, want once:\n%s", tt.once, n, stdout.String())
			}
			for _, s := range tt.absent {
				if strings.Contains(stdout.String(), s) {
					t.Errorf("stdout has %q:\n%s", s, stdout.String())
				}
			}
			if !strings.HasPrefix(stderr.String(), tt.stderr) || strings.Count(stderr.String(), "\n") > 1 {
				t.Errorf("stderr %q, want one line starting %q", stderr.String(), tt.stderr)
			}
			if tt.after != nil {
				tt.after(t)
			}
		})
	}
}

// notCreated checks that the cluster still lacks the topics: the consumer's
// metadata requests did not have the mock cluster create them.
func notCreated(t *testing.T, bootstrap string, topics ...string) {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": "asker", "allow.auto.create.topics": false})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tp := range topics {
		md, err := c.GetMetadata(&tp, false, 5000)
		if err != nil {
			t.Fatal(err)
		}
		if code := md.Topics[tp].Error.Code(); code != kafka.ErrUnknownTopicOrPart {
			t.Errorf("topic %q: %v, want %v: the consumer created it", tp, md.Topics[tp].Error, kafka.ErrUnknownTopicOrPart)
		}
	}
}

func TestRun_receivesEveryEventOnceInOrder(t *testing.T) {
	mc := mockCluster(t)
	const n = 30
	var msgs []*kafka.Message
	for i := 1; i <= n; i++ {
		msgs = append(msgs, traced(i))
	}
	produce(t, mc.BootstrapServers(), nil, msgs...)
	c := start(t, "--bootstrap-servers", mc.BootstrapServers(), "--count", "30")
	if code := c.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	recs := records(t, c.out.String(), "Received: ")
	if len(recs) != n {
		t.Fatalf("logged %d Received lines, want %d", len(recs), n)
	}
	for i, rec := range recs {
		if rec["id"] != seq(i+1, i+1)[0] || rec["partition"] != 0.0 || rec["offset"] != float64(i) || rec["latency"] == nil || rec["duplicate"] != nil {
			t.Fatalf("line %d is %v: want id %d at offset %d, with a latency, no duplicate", i, rec, i+1, i)
		}
		// The process span continues the producer's trace.
		if rec["trace_id"] != fmt.Sprintf("%032x", i+1) {
			t.Errorf("line %d has trace id %v, want the producer's, %032x", i, rec["trace_id"], i+1)
		}
	}
	if s := c.summary(); s["received"] != float64(n) || s["duplicates"] != 0.0 || s["dead_lettered"] != 0.0 || s["level"] != "INFO" {
		t.Errorf("summary %v, want %d received, nothing else", s, n)
	}
}

// Our producer's ids count up per source and partition: an id at or below
// the highest seen is a copy, said on its line and counted.
func TestRun_countsCopiesOfEvents(t *testing.T) {
	mc := mockCluster(t)
	msgs := events(1, 3, 0)
	msgs = append(msgs, goodEvent(2), goodEvent(3), goodEvent(4))
	other := goodEvent(1) // another source's first event is none
	other.Headers[2].Value = []byte("/producer/other")
	produce(t, mc.BootstrapServers(), nil, append(msgs, other)...)
	c := start(t, "--bootstrap-servers", mc.BootstrapServers(), "--count", "7")
	if code := c.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	var dups []float64
	for _, rec := range records(t, c.out.String(), "Received: ") {
		if rec["duplicate"] == true {
			dups = append(dups, rec["offset"].(float64))
		}
	}
	if len(dups) != 2 || dups[0] != 3 || dups[1] != 4 {
		t.Errorf("copies at offsets %v, want 3 and 4", dups)
	}
	if s := c.summary(); s["received"] != 7.0 || s["duplicates"] != 2.0 {
		t.Errorf("summary %v, want 7 received, 2 duplicates", s)
	}
}

// Readiness follows the client's own events, not its statistics (every 5 s
// by default): ready soon after the assignment, not ready while every broker
// is down, ready again once an event arrives.
func TestRun_readyzFollowsTheClientsEvents(t *testing.T) {
	mc := mockCluster(t)
	addr := freeAddr(t)
	c := start(t, "--bootstrap-servers", mc.BootstrapServers(), "--http-addr", addr)
	var ready time.Duration
	waitFor(t, 10*time.Second, "/readyz to say ready", func() bool {
		code, _ := get(t, addr, "/readyz")
		ready = time.Since(c.started)
		return code == 200
	})
	t.Logf("ready %s after the start", ready.Round(time.Millisecond))
	// The statistics' first would come after 5 s; the assignment comes well within a second here.
	if ready > 2500*time.Millisecond {
		t.Errorf("ready %s after the start, want soon after the assignment", ready.Round(time.Millisecond))
	}
	if assigned := records(t, c.out.String(), "Partitions assigned"); len(assigned) == 0 {
		t.Errorf("ready before any assignment")
	}
	// Docker's HEALTHCHECK asks the same.
	var stdout, stderr strings.Builder
	if code := run(context.Background(), env{args: []string{"healthcheck", "--http-addr", addr}, getenv: func(string) string { return "" },
		stdout: &stdout, stderr: &stderr}); code != 0 || stdout.String() != "ready\n" {
		t.Errorf("consumer healthcheck: exit code %d, %q %q; want 0, ready", code, stdout.String(), stderr.String())
	}
	if err := mc.SetBrokerDown(1); err != nil {
		t.Fatal(err)
	}
	var body string
	waitFor(t, 20*time.Second, "/readyz to say every broker is down", func() bool {
		var code int
		code, body = get(t, addr, "/readyz")
		return code == 503
	})
	if !strings.Contains(body, "every broker is down") {
		t.Errorf("/readyz says %q, want that every broker is down", body)
	}
	if code, body := get(t, addr, "/healthz"); code != 200 {
		t.Errorf("/healthz %d %q while the broker is down, want 200: the client rides an outage out", code, body)
	}
	if err := mc.SetBrokerUp(1); err != nil {
		t.Fatal(err)
	}
	produce(t, mc.BootstrapServers(), nil, goodEvent(1))
	waitFor(t, 20*time.Second, "the event", func() bool { return len(ids(t, c.out.String())) == 1 })
	if code, body := get(t, addr, "/readyz"); code != 200 {
		t.Errorf("/readyz %d %q after the broker came back and an event arrived, want 200", code, body)
	}
	if code := c.stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}

// /metrics shows the counts of the run.
func TestRun_metrics(t *testing.T) {
	mc := mockCluster(t)
	produce(t, mc.BootstrapServers(), nil, goodEvent(1), rawMessage("", "not json"), goodEvent(2), goodEvent(1))
	addr := freeAddr(t)
	c := start(t, "--bootstrap-servers", mc.BootstrapServers(), "--http-addr", addr)
	waitFor(t, 20*time.Second, "the events", func() bool { return len(ids(t, c.out.String())) == 3 })
	code, body := get(t, addr, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics %d %q", code, body)
	}
	for _, want := range []string{"consumer_events_received_total 3\n", "consumer_events_duplicate_total 1\n",
		"consumer_events_dead_lettered_total 1\n", `consumer_rebalances_total{change="assigned"} 1` + "\n",
		"consumer_recoveries_total 0\n", "consumer_event_latency_seconds_count 3\n", "go_goroutines "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
	if code := c.stop(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}
