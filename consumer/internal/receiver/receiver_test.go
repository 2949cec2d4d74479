package receiver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/consumer/internal/config"
	"github.com/event-driven-go/kafka-go/consumer/internal/event"
)

const topic = "timestamp"

// mockCluster starts librdkafka's in-process mock cluster with the topic
// and its dead-letter topic, one partition each.
func mockCluster(t *testing.T) *kafka.MockCluster {
	return newMockCluster(t, 1, map[string]int{topic: 1, topic + ".dlq": 1})
}

// newMockCluster starts a mock cluster of brokers brokers with topics,
// each with the number of partitions given; the mock cluster leads
// partition p on broker p%brokers+1.
func newMockCluster(t *testing.T, brokers int, topics map[string]int) *kafka.MockCluster {
	t.Helper()
	mc, err := kafka.NewMockCluster(brokers)
	if err != nil {
		t.Fatalf("mock cluster: %v", err)
	}
	t.Cleanup(mc.Close)
	for tp, partitions := range topics {
		if err := mc.CreateTopic(tp, partitions, 1); err != nil {
			t.Fatalf("create topic %s: %v", tp, err)
		}
	}
	return mc
}

// syncBuffer is a bytes.Buffer safe for the logger and the test at once.
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

// records parses the JSON log lines with the given message prefix.
func (s *syncBuffer) records(t *testing.T, prefix string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(s.String(), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if msg, _ := rec["msg"].(string); strings.HasPrefix(msg, prefix) {
			out = append(out, rec)
		}
	}
	return out
}

func newReceiver(t *testing.T, mc *kafka.MockCluster, out *syncBuffer, cfg config.Config, props kafka.ConfigMap) *Receiver {
	t.Helper()
	cfg.Topic, cfg.DLQTopic, cfg.BootstrapServers = topic, topic+".dlq", mc.BootstrapServers()
	if cfg.Group == "" {
		cfg.Group = "test-group"
	}
	if cfg.Group != quietGroup {
		cfg.LogEvents = true
	}
	cfg.Kafka = map[string]string{}
	for k, v := range props {
		if k == "bootstrap.servers" {
			cfg.BootstrapServers = fmt.Sprint(v)
		} else {
			cfg.Kafka[k] = fmt.Sprint(v)
		}
	}
	r, err := New(cfg, jsonLog(out, slog.LevelInfo), nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// jsonLog logs as --log-format json does.
func jsonLog(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// quietGroup is the group of tests that run without a line per event;
// newReceiver turns LogEvents on for every other group.
const quietGroup = "quiet-group"

// goodEvent is event id as our producer sends it.
func goodEvent(seq int) *kafka.Message {
	now := time.Now()
	tp := topic
	return &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &tp, Partition: kafka.PartitionAny},
		Value:          []byte(`{"timestamp":"` + now.Format(event.TimestampLayout) + `"}`),
		Headers: []kafka.Header{
			{Key: "ce_specversion", Value: []byte("1.0")},
			{Key: "ce_id", Value: []byte(strconv.Itoa(seq))},
			{Key: "ce_source", Value: []byte("/producer/test")},
			{Key: "ce_type", Value: []byte("io.github.event-driven-go.timestamp.v1")},
			{Key: "ce_time", Value: []byte(now.Format(time.RFC3339Nano))},
			{Key: "content-type", Value: []byte("application/json")},
		},
	}
}

func rawMessage(key, value string, headers ...kafka.Header) *kafka.Message {
	tp := topic
	m := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &tp, Partition: kafka.PartitionAny}, Value: []byte(value), Headers: headers}
	if key != "" {
		m.Key = []byte(key)
	}
	return m
}

// produce writes msgs with a plain producer and waits for every delivery.
func produce(t *testing.T, bootstrap string, msgs ...*kafka.Message) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	reports := make(chan kafka.Event, len(msgs))
	for _, m := range msgs {
		if err := p.Produce(m, reports); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	for range msgs {
		if m := (<-reports).(*kafka.Message); m.TopicPartition.Error != nil {
			t.Fatalf("delivery: %v", m.TopicPartition.Error)
		}
	}
}

