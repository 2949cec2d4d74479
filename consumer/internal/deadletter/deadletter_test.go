package deadletter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/consumer/internal/telemetry"
)

const (
	source = "timestamp"
	dlq    = "timestamp.dlq"
)

// newCluster starts a mock cluster of two brokers: the topic on broker 1,
// the dead-letter topic's two partitions on brokers 1 and 2 (the mock
// cluster leads partition p on broker p%2+1).
func newCluster(t *testing.T) *kafka.MockCluster {
	t.Helper()
	mc, err := kafka.NewMockCluster(2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mc.Close)
	for tp, n := range map[string]int{source: 1, dlq: 2} {
		if err := mc.CreateTopic(tp, n, 1); err != nil {
			t.Fatal(err)
		}
	}
	return mc
}

// onBroker2 is a message key that librdkafka's default partitioner puts on
// partition 1 of 2: its dead letter goes to broker 2.
var onBroker2 = func() string {
	for i := 0; ; i++ {
		if k := "key-" + strconv.Itoa(i); crc32.ChecksumIEEE([]byte(k))%2 == 1 {
			return k
		}
	}
}()

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

// setup writes msgs to the topic and returns a consumer assigned its
// partition from the start, and a Writer to the dead-letter topic, with the
// extra properties props; both log to out as JSON.
func setup(t *testing.T, mc *kafka.MockCluster, out io.Writer, props kafka.ConfigMap, msgs ...*kafka.Message) (*kafka.Consumer, *Writer) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": mc.BootstrapServers()})
	if err != nil {
		t.Fatal(err)
	}
	reports := make(chan kafka.Event, len(msgs))
	for _, m := range msgs {
		tp := source
		m.TopicPartition = kafka.TopicPartition{Topic: &tp, Partition: 0}
		if err := p.Produce(m, reports); err != nil {
			t.Fatal(err)
		}
	}
	for range msgs {
		if m := (<-reports).(*kafka.Message); m.TopicPartition.Error != nil {
			t.Fatal(m.TopicPartition.Error)
		}
	}
	p.Close()
	cm := kafka.ConfigMap{"bootstrap.servers": mc.BootstrapServers(), "group.id": "test-group", "enable.auto.commit": false}
	for k, v := range props {
		cm[k] = v
	}
	log := slog.New(slog.NewJSONHandler(out, nil))
	c, err := kafka.NewConsumer(&cm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	tp := source
	if err := c.Assign([]kafka.TopicPartition{{Topic: &tp, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	w, err := New(cm, dlq, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return c, w
}

// next is the next message c reads within d, or nil.
func next(t *testing.T, c *kafka.Consumer, d time.Duration) *kafka.Message {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		if m, ok := c.Poll(50).(*kafka.Message); ok {
			return m
		}
	}
	return nil
}

// readAll reads partition p of the dead-letter topic from the start: want messages, and any one more.
func readAll(t *testing.T, bootstrap string, p int32, want int) []*kafka.Message {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": false})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tp := dlq
	if err := c.Assign([]kafka.TopicPartition{{Topic: &tp, Partition: p, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	var out []*kafka.Message
	for deadline := time.Now().Add(10 * time.Second); len(out) < want && time.Now().Before(deadline); {
		if m, err := c.ReadMessage(100 * time.Millisecond); err == nil {
			out = append(out, m)
		}
	}
	if m, err := c.ReadMessage(500 * time.Millisecond); err == nil {
		out = append(out, m)
	}
	return out
}

func header(m *kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Add pauses the message's partition; Poll writes the copy, byte for byte
// with the dlq headers, and once the broker acknowledged it returns the
// message and resumes the partition.
func TestWriter_pausesThePartitionUntilTheCopyIsAcknowledged(t *testing.T) {
	mc := newCluster(t)
	// Broker 2, the dead letter's partition leader, answers late.
	if err := mc.SetRoundtripDuration(2, time.Second); err != nil {
		t.Fatal(err)
	}
	bad := &kafka.Message{Key: []byte(onBroker2), Value: []byte("not json"), Headers: []kafka.Header{{Key: "trace", Value: []byte("t-1")}}}
	var out syncBuffer
	c, w := setup(t, mc, &out, nil, bad, &kafka.Message{Value: []byte("after")})
	m := next(t, c, 10*time.Second)
	if m == nil || string(m.Value) != "not json" {
		t.Fatalf("read %v, want the bad message", m)
	}
	if err := w.Add(c, m, errors.New("invalid event: not JSON")); err != nil {
		t.Fatal(err)
	}
	var written []*kafka.Message
	start := time.Now()
	for time.Since(start) < 15*time.Second && len(written) == 0 {
		got, err := w.Poll(c)
		if err != nil {
			t.Fatal(err)
		}
		written = got
		if later, ok := c.Poll(50).(*kafka.Message); ok && len(written) == 0 {
			t.Fatalf("read offset %d while the dead letter before it was unacknowledged: the partition is not paused", later.TopicPartition.Offset)
		}
	}
	if len(written) != 1 || written[0] != m {
		t.Fatalf("Poll returned %v, want the bad message once written", written)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("written after %s, before the broker's acknowledgement could come", took)
	}
	if after := next(t, c, 10*time.Second); after == nil || string(after.Value) != "after" {
		t.Errorf("read %v after the copy was written, want the next message: the partition is resumed", after)
	}
	dead := readAll(t, mc.BootstrapServers(), 1, 1)
	if len(dead) != 1 {
		t.Fatalf("dead-letter partition holds %d messages, want 1", len(dead))
	}
	d := dead[0]
	if string(d.Key) != onBroker2 || string(d.Value) != "not json" || header(d, "trace") != "t-1" ||
		header(d, "dlq.error") != "invalid event: not JSON" || header(d, "dlq.topic") != source ||
		header(d, "dlq.partition") != "0" || header(d, "dlq.offset") != "0" {
		t.Errorf("dead letter %q=%q %v: want the message byte for byte with its dlq headers", d.Key, d.Value, d.Headers)
	}
	if !strings.Contains(out.String(), `"msg":"Dead-lettered"`) {
		t.Errorf("no line says so:\n%s", out.String())
	}
}

// A dead-letter topic that refuses for good (here: a copy over
// message.max.bytes) stops the consumer, with an error that says where.
func TestWriter_aPermanentRefusalIsAnError(t *testing.T) {
	mc := newCluster(t)
	var out syncBuffer
	c, w := setup(t, mc, &out, kafka.ConfigMap{"message.max.bytes": 5000}, &kafka.Message{Value: []byte("ok")},
		&kafka.Message{Value: bytes.Repeat([]byte("x"), 10_000)})
	_ = next(t, c, 10*time.Second)
	m := next(t, c, 10*time.Second)
	if m == nil {
		t.Fatal("the big message did not come")
	}
	if err := w.Add(c, m, errors.New("invalid event: too big")); err != nil {
		t.Fatal(err)
	}
	var err error
	for deadline := time.Now().Add(10 * time.Second); err == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		_, err = w.Poll(c)
	}
	want := `cannot dead-letter offset 1 of timestamp[0] to "timestamp.dlq": Broker: Message size too large (MSG_SIZE_TOO_LARGE)`
	if err == nil || err.Error() != want {
		t.Errorf("Poll = %v, want %s", err, want)
	}
}

// A write the broker does not take for now (its partition's leader is down)
// is retried with backoff, said each time, until it goes through.
func TestWriter_retriesUntilTheDeadLetterTopicIsBack(t *testing.T) {
	mc := newCluster(t)
	if err := mc.SetBrokerDown(2); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	c, w := setup(t, mc, &out, kafka.ConfigMap{"message.timeout.ms": 500}, &kafka.Message{Key: []byte(onBroker2), Value: []byte("bad")})
	m := next(t, c, 10*time.Second)
	if err := w.Add(c, m, errors.New("invalid event")); err != nil {
		t.Fatal(err)
	}
	var written []*kafka.Message
	up := false
	for deadline := time.Now().Add(20 * time.Second); len(written) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		var err error
		if written, err = w.Poll(c); err != nil {
			t.Fatal(err)
		}
		if !up && strings.Count(out.String(), "Dead-letter write failed, retrying") >= 2 {
			if err := mc.SetBrokerUp(2); err != nil {
				t.Fatal(err)
			}
			up = true
		}
	}
	if !up || len(written) != 1 {
		t.Fatalf("broker back: %t; written %v; want the write retried until it went through:\n%s", up, written, out.String())
	}
	if dead := readAll(t, mc.BootstrapServers(), 1, 1); len(dead) != 1 {
		t.Errorf("dead-letter partition holds %d messages, want 1", len(dead))
	}
}

// Revoked settles the dead letters of partitions that go: a write in flight
// is waited for and returned once written, so that its offset is committed
// before the partition's next owner starts; a write unconfirmed in time, or
// not sent yet, is given up, and its message comes again to the next owner.
func TestWriter_revokedSettlesTheWritesOfPartitionsThatGo(t *testing.T) {
	tests := []struct {
		name    string
		sent    bool          // Poll sent the copy before the revoke
		wait    time.Duration // Revoked's wait
		written bool          // Revoked returns it
		copies  int           // in the dead-letter topic in the end
		warn    bool          // a line says the next owner may write it again
	}{
		{"in flight, acknowledged in time", true, 5 * time.Second, true, 1, false},
		{"in flight, unconfirmed in time", true, 50 * time.Millisecond, false, 1, true},
		{"not sent yet", false, 5 * time.Second, false, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mc := newCluster(t)
			if err := mc.SetRoundtripDuration(2, 500*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			var out syncBuffer
			c, w := setup(t, mc, &out, nil, &kafka.Message{Key: []byte(onBroker2), Value: []byte("bad")})
			m := next(t, c, 10*time.Second)
			if err := w.Add(c, m, errors.New("invalid event")); err != nil {
				t.Fatal(err)
			}
			if tt.sent {
				if written, err := w.Poll(c); err != nil || len(written) != 0 {
					t.Fatalf("Poll = %v, %v; want the copy sent, unacknowledged", written, err)
				}
			}
			start := time.Now()
			written := w.Revoked(c, []kafka.TopicPartition{m.TopicPartition}, tt.wait)
			if took := time.Since(start); took > tt.wait+time.Second {
				t.Errorf("Revoked took %s, over its wait of %s", took, tt.wait)
			}
			if got := len(written) == 1 && written[0] == m; got != tt.written || len(written) > 1 {
				t.Errorf("Revoked returned %v, want the message: %t", written, tt.written)
			}
			if len(w.pending) != 0 {
				t.Errorf("%d writes pending after their partition went, want none", len(w.pending))
			}
			// A report that comes later changes nothing: the next owner has the message.
			time.Sleep(1500 * time.Millisecond)
			if later, err := w.Poll(c); err != nil || len(later) != 0 {
				t.Errorf("Poll after the revoke = %v, %v; want nothing", later, err)
			}
			if dead := readAll(t, mc.BootstrapServers(), 1, tt.copies); len(dead) != tt.copies {
				t.Errorf("dead-letter partition holds %d messages, want %d", len(dead), tt.copies)
			}
			if warned := strings.Contains(out.String(), "the next owner may write it again"); warned != tt.warn {
				t.Errorf("warned %t, want %t:\n%s", warned, tt.warn, out.String())
			}
		})
	}
}

// A fatal error of the dead-letter producer (idempotence broken) leaves only
// a restart: Poll returns it, Healthy says it, and /healthz turns unhealthy.
func TestWriter_aFatalProducerErrorMakesTheConsumerUnhealthy(t *testing.T) {
	mc := newCluster(t)
	var out syncBuffer
	_, w := setup(t, mc, &out, nil)
	counts := telemetry.NewCounts(kafka.ConfigMap{})
	var served syncBuffer
	closeServer, err := telemetry.Serve("127.0.0.1:0", slog.New(slog.NewJSONHandler(&served, nil)), counts.Healthy(w.Healthy), func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer closeServer()
	var rec struct{ Addr string }
	if err := json.Unmarshal([]byte(served.String()), &rec); err != nil {
		t.Fatal(err)
	}
	if w.Healthy() != nil {
		t.Fatalf("Healthy = %v before any error", w.Healthy())
	}
	if code := w.p.TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "test: sequence broken"); code != kafka.ErrNoError {
		t.Fatalf("TestFatalError: %v", code)
	}
	var perr error
	for deadline := time.Now().Add(10 * time.Second); perr == nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		_, perr = w.Poll(nil) // nothing pending: the consumer is not used
	}
	if perr == nil || !strings.HasPrefix(perr.Error(), "fatal dead-letter producer error: ") {
		t.Fatalf("Poll = %v, want the fatal error", perr)
	}
	if err := w.Healthy(); err == nil || err.Error() != perr.Error() {
		t.Errorf("Healthy = %v, want %v", err, perr)
	}
	resp, err := http.Get("http://" + rec.Addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "fatal dead-letter producer error") {
		t.Errorf("/healthz %s %q, want 503 with the error", resp.Status, body)
	}
}

// The dead-letter producer is made from the consumer's configuration without
// the properties only a consumer takes: a bad value of one of those does not
// reach it, while a bad value of a property both take fails New.
func TestNew_keepsConsumerPropertiesOffTheDeadLetterProducer(t *testing.T) {
	tests := []struct {
		key  string
		bad  any  // a value librdkafka refuses; nil: none is refused
		only bool // a consumer's property only
	}{
		{"session.timeout.ms", "soon", true},
		{"group.instance.id", nil, true},
		{"group.protocol", "bogus", true},
		{"partition.assignment.strategy", nil, true},
		{"max.poll.interval.ms", "x", true},
		{"fetch.wait.max.ms", "x", true},
		{"fetch.queue.backoff.ms", "x", true},
		{"max.partition.fetch.bytes", "x", true},
		{"auto.offset.reset", "bogus", true},
		{"isolation.level", "bogus", true},
		{"queued.min.messages", "x", true},
		{"enable.auto.offset.store", "maybe", true},
		{"allow.auto.create.topics", "maybe", true}, // both scopes, kept off anyway
		{"statistics.interval.ms", "x", true},
		{"linger.ms", "x", false},
		{"client.id", nil, false},
		{"security.protocol", "bogus", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if got := consumerOnly(tt.key); got != tt.only {
				t.Errorf("consumerOnly(%q) = %v, want %v", tt.key, got, tt.only)
			}
			if tt.bad == nil {
				return
			}
			w, err := New(kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1", "group.id": "g", tt.key: tt.bad}, dlq, slog.New(slog.DiscardHandler))
			if err == nil {
				w.Close()
			}
			if tt.only && err != nil {
				t.Errorf("New with %s=%v: %v; want the property kept off the producer", tt.key, tt.bad, err)
			}
			if !tt.only && (err == nil || !strings.Contains(err.Error(), "Invalid value")) {
				t.Errorf("New with %s=%v: %v; want the producer to refuse it", tt.key, tt.bad, err)
			}
		})
	}
}

func TestHeaders_keepTheOriginalsAndBoundTheError(t *testing.T) {
	src := "t"
	m := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &src, Partition: 3, Offset: 42}, Value: []byte("v"),
		Headers: []kafka.Header{{Key: "trace", Value: []byte("t-1")}}}
	tests := []struct {
		name, reason, want string
	}{
		{"short", "invalid event: not JSON", "invalid event: not JSON"},
		// A reason of 3,000 bytes whose cut would split a two-byte character.
		{"long", strings.Repeat("x", maxErrorBytes-1) + strings.Repeat("é", 1000), strings.Repeat("x", maxErrorBytes-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := Headers(m, errors.New(tt.reason))
			want := []kafka.Header{{Key: "trace", Value: []byte("t-1")}, {Key: "dlq.error", Value: []byte(tt.want)},
				{Key: "dlq.topic", Value: []byte("t")}, {Key: "dlq.partition", Value: []byte("3")}, {Key: "dlq.offset", Value: []byte("42")}}
			if fmt.Sprint(hs) != fmt.Sprint(want) {
				t.Errorf("headers %.200v, want %.200v", hs, want)
			}
			if len(m.Headers) != 1 {
				t.Errorf("the message's own headers became %v", m.Headers)
			}
		})
	}
}

func TestPermanent(t *testing.T) {
	tests := []struct {
		err  error
		want bool
		name string // the code's name in the error
	}{
		{kafka.NewError(kafka.ErrMsgSizeTooLarge, "too large", false), true, "MSG_SIZE_TOO_LARGE"},
		{kafka.NewError(kafka.ErrTopicAuthorizationFailed, "not allowed", false), true, "TOPIC_AUTHORIZATION_FAILED"},
		{kafka.NewError(kafka.ErrPolicyViolation, "policy", false), true, "POLICY_VIOLATION"},
		{kafka.NewError(kafka.ErrTopicException, "invalid topic", false), true, "TOPIC_EXCEPTION"},
		{kafka.NewError(kafka.ErrUnknownTopicOrPart, "gone", false), true, "UNKNOWN_TOPIC_OR_PART"},
		{kafka.NewError(kafka.ErrOutOfOrderSequenceNumber, "fatal", true), true, "error code 45"},
		{kafka.NewError(kafka.ErrMsgTimedOut, "timed out", false), false, "error code -192"},
		{kafka.NewError(kafka.ErrAllBrokersDown, "down", false), false, "error code -187"},
		{kafka.NewError(kafka.ErrNotEnoughReplicas, "not enough replicas", false), false, "error code 19"},
		{errors.New("not a Kafka error"), false, "error code 0"},
	}
	for _, tt := range tests {
		if got := permanent(tt.err); got != tt.want {
			t.Errorf("permanent(%v) = %v; want %v", tt.err, got, tt.want)
		}
		if got := codeName(tt.err); got != tt.name {
			t.Errorf("codeName(%v) = %q; want %q", tt.err, got, tt.name)
		}
	}
}
