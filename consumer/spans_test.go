package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/event-driven-go/kafka-go/consumer/internal/config"
	"github.com/event-driven-go/kafka-go/consumer/internal/deadletter"
	"github.com/event-driven-go/kafka-go/consumer/internal/leaderstall"
	"github.com/event-driven-go/kafka-go/consumer/internal/logging"
	"github.com/event-driven-go/kafka-go/consumer/internal/offsets"
	"github.com/event-driven-go/kafka-go/consumer/internal/telemetry"
)

// traced is goodEvent seq with the trace context of a producer's span: trace and span id seq.
func traced(seq int) *kafka.Message {
	m := goodEvent(seq)
	m.Headers = append(m.Headers, kafka.Header{Key: "traceparent", Value: fmt.Appendf(nil, "00-%032x-%016x-01", seq, seq)})
	return m
}

// Each message handled, dead-lettered too, has a process span, a child of
// the producer's publish span; the dead-lettered one says it failed. The
// counts and the rebalances are in the metrics.
func TestReceiver_processSpansAreChildrenOfTheProducersAndCounted(t *testing.T) {
	mc := mockCluster(t)
	const n = 5
	var msgs []*kafka.Message
	for i := 1; i <= n; i++ {
		msgs = append(msgs, traced(i))
	}
	bad := rawMessage("", "not json", kafka.Header{Key: "traceparent", Value: []byte("00-000000000000000000000000000000ff-00000000000000ff-01")})
	produce(t, mc.BootstrapServers(), nil, append(msgs, bad)...)

	var out syncBuffer
	log := logging.New(&out, "json", slog.LevelInfo)
	cfg := config.Config{Topic: source, DLQTopic: source + ".dlq", Group: "test-group", LogEvents: true}
	cm := kafka.ConfigMap{"bootstrap.servers": mc.BootstrapServers(), "group.id": cfg.Group, "auto.offset.reset": "earliest",
		"enable.auto.offset.store": false, "statistics.interval.ms": 5000}
	c, err := leaderstall.NewConsumer(cm, source, log)
	if err != nil {
		t.Fatal(err)
	}
	dlq, err := deadletter.New(cm, cfg.DLQTopic, log)
	if err != nil {
		t.Fatal(err)
	}
	spans := tracetest.NewSpanRecorder()
	counts := telemetry.NewCounts(cm)
	r := &receiver{cfg: cfg, c: c, dlq: dlq, n: counts, offsets: offsets.New(log), log: log,
		tracer: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)).Tracer("test")}
	reg := prometheus.NewRegistry()
	reg.MustRegister(counts.Metrics(c.Recovered)...)
	if err := c.Subscribe(r.rebalanced); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil && (counts.Handled.Load() < n || counts.DeadLettered.Load() < 1) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	if err := r.consume(ctx); err != nil {
		t.Fatalf("consume: %v", err)
	}
	if err := c.Close(closeBudget, r.offsets.Commit); err != nil {
		t.Fatalf("Close: %v", err)
	}
	dlq.Close()

	ended := spans.Ended()
	if len(ended) != n+1 {
		t.Fatalf("%d spans ended, want one per message, %d", len(ended), n+1)
	}
	for i, sp := range ended { // in the order of the messages
		parent, want := sp.Parent(), uint64(i+1)
		if i == n {
			want = 0xff
		}
		if parent.TraceID().String() != fmt.Sprintf("%032x", want) || parent.SpanID().String() != fmt.Sprintf("%016x", want) || !parent.IsRemote() {
			t.Errorf("span %d: parent %s/%s, want the traceparent of message %d", i, parent.TraceID(), parent.SpanID(), i)
		}
		if sp.SpanContext().TraceID() != parent.TraceID() || sp.Name() != "process timestamp" || sp.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("span %d: %q of kind %s in trace %s, want \"process timestamp\", a consumer span in its parent's trace",
				i, sp.Name(), sp.SpanKind(), sp.SpanContext().TraceID())
		}
	}
	if st := ended[n].Status(); st.Code != codes.Error || !strings.Contains(st.Description, "invalid event") {
		t.Errorf("the dead-lettered message's span has status %v, want Error with the reason", st)
	}
	for i, rec := range records(t, out.String(), "Received: ") {
		if rec["trace_id"] != fmt.Sprintf("%032x", i+1) {
			t.Errorf("line %v: want the trace id of its producer's span", rec)
		}
	}
	want := `# HELP consumer_events_dead_lettered_total Messages that could not be decoded, copied to the dead-letter topic.
# TYPE consumer_events_dead_lettered_total counter
consumer_events_dead_lettered_total 1
# HELP consumer_events_received_total Events decoded and handled (duplicates included).
# TYPE consumer_events_received_total counter
consumer_events_received_total 5
# HELP consumer_rebalances_total Changes of this consumer's assignment, by change: assigned, revoked or lost.
# TYPE consumer_rebalances_total counter
consumer_rebalances_total{change="assigned"} 1
consumer_rebalances_total{change="revoked"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "consumer_events_received_total",
		"consumer_events_dead_lettered_total", "consumer_rebalances_total"); err != nil {
		t.Error(err)
	}
	if got := testutil.CollectAndCount(counts.Latency); got != 1 {
		t.Errorf("latency histogram: %d series, want 1", got)
	}
}