// runUntil runs r until cond holds or the timeout passes, then stops it.
func runUntil(t *testing.T, r *Receiver, timeout time.Duration, cond func() bool) Result {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type ret struct {
		res Result
		err error
	}
	done := make(chan ret, 1)
	go func() {
		res, err := r.Run(ctx)
		done <- ret{res, err}
	}()
	deadline := time.Now().Add(timeout)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	rt := <-done
	if rt.err != nil {
		t.Fatalf("Run: %v", rt.err)
	}
	return rt.res
}

func TestReceiver_measuresTheRunAndLogsNoEventsWhenQuiet(t *testing.T) {
	mc := mockCluster(t)
	const n = 20
	msgs := make([]*kafka.Message, n)
	for i := range msgs {
		msgs[i] = goodEvent(i + 1)
	}
	produce(t, mc.BootstrapServers(), msgs...)
	var out syncBuffer
	r := newReceiver(t, mc, &out, config.Config{Count: n, Group: quietGroup}, nil)
	// Event k (from 1) is handled k ms after the start.
	start, calls := time.Now(), 0
	r.now = func() time.Time { calls++; return start.Add(time.Duration(calls) * time.Millisecond) }
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Received != n || res.Elapsed != (n-1)*time.Millisecond {
		t.Errorf("received %d in %s, want %d in %s", res.Received, res.Elapsed, n, (n-1)*time.Millisecond)
	}
	if strings.Contains(out.String(), "Received: ") {
		t.Errorf("LogEvents is off, but events were logged:\n%s", out.String())
	}
}

func TestReceiver_receivesEveryEventOnceInOrder(t *testing.T) {
	mc := mockCluster(t)
	const n = 30
	msgs := make([]*kafka.Message, n)
	for i := range msgs {
		msgs[i] = goodEvent(i + 1)
	}
	produce(t, mc.BootstrapServers(), msgs...)

	var out syncBuffer
	r := newReceiver(t, mc, &out, config.Config{Count: n}, nil)
	res, err := r.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Received != n || res.Duplicates != 0 || res.DeadLettered != 0 {
		t.Fatalf("result %+v, want %d received, no duplicates", res, n)
	}
	recs := out.records(t, "Received: ")
	if len(recs) != n {
		t.Fatalf("logged %d Received lines, want %d:\n%s", len(recs), n, out.String())
	}
	for i, rec := range recs {
		if rec["id"] != strconv.Itoa(i+1) || rec["partition"] != 0.0 || rec["offset"] != float64(i) || rec["latency"] == nil || rec["duplicate"] != nil {
			t.Fatalf("line %d is %v: want id %d at offset %d, with a latency, no duplicate", i, rec, i+1, i)
		}
	}
}

func TestReceiver_acceptsTutorialFormatsWithoutHeaders(t *testing.T) {
	mc := mockCluster(t)
	produce(t, mc.BootstrapServers(),
		rawMessage("", `{"timestamp": "10:11:12"}`), // the tutorial repository's producer
		rawMessage("", `"13:14:15"`),                // the article text's producer
	)
	var out syncBuffer
	r := newReceiver(t, mc, &out, config.Config{Count: 2}, nil)
	res, err := r.Run(context.Background())
	if err != nil || res.Received != 2 || res.DeadLettered != 0 {
		t.Fatalf("Run = %+v, %v; want both received", res, err)
	}
	recs := out.records(t, "Received: ")
	if len(recs) != 2 || recs[0]["msg"] != "Received: 10:11:12" || recs[1]["msg"] != "Received: 13:14:15" ||
		recs[0]["id"] != nil || recs[0]["latency"] != nil || recs[1]["offset"] != 1.0 {
		t.Errorf("lines %v: want both timestamps, no id or latency", recs)
	}
}

