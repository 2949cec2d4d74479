package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/trace"

	"github.com/event-driven-go/kafka-go/producer/internal/event"
	"github.com/event-driven-go/kafka-go/producer/internal/leaderstall"
	"github.com/event-driven-go/kafka-go/producer/internal/logging"
	"github.com/event-driven-go/kafka-go/producer/internal/telemetry"
)

// mockCluster starts librdkafka's in-process mock cluster of brokers with
// the topic "timestamp" of partitions.
func mockCluster(t *testing.T, brokers, partitions int) *kafka.MockCluster {
	t.Helper()
	mc, err := kafka.NewMockCluster(brokers)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mc.Close)
	if err := mc.CreateTopic("timestamp", partitions, 1); err != nil {
		t.Fatal(err)
	}
	return mc
}

// syncBuffer is a bytes.Buffer safe for the program and the test at once.
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

func TestRun_exitCodes(t *testing.T) {
	mc := mockCluster(t, 1, 1)
	broker := mc.BootstrapServers()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		slowBroker bool // the broker answers in 2s from the first event on
		code       int
		stdout     []string // lines that must appear
		notStdout  []string // text that must not appear
		stderr     string
	}{
		{name: "help", args: []string{"--help"}, code: 0, stdout: []string{"Usage: producer"}},
		{name: "unknown flag", args: []string{"--brokers", "x:1"}, code: 2, notStdout: []string{"Usage"},
			stderr: `producer: invalid flags "--brokers x:1": flag provided but not defined: -brokers (see --help)`},
		{name: "bad flag value", args: []string{"--interval", "soon"}, code: 2,
			stderr: `producer: invalid --interval "soon": want a duration`},
		{name: "bad environment value", env: map[string]string{"PRODUCER_COUNT": "-1"}, code: 2,
			stderr: `producer: invalid PRODUCER_COUNT "-1"`},
		{name: "unknown librdkafka property", args: []string{"--bootstrap-servers", broker, "-X", "no.such.property=1"}, code: 2,
			stderr: `producer: invalid Kafka client configuration: create producer: No such configuration property: "no.such.property"`},
		{name: "client hand-over property", args: []string{"-X", "go.delivery.reports=false"}, code: 2,
			stderr: `producer: invalid -X "go.delivery.reports=false": go.* properties change how the client hands reports to the producer`},
		{name: "all delivered", args: []string{"--bootstrap-servers", broker, "--count", "3", "--interval", "10ms"}, code: 0,
			stdout: []string{"Sending: ", "Producer stopped attempted=3 delivered=3 failed=0 unknown=0 recovered=0"}},
		{name: "bulk run with a summary only", args: []string{"--bootstrap-servers", broker, "--count", "20", "--interval", "0", "--value-size", "100", "--log-events=false"}, code: 0,
			stdout:    []string{"Producer stopped attempted=20 delivered=20 failed=0 unknown=0 recovered=0 elapsed=", " events_per_s="},
			notStdout: []string{"Sending: "}},
		{name: "bad value size", args: []string{"--value-size", "10"}, code: 2,
			stderr: `producer: invalid --value-size "10": want 0 (no padding) or a size from 24 to 65536 bytes`},
		{name: "missing topic", args: []string{"--bootstrap-servers", broker, "--topic", "nowhere"}, code: 1,
			stdout: []string{`ERROR Producer stopped attempted=0 `, `topic \"nowhere\" does not exist at ` + broker + `: the producer creates none`}},
		// The first event may be delivered before the broker slows down.
		{name: "undelivered events", args: []string{"--bootstrap-servers", broker, "--count", "2", "--interval", "300ms", "-X", "message.timeout.ms=300"},
			slowBroker: true, code: 1, stdout: []string{"ERROR Unconfirmed: ", " of 2 events not delivered: 0 failed, "}},
		{name: "HTTP endpoint on a taken address", args: []string{"--bootstrap-servers", broker, "--http-addr", taken.Addr().String()}, code: 1,
			stdout: []string{`ERROR Producer stopped err="HTTP endpoint: listen tcp ` + taken.Addr().String() + `: `}},
		{name: "healthcheck without an endpoint", args: []string{"healthcheck"}, code: 2,
			stderr: "producer healthcheck: no endpoint to ask: set --http-addr or HTTP_ADDR"},
		{name: "healthcheck of a producer not running", args: []string{"healthcheck", "--http-addr", "127.0.0.1:1"}, code: 1,
			stderr: "producer healthcheck: not ready: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := mc.SetRoundtripDuration(1, 0); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr syncBuffer
			// Slowed down at start, the broker would hold up the start as long.
			ran, slowed := make(chan struct{}), make(chan error, 1)
			go func() {
				for tt.slowBroker && !strings.Contains(stdout.String(), "Sending: ") {
					select {
					case <-ran:
						slowed <- nil
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
				if tt.slowBroker {
					slowed <- mc.SetRoundtripDuration(1, 2*time.Second)
					return
				}
				slowed <- nil
			}()
			code := run(tt.args, func(k string) string { return tt.env[k] }, &stdout, &stderr, nil, noExit(t))
			close(ran)
			if err := <-slowed; err != nil {
				t.Fatal(err)
			}
			if code != tt.code {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			for _, s := range tt.notStdout {
				if strings.Contains(stdout.String(), s) {
					t.Errorf("stdout has %q:\n%s", s, stdout.String())
				}
			}
			if !strings.HasPrefix(stderr.String(), tt.stderr) || strings.Count(stderr.String(), "\n") > 1 {
				t.Errorf("stderr %q, want one line starting %q", stderr.String(), tt.stderr)
			}
		})
	}
}

func TestRun_secondSignalExitsAtOnce(t *testing.T) {
	mc := mockCluster(t, 1, 1)
	r := start(t, nil, "--bootstrap-servers", mc.BootstrapServers(), "--interval", "10ms")
	r.waitFor(t, "Sending: ", 15*time.Second)
	if err := mc.SetRoundtripDuration(1, 10*time.Second); err != nil { // the broker hangs: the shutdown takes its 2.5s
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	r.signal(syscall.SIGINT)
	time.Sleep(300 * time.Millisecond)
	r.signal(syscall.SIGINT)
	select {
	case code := <-r.exits:
		if code != 130 {
			t.Errorf("exit(%d), want 130", code)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no exit within 2s of the second signal")
	}
	r.wait(t, 15*time.Second) // the fake exit returns, so the run goes on to its end
	if want := "ERROR Second stop signal: exiting now attempted="; !strings.Contains(r.out.String(), want) {
		t.Errorf("stdout lacks %q:\n%s", want, r.out.String())
	}
}

// noExit fails the test if the program tries to end the process.
func noExit(t *testing.T) func(int) {
	return func(code int) { t.Errorf("exit(%d) called", code) }
}

// running is the program, run in a goroutine with its own signals.
type running struct {
	out, stderr *syncBuffer
	signals     chan os.Signal
	exits       chan int // what the program passed to exit
	code        chan int // what run returned
	signalled   time.Time
}

// start runs the program with args and the environment env; the test's
// end waits for it, stopping it first if need be.
func start(t *testing.T, env map[string]string, args ...string) *running {
	t.Helper()
	r := &running{out: &syncBuffer{}, stderr: &syncBuffer{}, signals: make(chan os.Signal, 2), exits: make(chan int, 2), code: make(chan int, 1)}
	go func() {
		r.code <- run(args, func(k string) string { return env[k] }, r.out, r.stderr, r.signals, func(code int) { r.exits <- code })
	}()
	t.Cleanup(func() {
		select {
		case code := <-r.code:
			r.code <- code
			return
		default:
		}
		select {
		case r.signals <- syscall.SIGTERM:
		default: // two signals wait already
		}
		select {
		case code := <-r.code:
			r.code <- code
		case <-time.After(20 * time.Second):
			t.Errorf("the run did not end within 20s of a stop:\n%s", r.out.String())
		}
	})
	return r
}

// signal sends sig to the program.
func (r *running) signal(sig os.Signal) {
	if r.signalled.IsZero() {
		r.signalled = time.Now()
	}
	r.signals <- sig
}

// wait returns the exit code, failing the test if the run did not end within timeout.
func (r *running) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case code := <-r.code:
		r.code <- code // for the cleanup
		if r.stderr.String() != "" {
			t.Errorf("stderr: %s", r.stderr.String())
		}
		select {
		case exit := <-r.exits:
			t.Errorf("exit(%d) called:\n%s", exit, r.out.String())
		default:
		}
		return code
	case <-time.After(timeout):
		t.Fatalf("the run did not end within %s:\n%s", timeout, r.out.String())
		return 0
	}
}

// waitFor waits until the output holds text.
func (r *running) waitFor(t *testing.T, text string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !strings.Contains(r.out.String(), text); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %s:\n%s", text, timeout, r.out.String())
		}
	}
}

