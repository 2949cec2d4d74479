package sender

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

func TestSender_tracesEveryEventAndCountsItsDelivery(t *testing.T) {
	mc := mockCluster(t, 1)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	const n = 20
	var out syncBuffer
	s := newSender(t, mc, Options{Interval: time.Millisecond, Count: n, Tracer: tp.Tracer("test")}, &out, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Metrics()...)
	if _, err := s.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Each message's traceparent names the publish span of its event, which its delivery report ended.
	byID := map[string]sdktrace.ReadOnlySpan{}
	for _, sp := range spans.Ended() {
		for _, a := range sp.Attributes() {
			if a.Key == "messaging.message.id" {
				byID[a.Value.AsString()] = sp
			}
		}
	}
	for _, m := range readTopic(t, mc.BootstrapServers(), "timestamp", n, 10*time.Second) {
		sp, ok := byID[header(m, "ce_id")]
		if !ok {
			t.Fatalf("no ended span for event %s", header(m, "ce_id"))
		}
		sc := sp.SpanContext()
		if want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"; header(m, "traceparent") != want {
			t.Errorf("event %s: traceparent %q, want %q", header(m, "ce_id"), header(m, "traceparent"), want)
		}
		if sp.Name() != "publish timestamp" || sp.SpanKind() != trace.SpanKindProducer {
			t.Errorf("span %q of kind %s, want \"publish timestamp\" of kind producer", sp.Name(), sp.SpanKind())
		}
		if !hasAttr(sp, "messaging.kafka.offset") {
			t.Errorf("span of event %s has no offset: %v", header(m, "ce_id"), sp.Attributes())
		}
	}

	want := strings.NewReader(`# HELP producer_events_delivered_total Events acknowledged by all in-sync replicas.
# TYPE producer_events_delivered_total counter
producer_events_delivered_total 20
# HELP producer_events_sent_total Events the Kafka client accepted.
# TYPE producer_events_sent_total counter
producer_events_sent_total 20
`)
	if err := testutil.GatherAndCompare(reg, want, "producer_events_sent_total", "producer_events_delivered_total"); err != nil {
		t.Error(err)
	}
	if got := histogramCount(t, reg, "producer_delivery_seconds"); got != n {
		t.Errorf("producer_delivery_seconds counted %d, want %d", got, n)
	}
}

func hasAttr(sp sdktrace.ReadOnlySpan, key string) bool {
	for _, a := range sp.Attributes() {
		if string(a.Key) == key {
			return true
		}
	}
	return false
}

func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestClientStats_readiness(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name  string
		file  string // recorded statistics; "" for none
		every time.Duration
		age   time.Duration
		want  string // in the error; "" for ready
	}{
		{"connected to the leader", "stats-up.json", time.Second, 0, ""},
		{"leader down", "stats-broker-down.json", time.Second, 0, "partition 0: leader 1 is TRY_CONNECT"},
		{"statistics stopped coming", "stats-up.json", time.Second, 4 * time.Second, "no statistics from the Kafka client for 4s"},
		{"none yet", "", time.Second, 0, "no statistics from the Kafka client yet"},
		{"none asked for", "", 0, 0, "set -X statistics.interval.ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClientStats(tt.every)
			if tt.file != "" {
				js, err := os.ReadFile("testdata/" + tt.file)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.update(string(js), now.Add(-tt.age)); err != nil {
					t.Fatal(err)
				}
			}
			err := c.ready("timestamp", now)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("ready: %v, want %q", err, tt.want)
			}
		})
	}
}

func TestClientStats_metrics(t *testing.T) {
	c := newClientStats(time.Second)
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Errorf("%d series before any statistics, want none", n)
	}
	for file, want := range map[string]string{
		"stats-up.json": `# HELP producer_kafka_broker_up 1 while the Kafka client is connected to the broker, else 0.
# TYPE producer_kafka_broker_up gauge
producer_kafka_broker_up{broker="1"} 1
# HELP producer_kafka_queue_messages Events in the Kafka client's queues, not yet acknowledged by a broker.
# TYPE producer_kafka_queue_messages gauge
producer_kafka_queue_messages 0
`,
		"stats-broker-down.json": `# HELP producer_kafka_broker_up 1 while the Kafka client is connected to the broker, else 0.
# TYPE producer_kafka_broker_up gauge
producer_kafka_broker_up{broker="1"} 0
# HELP producer_kafka_queue_messages Events in the Kafka client's queues, not yet acknowledged by a broker.
# TYPE producer_kafka_queue_messages gauge
producer_kafka_queue_messages 30
`,
	} {
		js, err := os.ReadFile("testdata/" + file)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.update(string(js), time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := testutil.CollectAndCompare(c, strings.NewReader(want), "producer_kafka_broker_up", "producer_kafka_queue_messages"); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
	if err := c.update("{not json", time.Now()); err == nil {
		t.Error("update took statistics that are not JSON")
	}
}

func TestSender_withoutATracerSendsNoTraceContext(t *testing.T) {
	mc := mockCluster(t, 1)
	var out syncBuffer
	s := newSender(t, mc, Options{Interval: time.Millisecond, Count: 3, Tracer: noop.Tracer{}}, &out, nil) // as with OTEL_SDK_DISABLED=true
	if _, err := s.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, m := range readTopic(t, mc.BootstrapServers(), "timestamp", 3, 10*time.Second) {
		if len(m.Headers) != 6 || header(m, "traceparent") != "" {
			t.Errorf("event %s has headers %v, want the six CloudEvents ones only", header(m, "ce_id"), m.Headers)
		}
	}
}
