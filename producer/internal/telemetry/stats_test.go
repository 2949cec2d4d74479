package telemetry

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// recorded reads a statistics event recorded from librdkafka 2.15 (a
// producer to "timestamp", on a cluster of one broker).
func recorded(t *testing.T, file string) string {
	t.Helper()
	js, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	return string(js)
}

func TestClientStats_metrics(t *testing.T) {
	tests := []struct {
		file string
		want string
	}{
		{"stats-up.json", `# HELP producer_kafka_broker_up 1 while the Kafka client is connected to the broker, else 0.
# TYPE producer_kafka_broker_up gauge
producer_kafka_broker_up{broker="1"} 1
# HELP producer_kafka_queue_messages Events in the Kafka client's queues, not yet acknowledged by a broker.
# TYPE producer_kafka_queue_messages gauge
producer_kafka_queue_messages 0
# HELP producer_kafka_request_rtt_avg_seconds Average time of the requests to the broker in the last statistics interval.
# TYPE producer_kafka_request_rtt_avg_seconds gauge
producer_kafka_request_rtt_avg_seconds{broker="1"} 0.003568
# HELP producer_kafka_request_rtt_p99_seconds 99th percentile of the request times to the broker in the last statistics interval.
# TYPE producer_kafka_request_rtt_p99_seconds gauge
producer_kafka_request_rtt_p99_seconds{broker="1"} 0.005919
# HELP producer_kafka_requests_in_flight Requests sent to the broker and waiting for its answer.
# TYPE producer_kafka_requests_in_flight gauge
producer_kafka_requests_in_flight{broker="1"} 0
# HELP producer_kafka_requests_queued Requests waiting to be sent to the broker.
# TYPE producer_kafka_requests_queued gauge
producer_kafka_requests_queued{broker="1"} 0
`},
		// The bootstrap entry (nodeid -1) is no broker of its own.
		{"stats-broker-down.json", `# HELP producer_kafka_broker_up 1 while the Kafka client is connected to the broker, else 0.
# TYPE producer_kafka_broker_up gauge
producer_kafka_broker_up{broker="1"} 0
# HELP producer_kafka_queue_messages Events in the Kafka client's queues, not yet acknowledged by a broker.
# TYPE producer_kafka_queue_messages gauge
producer_kafka_queue_messages 30
# HELP producer_kafka_request_rtt_avg_seconds Average time of the requests to the broker in the last statistics interval.
# TYPE producer_kafka_request_rtt_avg_seconds gauge
producer_kafka_request_rtt_avg_seconds{broker="1"} 0
# HELP producer_kafka_request_rtt_p99_seconds 99th percentile of the request times to the broker in the last statistics interval.
# TYPE producer_kafka_request_rtt_p99_seconds gauge
producer_kafka_request_rtt_p99_seconds{broker="1"} 0
# HELP producer_kafka_requests_in_flight Requests sent to the broker and waiting for its answer.
# TYPE producer_kafka_requests_in_flight gauge
producer_kafka_requests_in_flight{broker="1"} 0
# HELP producer_kafka_requests_queued Requests waiting to be sent to the broker.
# TYPE producer_kafka_requests_queued gauge
producer_kafka_requests_queued{broker="1"} 0
`},
	}
	c := NewClientStats(time.Second)
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Errorf("%d series before any statistics, want none", n)
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			if err := c.Update(recorded(t, tt.file), time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := testutil.CollectAndCompare(c, strings.NewReader(tt.want)); err != nil {
				t.Error(err)
			}
		})
	}
	if err := c.Update("{not json", time.Now()); err == nil {
		t.Error("Update took statistics that are not JSON")
	}
}

// Figures of statistics that stopped coming would hide a stuck client:
// after three intervals there are none, nor ever when none are asked for.
func TestClientStats_noMetricsFromStaleOrUnaskedStatistics(t *testing.T) {
	tests := []struct {
		name  string
		every time.Duration
		age   time.Duration
		want  int // series
	}{
		{"fresh", time.Second, 0, 6},
		{"within three intervals", time.Second, 2 * time.Second, 6},
		{"stale", time.Second, 4 * time.Second, 0},
		{"none asked for", 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClientStats(tt.every)
			if err := c.Update(recorded(t, "stats-up.json"), time.Now().Add(-tt.age)); err != nil {
				t.Fatal(err)
			}
			if n := testutil.CollectAndCount(c); n != tt.want {
				t.Errorf("%d series, want %d", n, tt.want)
			}
		})
	}
}