// summary are the key=value attributes of the "Producer stopped" line.
type summary map[string]string

func (r *running) summary(t *testing.T) summary {
	t.Helper()
	lines := strings.Split(r.out.String(), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if _, attrs, ok := strings.Cut(lines[i], "Producer stopped "); ok {
			return parseAttrs(t, attrs)
		}
	}
	t.Fatalf("no \"Producer stopped\" line:\n%s", r.out.String())
	return nil
}

// parseAttrs reads key=value pairs as the text format writes them: values
// with spaces, quotes or equals signs are quoted.
func parseAttrs(t *testing.T, s string) summary {
	t.Helper()
	attrs := summary{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimLeft(s, " ") {
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			t.Fatalf("no key=value at %q", s)
		}
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				t.Fatalf("value of %s: %v", k, err)
			}
			attrs[k], _ = strconv.Unquote(q)
			s = rest[len(q):]
		} else {
			attrs[k], s, _ = strings.Cut(rest, " ")
		}
	}
	return attrs
}

// number is the attribute key as a number.
func (s summary) number(t *testing.T, key string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s[key], 10, 64)
	if err != nil {
		t.Fatalf("summary %v: %s is not a number", s, key)
	}
	return n
}

// counts are the summary's counts, in a form easy to compare.
func (s summary) counts(t *testing.T) [5]int64 {
	t.Helper()
	return [5]int64{s.number(t, "attempted"), s.number(t, "delivered"), s.number(t, "failed"), s.number(t, "unknown"), s.number(t, "recovered")}
}

