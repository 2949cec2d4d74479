package sender

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/producer/internal/event"
)

// mockCluster starts librdkafka's in-process mock cluster.
func mockCluster(t *testing.T, brokers int) *kafka.MockCluster {
	t.Helper()
	mc, err := kafka.NewMockCluster(brokers)
	if err != nil {
		t.Fatalf("mock cluster: %v", err)
	}
	t.Cleanup(mc.Close)
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

func newSender(t *testing.T, mc *kafka.MockCluster, opts Options, out *syncBuffer, props kafka.ConfigMap) *Sender {
	t.Helper()
	opts.Kafka = kafka.ConfigMap{"bootstrap.servers": mc.BootstrapServers()}
	for k, v := range props {
		opts.Kafka[k] = v
	}
	if opts.Topic == "" {
		opts.Topic = "timestamp"
	}
	if err := mc.CreateTopic(opts.Topic, 1, 1); err != nil {
		t.Fatalf("create topic: %v", err)
	}
	if opts.Source == "" {
		opts.Source = "/producer/test"
	}
	if !opts.quiet() {
		opts.LogEvents = true
	}
	s, err := New(opts, testLogger(out))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.CheckTopic(ctx); err != nil {
		t.Fatalf("CheckTopic: %v", err)
	}
	return s
}

// readTopic reads partition 0 of topic from the beginning until want
// messages arrived or the timeout passed.
func readTopic(t *testing.T, bootstrap, topic string, want int, timeout time.Duration) []*kafka.Message {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":  bootstrap,
		"group.id":           "reader",
		"enable.auto.commit": false,
	})
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	defer c.Close()
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatalf("assign: %v", err)
	}
	var msgs []*kafka.Message
	deadline := time.Now().Add(timeout)
	for len(msgs) < want && time.Now().Before(deadline) {
		m, err := c.ReadMessage(100 * time.Millisecond)
		if err == nil {
			msgs = append(msgs, m)
		}
	}
	// Read a little longer: more than want would mean duplicates.
	if m, err := c.ReadMessage(300 * time.Millisecond); err == nil {
		msgs = append(msgs, m)
	}
	return msgs
}

// testLogger writes slog's text lines without the time.
func testLogger(out *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
}