func TestReceiver_malformedMessagesGoToDLQ(t *testing.T) {
	mc := mockCluster(t)
	huge := `{"timestamp":"10:00:00","pad":"` + strings.Repeat("x", event.MaxValueBytes) + `"}`
	bad := []*kafka.Message{
		rawMessage("k1", "not json"),
		rawMessage("", ""),
		rawMessage("", `{"time":"10:00:00"}`),
		rawMessage("", `{"timestamp":42}`),
		rawMessage("", `"25:61:00"`),
		rawMessage("", "[1,2]"),
		rawMessage("", huge),
		rawMessage("k2", `{"timestamp":"10:00:00"}`, kafka.Header{Key: "ce_time", Value: []byte("yesterday")}),
		rawMessage("", "\xff\xfe\x00binary"),
	}
	var all []*kafka.Message
	good := 0
	for _, b := range bad {
		good++
		all = append(all, goodEvent(good), b)
	}
	good++
	all = append(all, goodEvent(good))
	produce(t, mc.BootstrapServers(), all...)

	var out syncBuffer
	r := newReceiver(t, mc, &out, config.Config{}, nil)
	res := runUntil(t, r, 15*time.Second, func() bool { return len(out.records(t, "Received: ")) >= good })
	if res.Received != int64(good) || res.DeadLettered != int64(len(bad)) {
		t.Fatalf("result %+v, want %d received and %d dead-lettered", res, good, len(bad))
	}
	if n := len(out.records(t, "Dead-lettered")); n != len(bad) {
		t.Errorf("%d dead-letter log lines for %d bad messages", n, len(bad))
	}

	dead := readAll(t, mc.BootstrapServers(), topic+".dlq", 0, len(bad))
	if len(dead) != len(bad) {
		t.Fatalf("dead-letter topic holds %d messages, want %d", len(dead), len(bad))
	}
	for i, d := range dead {
		b := bad[i]
		if !bytes.Equal(d.Value, b.Value) || !bytes.Equal(d.Key, b.Key) {
			t.Errorf("dead letter %d: key %q value %.40q, want the original key %q value %.40q", i, d.Key, d.Value, b.Key, b.Value)
		}
		for _, h := range b.Headers {
			if got := header(d, h.Key); got != string(h.Value) {
				t.Errorf("dead letter %d: original header %s = %q, want %q", i, h.Key, got, h.Value)
			}
		}
		wantOffset := strconv.Itoa(2*i + 1) // bad messages sit between good ones
		if header(d, "dlq.error") == "" || header(d, "dlq.topic") != topic ||
			header(d, "dlq.partition") != "0" || header(d, "dlq.offset") != wantOffset {
			t.Errorf("dead letter %d headers %v: want error, topic %s, partition 0, offset %s", i, d.Headers, topic, wantOffset)
		}
	}
	if got := committed(t, mc.BootstrapServers(), "test-group"); got != int64(len(all)) {
		t.Errorf("committed offset %d, want %d: every message, good or bad, is done", got, len(all))
	}
}