// readPartition reads partition p of topic "timestamp" from its beginning to its end.
func readPartition(t *testing.T, bootstrap string, p int32) []*kafka.Message {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": false,
		"enable.partition.eof": true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	topic := "timestamp"
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: p, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	var msgs []*kafka.Message
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			msgs = append(msgs, e)
		case kafka.PartitionEOF:
			return msgs
		}
	}
	t.Fatalf("partition %d: no end within 20s", p)
	return nil
}

func header(m *kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// checkLog asserts that the messages are events 1..n, once each, in order.
func checkLog(t *testing.T, msgs []*kafka.Message, n int) {
	t.Helper()
	if len(msgs) != n {
		t.Fatalf("topic holds %d events, want %d", len(msgs), n)
	}
	for i, m := range msgs {
		if id := header(m, "ce_id"); id != strconv.Itoa(i+1) {
			t.Fatalf("event %d has ce_id %q, want %d (lost, duplicated or reordered)", i, id, i+1)
		}
	}
}

func mustParse(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return tm
}

func TestRun_sendsEveryEventOnceInOrderAsTheTutorialDoes(t *testing.T) {
	mc := mockCluster(t, 1, 1)
	const n = 50
	r := start(t, nil, "--bootstrap-servers", mc.BootstrapServers(), "--count", strconv.Itoa(n), "--interval", "1ms")
	if code := r.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0:\n%s", code, r.out.String())
	}
	if got, want := r.summary(t).counts(t), [5]int64{n, n, 0, 0, 0}; got != want {
		t.Fatalf("attempted, delivered, failed, unknown, recovered = %v, want %v", got, want)
	}
	// The lines read like the tutorial's: "Sending: 15:04:05", then the id.
	line := regexp.MustCompile(`^Sending: (\d\d:\d\d:\d\d) id=(\d+)$`)
	printed := map[string]string{} // the time printed for each id
	var ids []string
	for _, l := range strings.Split(r.out.String(), "\n") {
		if strings.Contains(l, "Sending: ") {
			m := line.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("output line %q does not read like the tutorial's", l)
			}
			printed[m[2]] = m[1]
			if ids = append(ids, m[2]); m[2] != strconv.Itoa(len(ids)) {
				t.Fatalf("Sending lines for ids %v, want 1 to %d in order:\n%s", ids, n, r.out.String())
			}
		}
	}
	if len(ids) != n {
		t.Fatalf("%d Sending lines, want %d:\n%s", len(ids), n, r.out.String())
	}
	msgs := readPartition(t, mc.BootstrapServers(), 0)
	checkLog(t, msgs, n)
	value := regexp.MustCompile(`^\{"timestamp":"\d\d:\d\d:\d\d"\}$`)
	for _, m := range msgs {
		if !value.Match(m.Value) {
			t.Fatalf("value %q is not the tutorial's JSON object", m.Value)
		}
		stamp := mustParse(t, header(m, "ce_time")).Format(event.Layout)
		if want := `{"timestamp":"` + stamp + `"}`; string(m.Value) != want {
			t.Fatalf("value %s does not carry the time of ce_time %s", m.Value, header(m, "ce_time"))
		}
		if id := header(m, "ce_id"); printed[id] != stamp {
			t.Fatalf("event %s was printed as sent at %s, its value says %s", id, printed[id], stamp)
		}
	}
}

