package receiver

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/event-driven-go/kafka-go/consumer/internal/config"
)

func TestReceiver_processSpansAreChildrenOfTheProducersAndCounted(t *testing.T) {
	mc := mockCluster(t)
	const n = 5
	var msgs []*kafka.Message
	for i := 1; i <= n; i++ {
		m := goodEvent(i)
		m.Headers = append(m.Headers, kafka.Header{Key: "traceparent", Value: fmt.Appendf(nil, "00-%032x-%016x-01", i, i)})
		msgs = append(msgs, m)
	}
	bad := rawMessage("", "not json", kafka.Header{Key: "traceparent", Value: []byte("00-000000000000000000000000000000ff-00000000000000ff-01")})
	produce(t, mc.BootstrapServers(), append(msgs, bad)...)

	spans := tracetest.NewSpanRecorder()
	var out syncBuffer
	r := newReceiver(t, mc, &out, config.Config{}, nil)
	r.tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)).Tracer("test")
	reg := prometheus.NewRegistry()
	reg.MustRegister(r.Metrics()...)
	runUntil(t, r, 20*time.Second, func() bool { return r.deadLettered.Load() == 1 && r.received.Load() == n })

	ended := spans.Ended()
	if len(ended) != n+1 {
		t.Fatalf("%d spans ended, want one per message, %d", len(ended), n+1)
	}
	for i, sp := range ended { // in the order of the messages
		parent := sp.Parent()
		want := uint64(i + 1)
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
	if ended[n].Status().Code.String() != "Error" {
		t.Errorf("the dead-lettered message's span has status %v, want Error", ended[n].Status())
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
	if got := testutil.CollectAndCount(r.latency); got != 1 {
		t.Errorf("latency histogram: %d series", got)
	}
}

func TestClientStats_readinessAndLag(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name  string
		file  string // recorded statistics; "" for none
		every time.Duration
		age   time.Duration
		ready string // in the error; "" for ready
		lag   string // the consumer_lag_messages lines
	}{
		{"member reading its partition", "stats-up.json", time.Second, 0, "", `consumer_lag_messages{partition="0",topic="timestamp"} 0`},
		{"member with a backlog", "stats-lag.json", time.Second, 0, "", `consumer_lag_messages{partition="0",topic="timestamp"} 2297`},
		{"broker down", "stats-broker-down.json", time.Second, 0, "group state query-coord", `consumer_lag_messages{partition="0",topic="timestamp"} 0`},
		{"statistics stopped coming", "stats-up.json", time.Second, 5 * time.Second, "no statistics from the Kafka client for 5s", ""},
		{"none yet", "", time.Second, 0, "no statistics from the Kafka client yet", ""},
		{"none asked for", "", 0, 0, "set -X statistics.interval.ms", ""},
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
			err := c.ready(topic, now)
			if tt.ready == "" && err != nil || tt.ready != "" && (err == nil || !strings.Contains(err.Error(), tt.ready)) {
				t.Errorf("ready: %v, want %q", err, tt.ready)
			}
			want := ""
			if tt.lag != "" {
				want = "# HELP consumer_lag_messages Events in a partition assigned to this consumer after its committed offset: " +
					"what a restart would read again or for the first time.\n# TYPE consumer_lag_messages gauge\n" + tt.lag + "\n"
			}
			if err := testutil.CollectAndCompare(c, strings.NewReader(want), "consumer_lag_messages"); err != nil {
				t.Error(err)
			}
		})
	}
}