func header(m *kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// checkLog asserts that the topic holds events 1..n once each, in order.
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

func TestSender_sendsEveryEventOnceInOrder(t *testing.T) {
	mc := mockCluster(t, 1)
	var out syncBuffer
	const n = 50
	s := newSender(t, mc, Options{Interval: time.Millisecond, Count: n}, &out, nil)

	res, err := s.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Elapsed <= 0 {
		t.Errorf("elapsed %s, want the time from the first event to the last report", res.Elapsed)
	}
	res.Elapsed = 0
	if res != (Result{Attempted: n, Delivered: n}) {
		t.Fatalf("result %+v, want %d attempted and delivered", res, n)
	}
	msgs := readTopic(t, mc.BootstrapServers(), "timestamp", n, 10*time.Second)
	checkLog(t, msgs, n)

	value := regexp.MustCompile(`^\{"timestamp":"\d\d:\d\d:\d\d"\}$`)
	for _, m := range msgs {
		if !value.Match(m.Value) {
			t.Fatalf("value %q is not the tutorial's JSON object", m.Value)
		}
		if got := header(m, "ce_time"); !strings.Contains(string(m.Value), mustParse(t, got).Format(event.Layout)) {
			t.Fatalf("value %s does not carry the time of ce_time %s", m.Value, got)
		}
	}
	line := regexp.MustCompile(`^level=INFO msg="Sending: \d\d:\d\d:\d\d" id=\d+$`)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var sending int
	for _, l := range lines {
		if strings.Contains(l, "Sending: ") {
			sending++
			if !line.MatchString(l) {
				t.Errorf("output line %q does not read like the tutorial's", l)
			}
		}
	}
	if sending != n {
		t.Errorf("printed %d Sending lines, want %d:\n%s", sending, n, out.String())
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

// quiet is set by tests of runs without a line per event; newSender turns
// LogEvents on for every other test.
func (o Options) quiet() bool { return o.Source == quietSource }

const quietSource = "/producer/quiet"

func TestSender_keepsToTheScheduleAndStampsScheduledTimes(t *testing.T) {
	mc := mockCluster(t, 1)
	var out syncBuffer
	const n, interval = 300, 500 * time.Microsecond
	s := newSender(t, mc, Options{Interval: interval, Count: n, Source: quietSource}, &out, nil)
	start := time.Now()
	res, err := s.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	took := time.Since(start)
	if res.Delivered != n {
		t.Fatalf("result %+v, want %d delivered", res, n)
	}
	// A ticker drops ticks it cannot deliver in time; the schedule sends
	// late events instead, so n events take about n intervals.
	if want := (n - 1) * interval; took < want || took > want+2*time.Second {
		t.Errorf("%d events at %s took %s, want about %s", n, interval, took, want)
	}
	msgs := readTopic(t, mc.BootstrapServers(), "timestamp", n, 10*time.Second)
	checkLog(t, msgs, n)
	first := mustParse(t, header(msgs[0], "ce_time"))
	for i, m := range msgs {
		if got, want := mustParse(t, header(m, "ce_time")).Sub(first), time.Duration(i)*interval; got != want {
			t.Fatalf("event %d is stamped %s after the first, want its scheduled %s", i+1, got, want)
		}
	}
	if strings.Contains(out.String(), "Sending: ") {
		t.Errorf("LogEvents is off, but events were logged:\n%s", out.String())
	}
}

func TestSender_padsValuesAndReportsTheRate(t *testing.T) {
	mc := mockCluster(t, 1)
	var out syncBuffer
	const n, size = 500, 1024
	s := newSender(t, mc, Options{Count: n, ValueSize: size, Source: quietSource}, &out, nil)
	res, err := s.Run(context.Background())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Delivered != n || res.Elapsed <= 0 || res.Rate() <= 0 {
		t.Fatalf("result %+v, rate %.1f: want all delivered, a positive elapsed time and rate", res, res.Rate())
	}
	msgs := readTopic(t, mc.BootstrapServers(), "timestamp", n, 10*time.Second)
	checkLog(t, msgs, n)
	padded := regexp.MustCompile(`^\{"timestamp":"\d\d:\d\d:\d\d" *\}$`)
	for _, m := range msgs {
		if len(m.Value) != size || !padded.Match(m.Value) {
			t.Fatalf("value of %d bytes %.40q..., want the event padded to %d", len(m.Value), m.Value, size)
		}
	}
}

func TestResult_rate(t *testing.T) {
	tests := []struct {
		res  Result
		want float64
	}{
		{Result{}, 0},
		{Result{Delivered: 10}, 0},
		{Result{Delivered: 500, Elapsed: 2 * time.Second}, 250},
		{Result{Attempted: 3, Delivered: 1, Failed: 2, Elapsed: time.Second / 4}, 4},
	}
	for _, tt := range tests {
		if got := tt.res.Rate(); got != tt.want {
			t.Errorf("%+v.Rate() = %v, want %v", tt.res, got, tt.want)
		}
	}
}

func TestSender_brokerDownAndUpLosesNothing(t *testing.T) {
	mc := mockCluster(t, 1)
	var out syncBuffer
	const n = 400
	s := newSender(t, mc, Options{Interval: 2 * time.Millisecond, Count: n}, &out, nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for range 3 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(150 * time.Millisecond):
			}
			_ = mc.SetBrokerDown(1)
			time.Sleep(150 * time.Millisecond)
			_ = mc.SetBrokerUp(1)
		}
	}()
	res, err := s.Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	if res.Delivered != n || res.Failed != 0 {
		t.Fatalf("result %+v, want all %d delivered", res, n)
	}
	checkLog(t, readTopic(t, mc.BootstrapServers(), "timestamp", n, 20*time.Second), n)
}

func TestSender_deliveryTimeoutIsReportedForEveryEvent(t *testing.T) {
	// The broker answers too late: the events time out while in flight,
	// so they may have been written. They count as unknown, each with its
	// line, never as delivered and never as surely lost.
	mc := mockCluster(t, 1)
	var out syncBuffer
	s := newSender(t, mc, Options{Interval: 10 * time.Millisecond, Count: 5}, &out,
		kafka.ConfigMap{"message.timeout.ms": 300})
	if err := mc.SetRoundtripDuration(1, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	res, err := s.Run(context.Background())
	if err == nil {
		t.Fatal("Run succeeded; want an error for undelivered events")
	}
	if res.Attempted != 5 || res.Delivered+res.Failed+res.Unknown != res.Attempted || res.Unknown == 0 {
		t.Fatalf("result %+v: want attempted=5 = delivered + failed + unknown, some unknown", res)
	}
	if got := strings.Count(out.String(), `level=ERROR msg="Unconfirmed: `); int64(got) != res.Unknown {
		t.Errorf("%d unconfirmed lines for %d unknown events:\n%s", got, res.Unknown, out.String())
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("%d of 5 events not delivered", res.Failed+res.Unknown)) {
		t.Errorf("error %q does not say how many were not delivered", err)
	}
}

func TestSender_fatalErrorStopsWithError(t *testing.T) {
	mc := mockCluster(t, 1)
	var out syncBuffer
	s := newSender(t, mc, Options{Interval: 10 * time.Millisecond}, &out, nil)
	go func() {
		time.Sleep(100 * time.Millisecond)
		s.c.p.TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "injected by test")
	}()
	done := make(chan error, 1)
	go func() {
		_, err := s.Run(context.Background())
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "fatal producer error") {
			t.Fatalf("Run returned %v, want a fatal producer error", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not stop after a fatal error")
	}
}

func TestSender_stopFlushesAcceptedEvents(t *testing.T) {
	mc := mockCluster(t, 1)
	var out syncBuffer
	s := newSender(t, mc, Options{Interval: time.Millisecond}, &out, kafka.ConfigMap{"linger.ms": 200})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res, err := s.Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Attempted == 0 || res.Delivered != res.Attempted {
		t.Fatalf("result %+v: every accepted event must be delivered on stop", res)
	}
	checkLog(t, readTopic(t, mc.BootstrapServers(), "timestamp", int(res.Attempted), 10*time.Second), int(res.Attempted))
}

func TestSender_countRunWaitsOutAnOutageAtTheEnd(t *testing.T) {
	mc := mockCluster(t, 1)
	var out syncBuffer
	const n = 100
	// Reconnecting within half a second of the broker's return keeps the test short.
	s := newSender(t, mc, Options{Interval: 10 * time.Millisecond, Count: n}, &out, kafka.ConfigMap{"reconnect.backoff.max.ms": 500})
	// The broker is away for longer than FlushTimeout, from before the
	// last event is sent until well after.
	outage := make(chan struct{})
	go func() {
		defer close(outage)
		waitDelivered(s)
		_ = mc.SetBrokerDown(1)
		time.Sleep(6 * time.Second)
		_ = mc.SetBrokerUp(1)
	}()
	res, err := s.Run(context.Background())
	<-outage
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	res.Elapsed = 0
	if res != (Result{Attempted: n, Delivered: n}) {
		t.Fatalf("result %+v, want all %d delivered", res, n)
	}
	checkLog(t, readTopic(t, mc.BootstrapServers(), "timestamp", n, 10*time.Second), n)
}

func TestSender_stopDuringAnOutageAccountsForEveryEvent(t *testing.T) {
	tests := []struct {
		name  string
		fault func(*kafka.MockCluster) error
		want  func(Result) int64 // the count the purge must fill
	}{
		{"broker down: queued events failed", func(mc *kafka.MockCluster) error { return mc.SetBrokerDown(1) },
			func(r Result) int64 { return r.Failed }},
		{"broker hangs: events in flight unknown", func(mc *kafka.MockCluster) error { return mc.SetRoundtripDuration(1, 10*time.Second) },
			func(r Result) int64 { return r.Unknown }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mc := mockCluster(t, 1)
			var out syncBuffer
			s := newSender(t, mc, Options{Interval: 10 * time.Millisecond}, &out, nil)
			ctx, cancel := context.WithCancel(context.Background())
			done := runInBackground(ctx, s)
			waitDelivered(s)
			if err := tt.fault(mc); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
			cancel()
			var r ran
			select {
			case r = <-done:
			case <-time.After(3500 * time.Millisecond):
				t.Fatal("Run did not return within 3.5s of the stop")
			}
			res, err := r.res, r.err
			if err == nil || !strings.Contains(err.Error(), "events not delivered: ") {
				t.Fatalf("Run error %v, want events not delivered", err)
			}
			if res.Failed+res.Unknown != res.Attempted-res.Delivered || tt.want(res) == 0 {
				t.Fatalf("result %+v: failed + unknown must be attempted - delivered, and the purge must fill %s\n%s", res, tt.name, out.String())
			}
			if live := s.Counts(); live.Failed != res.Failed || live.Unknown != res.Unknown {
				t.Errorf("reports counted %+v, result %+v: some event had no report", live, res)
			}
		})
	}
}

// waitDelivered returns once s has a delivery report, or after 10s: the
// client connects and gets its producer id before the first is written.
func waitDelivered(s *Sender) {
	for deadline := time.Now().Add(10 * time.Second); s.Counts().Delivered == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

type ran struct {
	res Result
	err error
}

// runInBackground runs s and hands over what Run returned.
func runInBackground(ctx context.Context, s *Sender) <-chan ran {
	done := make(chan ran, 1)
	go func() {
		res, err := s.Run(ctx)
		done <- ran{res, err}
	}()
	return done
}

func TestSender_keyedEventsShareAPartitionOthersSpread(t *testing.T) {
	const partitions, n = 4, 200
	for _, tc := range []struct {
		name       string
		bySource   bool
		perPart    func(counts map[int32]int) bool
		wantSpread string
	}{
		{"keyed by source", true, func(c map[int32]int) bool { return len(c) == 1 }, "all in one partition"},
		{"spread", false, func(c map[int32]int) bool { return len(c) > 1 }, "several partitions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mc := mockCluster(t, 3)
			if err := mc.CreateTopic("timestamp", partitions, 1); err != nil {
				t.Fatal(err)
			}
			opts := Options{Topic: "timestamp", Source: quietSource, Interval: time.Millisecond, Count: n, KeyBySource: tc.bySource,
				Kafka: kafka.ConfigMap{"bootstrap.servers": mc.BootstrapServers()}}
			var out syncBuffer
			s, err := New(opts, testLogger(&out))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := s.CheckTopic(ctx); err != nil {
				t.Fatal(err)
			}
			if res, err := s.Run(context.Background()); err != nil || res.Delivered != n {
				t.Fatalf("Run: %+v, %v\n%s", res, err, out.String())
			}
			counts := map[int32]int{}
			for p := range int32(partitions) {
				last := 0
				for _, m := range readPartition(t, mc.BootstrapServers(), "timestamp", p) {
					counts[p]++
					if key := string(m.Key); tc.bySource && key != quietSource || !tc.bySource && m.Key != nil {
						t.Fatalf("partition %d holds an event keyed %q", p, key)
					}
					id, _ := strconv.Atoi(header(m, "ce_id"))
					if id <= last {
						t.Fatalf("partition %d: id %d after id %d", p, id, last)
					}
					last = id
				}
			}
			if !tc.perPart(counts) {
				t.Errorf("events per partition %v; want %s", counts, tc.wantSpread)
			}
		})
	}
}

// readPartition reads one partition of topic to its end.
func readPartition(t *testing.T, bootstrap, topic string, p int32) []*kafka.Message {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": false,
		"enable.partition.eof": true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: p, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	var msgs []*kafka.Message
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		switch e := c.Poll(100).(type) {
		case *kafka.Message:
			msgs = append(msgs, e)
		case kafka.PartitionEOF:
			return msgs
		}
	}
	t.Fatalf("partition %d: no end within 10s", p)
	return nil
}