func TestRun_stampsEventsWithTheirSlotsOnTheGrid(t *testing.T) {
	mc := mockCluster(t, 1, 1)
	const n, interval = 300, 500 * time.Microsecond
	r := start(t, nil, "--bootstrap-servers", mc.BootstrapServers(), "--count", strconv.Itoa(n), "--interval", interval.String(),
		"--log-events=false")
	if code := r.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0:\n%s", code, r.out.String())
	}
	s := r.summary(t)
	if s.number(t, "delivered") != n {
		t.Fatalf("summary %v, want %d delivered", s, n)
	}
	// A ticker drops ticks it cannot deliver in time; the grid sends late
	// events instead, so n events take about n intervals.
	elapsed, err := time.ParseDuration(s["elapsed"])
	if want := (n - 1) * interval; err != nil || elapsed < want || elapsed > want+3*time.Second {
		t.Errorf("%d events at %s took %q from the first send to the last report, want about %s", n, interval, s["elapsed"], want)
	}
	msgs := readPartition(t, mc.BootstrapServers(), 0)
	checkLog(t, msgs, n)
	first := mustParse(t, header(msgs[0], "ce_time"))
	for i, m := range msgs {
		if got, want := mustParse(t, header(m, "ce_time")).Sub(first), time.Duration(i)*interval; got != want {
			t.Fatalf("event %d is stamped %s after the first, want its slot %s\n%s", i+1, got, want, r.out.String())
		}
	}
	if strings.Contains(r.out.String(), "Sending: ") {
		t.Errorf("--log-events=false, but events were logged:\n%s", r.out.String())
	}
}

func TestRun_padsValuesAndSummarizesTheRate(t *testing.T) {
	mc := mockCluster(t, 1, 1)
	const n, size = 500, 1024
	r := start(t, nil, "--bootstrap-servers", mc.BootstrapServers(), "--count", strconv.Itoa(n), "--interval", "0",
		"--value-size", strconv.Itoa(size), "--log-events=false")
	if code := r.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0:\n%s", code, r.out.String())
	}
	s := r.summary(t)
	elapsed, err := time.ParseDuration(s["elapsed"])
	if err != nil || elapsed <= 0 {
		t.Fatalf("summary %v: want a positive elapsed time", s)
	}
	rate, err := strconv.ParseFloat(s["events_per_s"], 64)
	// The rate is truncated to a tenth, of an elapsed time printed to the microsecond.
	if want := float64(n) / elapsed.Seconds(); err != nil || s.number(t, "delivered") != n || math.Abs(rate-want) > 0.1+want*1e-4 {
		t.Fatalf("summary %v: want %d delivered at %.1f events/s", s, n, want)
	}
	msgs := readPartition(t, mc.BootstrapServers(), 0)
	checkLog(t, msgs, n)
	padded := regexp.MustCompile(`^\{"timestamp":"\d\d:\d\d:\d\d" *\}$`)
	for _, m := range msgs {
		if len(m.Value) != size || !padded.Match(m.Value) {
			t.Fatalf("value of %d bytes %.40q..., want the event padded to %d", len(m.Value), m.Value, size)
		}
	}
}

