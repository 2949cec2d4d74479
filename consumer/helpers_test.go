package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/consumer/internal/event"
)

const source = "timestamp" // the topic the tests read

// childArgs, when set, makes this test binary the consumer itself, with
// these arguments (one a line): for a test that kills a consumer.
const childArgs = "CONSUMER_TEST_CHILD_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childArgs); args != "" {
		os.Exit(run(context.Background(), env{args: strings.Split(args, "\n"), getenv: func(string) string { return "" },
			stdout: os.Stdout, stderr: os.Stderr, signals: make(chan os.Signal), exit: os.Exit}))
	}
	os.Exit(m.Run())
}

// newCluster starts librdkafka's in-process mock cluster of brokers brokers
// with topics, each with the number of partitions given; the mock cluster
// leads partition p on broker p%brokers+1.
func newCluster(t *testing.T, brokers int, topics map[string]int) *kafka.MockCluster {
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

// mockCluster is a broker with the topic and its dead-letter topic, one partition each.
func mockCluster(t *testing.T) *kafka.MockCluster {
	return newCluster(t, 1, map[string]int{source: 1, source + ".dlq": 1})
}

// goodEvent is event seq as our producer sends it.
func goodEvent(seq int) *kafka.Message {
	now := time.Now()
	m := rawMessage("", `{"timestamp":"`+now.Format(event.TimestampLayout)+`"}`,
		kafka.Header{Key: "ce_specversion", Value: []byte("1.0")},
		kafka.Header{Key: "ce_id", Value: []byte(strconv.Itoa(seq))},
		kafka.Header{Key: "ce_source", Value: []byte("/producer/test")},
		kafka.Header{Key: "ce_type", Value: []byte("io.github.event-driven-go.timestamp.v1")},
		kafka.Header{Key: "ce_time", Value: []byte(now.Format(time.RFC3339Nano))},
		kafka.Header{Key: "content-type", Value: []byte("application/json")})
	return m
}

// rawMessage is a message to the topic, of any content.
func rawMessage(key, value string, headers ...kafka.Header) *kafka.Message {
	tp := source
	m := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &tp, Partition: kafka.PartitionAny}, Value: []byte(value), Headers: headers}
	if key != "" {
		m.Key = []byte(key)
	}
	return m
}

// events are goodEvent from to to, on partition p of n (n 0: any).
func events(from, to int, n int32) []*kafka.Message {
	var msgs []*kafka.Message
	for i := from; i <= to; i++ {
		m := goodEvent(i)
		if n > 0 {
			m.TopicPartition.Partition = int32(i) % n
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// produce writes msgs with a plain producer (extra properties in props)
// and waits for every delivery.
func produce(t *testing.T, bootstrap string, props kafka.ConfigMap, msgs ...*kafka.Message) {
	t.Helper()
	cm := kafka.ConfigMap{"bootstrap.servers": bootstrap}
	for k, v := range props {
		cm[k] = v
	}
	p, err := kafka.NewProducer(&cm)
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

// keyOn is a message key that librdkafka's default partitioner puts on
// partition p of n.
func keyOn(p, n uint32) string {
	for i := 0; ; i++ {
		k := "key-" + strconv.Itoa(i)
		if crc32.ChecksumIEEE([]byte(k))%n == p {
			return k
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the consumer's goroutines and the test at once.
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

// records parses the JSON lines of log whose message starts with prefix.
func records(t *testing.T, log, prefix string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(log) {
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

// ids are the ids of the "Received:" lines of log, in their order.
func ids(t *testing.T, log string) []string {
	t.Helper()
	var s []string
	for _, rec := range records(t, log, "Received: ") {
		id, _ := rec["id"].(string)
		s = append(s, id)
	}
	return s
}

// seq is "from" to "to", as ids.
func seq(from, to int) []string {
	var s []string
	for i := from; i <= to; i++ {
		s = append(s, strconv.Itoa(i))
	}
	return s
}

// consumer is a run of the program in the background, logging JSON.
type consumer struct {
	t       *testing.T
	out     syncBuffer
	stderr  syncBuffer
	signals chan os.Signal
	stopped sync.Once
	code    chan int
	started time.Time
}

// start runs the consumer with args and --log-format json until it ends or
// the test does.
func start(t *testing.T, args ...string) *consumer {
	t.Helper()
	c := &consumer{t: t, signals: make(chan os.Signal, 2), code: make(chan int, 1), started: time.Now()}
	args = append([]string{"--log-format", "json"}, args...)
	go func() {
		c.code <- run(context.Background(), env{args: args, getenv: func(string) string { return "" },
			stdout: &c.out, stderr: &c.stderr, signals: c.signals,
			exit: func(code int) { t.Errorf("the shutdown was cut short with exit code %d", code) }})
	}()
	t.Cleanup(func() {
		c.stop() // unless it ended already
		if t.Failed() {
			t.Logf("the consumer's lines but events:\n%s", withoutEvents(c.out.String()))
		}
	})
	return c
}

// stop sends the consumer a stop signal, unless it had one, and returns its exit code.
func (c *consumer) stop() int {
	c.t.Helper()
	c.stopped.Do(func() { c.signals <- syscall.SIGTERM })
	return c.wait(30 * time.Second)
}

// wait returns the consumer's exit code once it ended, or fails the test after d.
func (c *consumer) wait(d time.Duration) int {
	c.t.Helper()
	select {
	case code := <-c.code:
		c.code <- code
		return code
	case <-time.After(d):
		c.t.Fatalf("the consumer did not end within %s:\n%s", d, withoutEvents(c.out.String()))
		return -1
	}
}

// summary is the consumer's last line, "Consumer stopped".
func (c *consumer) summary() map[string]any {
	c.t.Helper()
	recs := records(c.t, c.out.String(), "Consumer stopped")
	if len(recs) != 1 {
		c.t.Fatalf("%d summary lines, want 1:\n%s", len(recs), withoutEvents(c.out.String()))
	}
	return recs[0]
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

// child runs the consumer as a process of its own, for a test that kills
// it; lines gets its standard output, line by line, until it ends.
func child(t *testing.T, lines chan<- string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childArgs+"="+strings.Join(append([]string{"--log-format", "json"}, args...), "\n"))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	hung := time.AfterFunc(2*time.Minute, func() { _ = cmd.Process.Kill() }) // its output ends, whatever happens
	t.Cleanup(func() { hung.Stop(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	go func() {
		defer close(lines)
		s := bufio.NewScanner(stdout)
		s.Buffer(nil, 1<<20)
		for s.Scan() {
			lines <- s.Text()
		}
	}()
	return cmd
}

// waitFor waits until cond holds, or fails the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s in vain", timeout, what)
		}
	}
}

// committed is group's committed offset of partition p of tp, asked by a
// consumer of the group that never joins it; -1001 when none.
func committed(t *testing.T, bootstrap, group, tp string, p int32) int64 {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	offs, err := c.Committed([]kafka.TopicPartition{{Topic: &tp, Partition: p}}, 5000)
	if err != nil {
		t.Fatalf("committed offsets of %s: %v", group, err)
	}
	return int64(offs[0].Offset)
}

// readAll reads partition p of tp from the start: want messages, and any one more.
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
	if m, err := c.ReadMessage(500 * time.Millisecond); err == nil {
		out = append(out, m)
	}
	return out
}

// header is the value of m's header key; "" when absent.
func header(m *kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// freeAddr is a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// get asks the consumer's HTTP endpoint for path: the status code and the body.
func get(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