func TestReceiver_abandonedConsumerLosesNothing(t *testing.T) {
	mc := mockCluster(t)
	const n, handled = 200, 80
	msgs := make([]*kafka.Message, n)
	for i := range msgs {
		msgs[i] = goodEvent(i + 1)
	}
	produce(t, mc.BootstrapServers(), msgs...)
	props := kafka.ConfigMap{
		"auto.commit.interval.ms": 100,
		"session.timeout.ms":      3000,
		"heartbeat.interval.ms":   100,
		"max.poll.interval.ms":    3000,
	}

	// The first consumer's handler dies on event 81, which Poll had
	// returned, while librdkafka had fetched the rest; the client is left
	// behind without a close, like a process that hangs. Its background
	// commits go on until it leaves the group.
	var outA syncBuffer
	a := newReceiver(t, mc, &outA, config.Config{}, props)
	// Stores in batches of 10: event 80 ends a batch, event 81 is in none.
	a.storeEvery = 10
	calls := 0
	a.now = func() time.Time {
		if calls++; calls > handled {
			panic("handler died")
		}
		return time.Now()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	func() {
		defer func() { _ = recover() }()
		_ = a.consume(ctx)
	}()
	if a.result().Received != handled {
		t.Fatalf("first consumer handled %d events, want %d:\n%s", a.result().Received, handled, outA.String())
	}

	waitFor(t, 10*time.Second, "the first consumer's background commit", func() bool {
		return committed(t, mc.BootstrapServers(), "test-group") >= handled
	})
	// The second consumer gets the partition once the first was evicted,
	// and must start with the event the first one died on.
	var outB syncBuffer
	b := newReceiver(t, mc, &outB, config.Config{}, props)
	runUntil(t, b, 30*time.Second, func() bool { return len(outB.records(t, "Received: ")) >= n-handled })
	got := outB.records(t, "Received: ")
	if len(got) == 0 || got[0]["id"] != strconv.Itoa(handled+1) {
		first := any(nil)
		if len(got) > 0 {
			first = got[0]["id"]
		}
		t.Fatalf("the second consumer started at event %v, want %d: the one the first died on is lost, or handled events came twice", first, handled+1)
	}
	if len(got) != n-handled {
		t.Errorf("the second consumer received %d events, want the %d the first did not handle", len(got), n-handled)
	}
	// The abandoned consumer was evicted from the group; it must still close.
	closed := make(chan struct{})
	go func() { a.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the abandoned consumer does not close")
	}
}

// readAll reads partition p of topic tp from the start: want messages, and any one more.
func readAll(t *testing.T, bootstrap, tp string, p int32, want int) []*kafka.Message {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": false})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Assign([]kafka.TopicPartition{{Topic: &tp, Partition: p, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	var out []*kafka.Message
	for deadline := time.Now().Add(10 * time.Second); len(out) < want && time.Now().Before(deadline); {
		if m, err := c.ReadMessage(100 * time.Millisecond); err == nil {
			out = append(out, m)
		}
	}
	if m, err := c.ReadMessage(300 * time.Millisecond); err == nil {
		out = append(out, m)
	}
	return out
}

func committed(t *testing.T, bootstrap, group string) int64 {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": group})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tp := topic
	offs, err := c.Committed([]kafka.TopicPartition{{Topic: &tp, Partition: 0}}, 5000)
	if err != nil {
		t.Fatal(err)
	}
	return int64(offs[0].Offset)
}

func header(m *kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestReceiver_reportsFailedCommits(t *testing.T) {
	tp := topic
	tests := []struct {
		name string
		ev   kafka.OffsetsCommitted
		want string // "" when nothing may be logged
	}{
		{"success", kafka.OffsetsCommitted{Offsets: []kafka.TopicPartition{{Topic: &tp, Offset: 5}}}, ""},
		{"nothing stored yet", kafka.OffsetsCommitted{Error: kafka.NewError(kafka.ErrNoOffset, "no offset", false)}, ""},
		{"request failed", kafka.OffsetsCommitted{Error: kafka.NewError(kafka.ErrRequestTimedOut, "timed out", false)},
			`"level":"WARN","msg":"Commit failed; events handled since the last commit will be delivered again"`},
		{"partition failed", kafka.OffsetsCommitted{Offsets: []kafka.TopicPartition{
			{Topic: &tp, Offset: 5, Error: kafka.NewError(kafka.ErrNotCoordinator, "not coordinator", false)}}},
			`"level":"WARN","msg":"Commit failed for a partition","partition":0,"offset":5`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out syncBuffer
			r := &Receiver{log: jsonLog(&out, slog.LevelInfo)}
			r.committed(tt.ev.Error, tt.ev.Offsets)
			if got := out.String(); tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("logged %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNew_keepsConsumerPropertiesOffTheDeadLetterProducer(t *testing.T) {
	tests := []struct {
		key   string
		value any
		only  bool // a consumer's property only
	}{
		{"session.timeout.ms", 6000, true},
		{"group.instance.id", "consumer-1", true},
		{"group.protocol", "classic", true},
		{"partition.assignment.strategy", "range", true},
		{"max.poll.interval.ms", 600000, true},
		{"fetch.wait.max.ms", 100, true},
		{"fetch.queue.backoff.ms", 50, true},
		{"max.partition.fetch.bytes", 2 << 20, true},
		{"auto.offset.reset", "latest", true},
		{"isolation.level", "read_uncommitted", true},
		{"queued.min.messages", 1000, true},
		{"allow.auto.create.topics", true, true}, // both scopes, kept off anyway
		{"linger.ms", 10, false},
		{"client.id", "me", false},
		{"security.protocol", "plaintext", false},
	}
	mc := mockCluster(t)
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if got := consumerOnly(tt.key); got != tt.only {
				t.Errorf("consumerOnly(%q) = %v, want %v", tt.key, got, tt.only)
			}
			var out syncBuffer
			r, err := New(config.Config{Topic: topic, DLQTopic: topic + ".dlq", Group: "g", BootstrapServers: mc.BootstrapServers(),
				Kafka: map[string]string{tt.key: fmt.Sprint(tt.value)}}, jsonLog(&out, slog.LevelDebug), nil)
			if err != nil {
				t.Fatal(err)
			}
			r.Close()
			// librdkafka warns about a property a client of its kind ignores.
			for _, l := range strings.Split(out.String(), "\n") {
				if strings.Contains(l, tt.key+" is a consumer property") {
					t.Errorf("%s", l)
				}
			}
		})
	}
}

func TestReceiver_commitsBeforePartitionsMove(t *testing.T) {
	mc := newMockCluster(t, 3, map[string]int{topic: 2}) // each partition led by another broker
	batch := func(from, to int) []*kafka.Message {
		var msgs []*kafka.Message
		for i := from; i <= to; i++ {
			m := goodEvent(i)
			m.TopicPartition.Partition = int32(i % 2)
			msgs = append(msgs, m)
		}
		return msgs
	}
	const n = 40
	produce(t, mc.BootstrapServers(), batch(1, n)...)
	// No background commit within the test: only the one before a
	// partition moves can save the second consumer from reading again.
	// The mock cluster refuses commits while a classic group rebalances
	// (REBALANCE_IN_PROGRESS; a real broker takes them while the group
	// prepares); the consumer protocol (KIP-848) has no such phase.
	// librdkafka itself commits the stored offsets of a partition it takes
	// away, in the background, as rebalanced does, waiting for the answer:
	// the test fails only when both are gone.
	props := kafka.ConfigMap{"auto.commit.interval.ms": 600_000, "group.protocol": "consumer"}
	var outA, outB syncBuffer
	a := newReceiver(t, mc, &outA, config.Config{}, props)
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	doneA := make(chan struct{})
	go func() {
		_, _ = a.Run(ctxA)
		close(doneA)
	}()
	waitFor(t, 20*time.Second, "the first consumer's events", func() bool { return len(outA.records(t, "Received: ")) == n })

	b := newReceiver(t, mc, &outB, config.Config{}, props)
	ids := func(buf *syncBuffer) map[string]int {
		seen := map[string]int{}
		for _, rec := range buf.records(t, "Received: ") {
			seen[rec["id"].(string)]++
		}
		return seen
	}
	produceMore := sync.OnceFunc(func() { produce(t, mc.BootstrapServers(), batch(n+1, 2*n)...) })
	runUntil(t, b, 30*time.Second, func() bool {
		if len(outB.records(t, "Partitions assigned")) > 0 {
			produceMore()
		}
		return len(ids(&outA))+len(ids(&outB)) >= 2*n
	})
	cancelA()
	<-doneA
	seenA, seenB := ids(&outA), ids(&outB)
	for id := range seenB {
		if seenA[id] > 0 {
			t.Errorf("event %s was received by both consumers: the first did not commit before its partition moved", id)
		}
	}
	if len(seenA)+len(seenB) != 2*n || len(seenB) == 0 {
		t.Errorf("received %d and %d distinct events, want %d in all, some by the second consumer", len(seenA), len(seenB), 2*n)
	}
}