func TestRun_brokerDownAndUpLosesNothing(t *testing.T) {
	mc := mockCluster(t, 1, 1)
	const n = 400
	r := start(t, nil, "--bootstrap-servers", mc.BootstrapServers(), "--count", strconv.Itoa(n), "--interval", "2ms")
	r.waitFor(t, "Sending: ", 15*time.Second)
	for range 3 {
		time.Sleep(150 * time.Millisecond)
		if err := mc.SetBrokerDown(1); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
		if err := mc.SetBrokerUp(1); err != nil {
			t.Fatal(err)
		}
	}
	if code := r.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0:\n%s", code, r.out.String())
	}
	if got, want := r.summary(t).counts(t), [5]int64{n, n, 0, 0, 0}; got != want {
		t.Fatalf("attempted, delivered, failed, unknown, recovered = %v, want %v", got, want)
	}
	checkLog(t, readPartition(t, mc.BootstrapServers(), 0), n)
}

// The broker answers too late: the events time out while in flight, so
// they may have been written. They count as unknown, each with its line,
// never as delivered and never as surely lost.
func TestRun_deliveryTimeoutIsReportedForEveryEventAsUnknown(t *testing.T) {
	mc := mockCluster(t, 1, 1)
	const n = 5
	r := start(t, nil, "--bootstrap-servers", mc.BootstrapServers(), "--count", strconv.Itoa(n), "--interval", "300ms",
		"-X", "message.timeout.ms=300")
	// Slow from the first event on, not at start: the start would wait as long for its answers.
	r.waitFor(t, "Sending: ", 15*time.Second)
	if err := mc.SetRoundtripDuration(1, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t, 30*time.Second); code != 1 {
		t.Fatalf("exit code %d, want 1:\n%s", code, r.out.String())
	}
	s := r.summary(t)
	d := s.number(t, "delivered") // the first event may have gone before the broker slowed down
	if got, want := s.counts(t), [5]int64{n, d, 0, n - d, 0}; d > 1 || got != want {
		t.Fatalf("attempted, delivered, failed, unknown, recovered = %v, want %d attempted, all but the first unknown", got, n)
	}
	if got := strings.Count(r.out.String(), "ERROR Unconfirmed: "); int64(got) != n-d {
		t.Errorf("%d Unconfirmed lines for %d unknown events:\n%s", got, n-d, r.out.String())
	}
	if want := fmt.Sprintf("%d of %d events not delivered: 0 failed, %d unknown", n-d, n, n-d); !strings.HasPrefix(s["err"], want) {
		t.Errorf("err=%q, want it to start %q", s["err"], want)
	}
}

func TestRun_stopFlushesAcceptedEvents(t *testing.T) {
	mc := mockCluster(t, 1, 1)
	r := start(t, nil, "--bootstrap-servers", mc.BootstrapServers(), "--interval", "1ms", "-X", "linger.ms=200")
	r.waitFor(t, "Sending: ", 15*time.Second)
	time.Sleep(300 * time.Millisecond)
	r.signal(syscall.SIGTERM)
	if code := r.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0:\n%s", code, r.out.String())
	}
	s := r.summary(t)
	a := s.number(t, "attempted")
	if got, want := s.counts(t), [5]int64{a, a, 0, 0, 0}; a == 0 || got != want {
		t.Fatalf("attempted, delivered, failed, unknown, recovered = %v: every accepted event must be delivered on stop", got)
	}
	checkLog(t, readPartition(t, mc.BootstrapServers(), 0), int(a))
}

// The broker is away from before the last event is sent until longer than
// the flush after a stop would wait: a run with --count waits for it.
func TestRun_countRunWaitsOutAnOutageAtTheEnd(t *testing.T) {
	mc := mockCluster(t, 1, 1)
	const n = 100
	// Reconnecting within half a second of the broker's return keeps the test short.
	r := start(t, nil, "--bootstrap-servers", mc.BootstrapServers(), "--count", strconv.Itoa(n), "--interval", "10ms",
		"--log-level", "debug", "-X", "reconnect.backoff.max.ms=500")
	r.waitFor(t, "Delivered: ", 15*time.Second)
	if err := mc.SetBrokerDown(1); err != nil {
		t.Fatal(err)
	}
	r.waitFor(t, fmt.Sprintf(" id=%d\n", n), 15*time.Second) // the last event is sent
	time.Sleep(flushTimeout + 500*time.Millisecond)
	select {
	case code := <-r.code:
		r.code <- code
		t.Fatalf("the run ended with %d during the outage:\n%s", code, r.out.String())
	default:
	}
	if err := mc.SetBrokerUp(1); err != nil {
		t.Fatal(err)
	}
	if code := r.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0:\n%s", code, r.out.String())
	}
	if got, want := r.summary(t).counts(t), [5]int64{n, n, 0, 0, 0}; got != want {
		t.Fatalf("attempted, delivered, failed, unknown, recovered = %v, want %v", got, want)
	}
	checkLog(t, readPartition(t, mc.BootstrapServers(), 0), n)
}

// A stop during an outage waits at most the flush time, then purges: every
// event the client accepted is delivered, failed (queued) or unknown (in
// flight), each with its report.
func TestRun_stopDuringAnOutageAccountsForEveryEvent(t *testing.T) {
	tests := []struct {
		name  string
		fault func(*kafka.MockCluster) error
		fills string // the count the purge must fill
	}{
		{"broker down: queued events failed", func(mc *kafka.MockCluster) error { return mc.SetBrokerDown(1) }, "failed"},
		{"broker hangs: events in flight unknown", func(mc *kafka.MockCluster) error { return mc.SetRoundtripDuration(1, 10*time.Second) }, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mc := mockCluster(t, 1, 1)
			r := start(t, nil, "--bootstrap-servers", mc.BootstrapServers(), "--interval", "10ms", "--log-level", "debug")
			r.waitFor(t, "Delivered: ", 15*time.Second)
			if err := tt.fault(mc); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			r.signal(syscall.SIGTERM)
			code := r.wait(t, 15*time.Second)
			// The flush after a stop, the purge's own flush, and room for a busy machine.
			if took, bound := time.Since(r.signalled), flushTimeout+500*time.Millisecond+1500*time.Millisecond; took > bound {
				t.Errorf("the run took %s after the stop, want at most %s", took, bound)
			}
			s := r.summary(t)
			if code != 1 || !strings.Contains(s["err"], " events not delivered: ") {
				t.Fatalf("exit code %d, err=%q; want 1 and events not delivered:\n%s", code, s["err"], r.out.String())
			}
			a, d, f, u := s.number(t, "attempted"), s.number(t, "delivered"), s.number(t, "failed"), s.number(t, "unknown")
			if f+u != a-d || s.number(t, tt.fills) == 0 {
				t.Fatalf("summary %v: failed + unknown must be attempted - delivered, and the purge must fill %s", s, tt.fills)
			}
			// Each event not delivered had its report: a line says which.
			if lines := int64(strings.Count(r.out.String(), "ERROR Not delivered: ")); lines != f {
				t.Errorf("%d Not delivered lines for %d failed events", lines, f)
			}
			if lines := int64(strings.Count(r.out.String(), "ERROR Unconfirmed: ")); lines != u {
				t.Errorf("%d Unconfirmed lines for %d unknown events: some event had no report", lines, u)
			}
		})
	}
}

func TestRun_keyedEventsShareAPartitionUnkeyedOnesSpread(t *testing.T) {
	const partitions, n = 4, 200
	for _, tt := range []struct {
		key        string
		spread     func(perPartition map[int32]int) bool
		wantSpread string
	}{
		{"source", func(c map[int32]int) bool { return len(c) == 1 }, "all in one partition"},
		{"none", func(c map[int32]int) bool { return len(c) > 1 }, "several partitions"},
	} {
		t.Run("key "+tt.key, func(t *testing.T) {
			mc := mockCluster(t, 3, partitions)
			r := start(t, nil, "--bootstrap-servers", mc.BootstrapServers(), "--count", strconv.Itoa(n), "--interval", "1ms",
				"--key", tt.key, "--log-events=false")
			if code := r.wait(t, 30*time.Second); code != 0 || r.summary(t).number(t, "delivered") != n {
				t.Fatalf("exit code %d, want 0 and %d delivered:\n%s", code, n, r.out.String())
			}
			_, source, _ := strings.Cut(r.out.String(), " source=")
			source, _, _ = strings.Cut(source, "\n")
			perPartition, keys := map[int32]int{}, map[string]bool{}
			for p := range int32(partitions) {
				last := 0
				for _, m := range readPartition(t, mc.BootstrapServers(), p) {
					perPartition[p]++
					keys[string(m.Key)] = true
					if tt.key == "source" && string(m.Key) != source || tt.key == "none" && m.Key != nil {
						t.Fatalf("partition %d holds an event keyed %q, want the key %s (source %q)", p, m.Key, tt.key, source)
					}
					id, _ := strconv.Atoi(header(m, "ce_id"))
					if id <= last {
						t.Fatalf("partition %d: id %d after id %d", p, id, last)
					}
					last = id
				}
			}
			if total := perPartition[0] + perPartition[1] + perPartition[2] + perPartition[3]; total != n || !tt.spread(perPartition) {
				t.Errorf("events per partition %v; want %d in %s", perPartition, n, tt.wantSpread)
			}
		})
	}
}

// The W3C trace context travels with every event unless OpenTelemetry is
// switched off: without an exporter, spans are not recorded (flags 00).
func TestRun_traceContextTravelsInTheHeaders(t *testing.T) {
	traceparent := regexp.MustCompile(`^00-([0-9a-f]{32})-[0-9a-f]{16}-00$`)
	for _, tt := range []struct {
		name    string
		env     map[string]string
		context bool
	}{
		{"by default", nil, true},
		{"OTEL_SDK_DISABLED=true", map[string]string{"OTEL_SDK_DISABLED": "true"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mc := mockCluster(t, 1, 1)
			r := start(t, tt.env, "--bootstrap-servers", mc.BootstrapServers(), "--count", "3", "--interval", "1ms")
			if code := r.wait(t, 30*time.Second); code != 0 {
				t.Fatalf("exit code %d, want 0:\n%s", code, r.out.String())
			}
			traces := map[string]bool{}
			for _, m := range readPartition(t, mc.BootstrapServers(), 0) {
				var keys []string
				for _, h := range m.Headers {
					keys = append(keys, h.Key)
				}
				want := "ce_specversion ce_id ce_source ce_type ce_time content-type"
				if tt.context {
					want += " traceparent"
					match := traceparent.FindStringSubmatch(header(m, "traceparent"))
					if match == nil {
						t.Fatalf("event %s: traceparent %q, want an unsampled W3C trace context", header(m, "ce_id"), header(m, "traceparent"))
					}
					traces[match[1]] = true
				}
				if got := strings.Join(keys, " "); got != want {
					t.Errorf("event %s has headers %s, want %s", header(m, "ce_id"), got, want)
				}
			}
			if tt.context && len(traces) != 3 {
				t.Errorf("3 events in %d traces, want one each", len(traces))
			}
		})
	}
}

// With --http-addr, the run serves its health, readiness and metrics, and
// the healthcheck subcommand asks for the readiness as Docker does.
func TestRun_servesHealthReadinessAndMetrics(t *testing.T) {
	mc := mockCluster(t, 1, 1)
	r := start(t, nil, "--bootstrap-servers", mc.BootstrapServers(), "--interval", "10ms", "--http-addr", "127.0.0.1:0")
	r.waitFor(t, "Sending: ", 15*time.Second)
	_, addr, _ := strings.Cut(r.out.String(), "HTTP endpoint: /healthz, /readyz, /metrics addr=")
	addr, _, _ = strings.Cut(addr, "\n")
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(path); code != 200 || body != "ok\n" {
			t.Errorf("%s: %d %q, want 200 ok", path, code, body)
		}
	}
	var stdout, stderr syncBuffer
	if code := run([]string{"healthcheck", "--http-addr", addr}, func(string) string { return "" }, &stdout, &stderr, nil, noExit(t)); code != 0 || stdout.String() != "ready\n" {
		t.Errorf("healthcheck: exit code %d, stdout %q, stderr %q; want 0 and ready", code, stdout.String(), stderr.String())
	}
	code, body := get("/metrics")
	for _, want := range []string{"\nproducer_events_sent_total ", "\nproducer_events_delivered_total ", "\nproducer_recoveries_total 0\n",
		"\nproducer_delivery_seconds_count ", "\ngo_goroutines "} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics: %d, want 200 with %q:\n%.2000s", code, strings.TrimSpace(want), body)
		}
	}
	r.signal(syscall.SIGTERM)
	if code := r.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0:\n%s", code, r.out.String())
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("the endpoint still answers after the run")
	}
}

// librdkafka retries a failed producer id request only after 500 ms; a
// first event sent before the id came would wait as long.
func TestRun_firstEventGoesOutAtOnce(t *testing.T) {
	for round := range 3 {
		mc := mockCluster(t, 1, 1)
		r := start(t, nil, "--bootstrap-servers", mc.BootstrapServers(), "--count", "1", "--interval", "0")
		if code := r.wait(t, 30*time.Second); code != 0 {
			t.Fatalf("round %d: exit code %d, want 0:\n%s", round, code, r.out.String())
		}
		s := r.summary(t)
		if took, err := time.ParseDuration(s["elapsed"]); err != nil || took > 250*time.Millisecond {
			t.Errorf("round %d: the first event took %q from send to delivery report, want < 250ms\n%s", round, s["elapsed"], r.out.String())
		}
	}
}

// reported is a delivery report for the reports loop, of event id.
func reported(id uint64, err error) *kafka.Message {
	topic := "timestamp"
	return &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: 0, Offset: 7, Error: err},
		Opaque: &sent{ev: event.Event{ID: id, Time: time.Now()}, span: trace.SpanFromContext(context.Background())}}
}

func TestReports_countsEachReportByWhatBecameOfTheEvent(t *testing.T) {
	topic := "timestamp"
	type counts struct{ delivered, failed, unknown int64 }
	tests := []struct {
		name   string
		events []kafka.Event
		want   counts
		line   string // a line of the output; "" for none
	}{
		{"delivered", []kafka.Event{reported(1, nil)}, counts{1, 0, 0}, ""},
		{"purged while queued: surely not written", []kafka.Event{reported(1, kafka.NewError(kafka.ErrPurgeQueue, "purged", false))},
			counts{0, 1, 0}, "ERROR Not delivered: "},
		{"purged in flight: maybe written", []kafka.Event{reported(1, kafka.NewError(kafka.ErrPurgeInflight, "purged", false))},
			counts{0, 0, 1}, "ERROR Unconfirmed: "},
		{"timed out: maybe written", []kafka.Event{reported(1, kafka.NewError(kafka.ErrMsgTimedOut, "timed out", false))},
			counts{0, 0, 1}, "ERROR Unconfirmed: "},
		{"sent again after a leader stall: maybe written by the old client",
			[]kafka.Event{reported(1, fmt.Errorf("%w (%w)", kafka.NewError(kafka.ErrPurgeQueue, "purged", false), leaderstall.ErrResent))},
			counts{0, 0, 1}, "ERROR Unconfirmed: "},
		{"not ours", []kafka.Event{
			&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic}},
			&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic}, Opaque: uint64(1)},
			&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Error: errors.New("boom")}, Opaque: "someone else's"},
		}, counts{0, 0, 0}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out syncBuffer
			n := telemetry.NewCounts(kafka.ConfigMap{})
			events := make(chan kafka.Event, len(tt.events))
			for _, e := range tt.events {
				events <- e
			}
			close(events)
			reports(events, n, logging.New(&out, "text", slog.LevelInfo))
			if got := (counts{n.Acked.Load(), n.Failed.Load(), n.Unknown.Load()}); got != tt.want {
				t.Errorf("delivered, failed, unknown = %v, want %v", got, tt.want)
			}
			if tt.line != "" && strings.Count(out.String(), "\n") != 1 || tt.line == "" && out.String() != "" {
				t.Errorf("output %q, want one line %q", out.String(), tt.line)
			}
			if !strings.HasPrefix(out.String(), tt.line) {
				t.Errorf("output %q, want a line %q", out.String(), tt.line)
			}
		})
	}
}

// A fatal client error ends the run: it closes Stopped, which the shutdown
// watch takes as a stop, and the run's error is the client's.
func TestReports_fatalErrorStopsTheRun(t *testing.T) {
	n := telemetry.NewCounts(kafka.ConfigMap{})
	events := make(chan kafka.Event, 2)
	events <- kafka.NewError(kafka.ErrAllBrokersDown, "1/1 brokers are down", false)
	events <- kafka.NewError(kafka.ErrOutOfOrderSequenceNumber, "injected", true)
	close(events)
	reports(events, n, slog.New(slog.DiscardHandler))
	select {
	case <-n.Stopped():
	default:
		t.Fatal("Stopped is open after a fatal error")
	}
	if err := n.Err(); err == nil || !strings.Contains(err.Error(), "fatal producer error: ") {
		t.Errorf("Err = %v, want the fatal producer error", err)
	}
	if !n.BrokersDown.Load() {
		t.Error("every broker down was reported, but the counts do not say so")
	}
}
