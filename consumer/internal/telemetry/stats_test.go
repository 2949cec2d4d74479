package telemetry

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The client's statistics (recorded from librdkafka 2.15) are shown as
// gauges while they are fresh: none before the first, none once they
// stopped coming for three intervals, when the client may be stuck.
func TestClientStats_gaugesOfTheLatestStatistics(t *testing.T) {
	const (
		lag     = "# HELP consumer_lag_messages Events in a partition assigned to this consumer after its committed offset: what a restart would read again or for the first time.\n# TYPE consumer_lag_messages gauge\n"
		fetchq  = "# HELP consumer_kafka_fetch_queue_messages Events fetched by the Kafka client, not yet handed to the consumer.\n# TYPE consumer_kafka_fetch_queue_messages gauge\n"
		up      = "# HELP consumer_kafka_broker_up 1 while the Kafka client is connected to the broker, else 0.\n# TYPE consumer_kafka_broker_up gauge\n"
		rtt     = "# HELP consumer_kafka_request_rtt_avg_seconds Average time of the requests to the broker in the last statistics interval.\n# TYPE consumer_kafka_request_rtt_avg_seconds gauge\n"
		waiting = "# HELP consumer_kafka_requests_in_flight Requests sent to the broker and waiting for its answer.\n# TYPE consumer_kafka_requests_in_flight gauge\n"
	)
	tests := []struct {
		name  string
		file  string // recorded statistics; "" for none
		every time.Duration
		age   time.Duration
		want  string // the gauges below; "" for none
	}{
		{"member reading its partition", "stats-up.json", time.Second, 0,
			lag + `consumer_lag_messages{partition="0",topic="timestamp"} 0` + "\n" + fetchq + "consumer_kafka_fetch_queue_messages 0\n" +
				up + `consumer_kafka_broker_up{broker="1"} 1` + "\n" + rtt + `consumer_kafka_request_rtt_avg_seconds{broker="1"} 0.50497` + "\n" +
				waiting + `consumer_kafka_requests_in_flight{broker="1"} 1` + "\n"},
		{"member with a backlog", "stats-lag.json", time.Second, 0,
			lag + `consumer_lag_messages{partition="0",topic="timestamp"} 2297` + "\n" + fetchq + "consumer_kafka_fetch_queue_messages 1857\n" +
				up + `consumer_kafka_broker_up{broker="1"} 1` + "\n" + rtt + `consumer_kafka_request_rtt_avg_seconds{broker="1"} 0.503583` + "\n" +
				waiting + `consumer_kafka_requests_in_flight{broker="1"} 1` + "\n"},
		{"broker down", "stats-broker-down.json", time.Second, 0,
			lag + `consumer_lag_messages{partition="0",topic="timestamp"} 0` + "\n" + fetchq + "consumer_kafka_fetch_queue_messages 0\n" +
				up + `consumer_kafka_broker_up{broker="1"} 0` + "\n" + rtt + `consumer_kafka_request_rtt_avg_seconds{broker="1"} 0` + "\n" +
				waiting + `consumer_kafka_requests_in_flight{broker="1"} 0` + "\n"},
		{"statistics stopped coming", "stats-up.json", time.Second, 5 * time.Second, ""},
		{"none yet", "", time.Second, 0, ""},
		{"none asked for", "stats-up.json", 0, time.Millisecond, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClientStats(tt.every)
			if tt.file != "" {
				js, err := os.ReadFile("testdata/" + tt.file)
				if err != nil {
					t.Fatal(err)
				}
				if err := c.Update(string(js), time.Now().Add(-tt.age)); err != nil {
					t.Fatal(err)
				}
			}
			if err := testutil.CollectAndCompare(c, strings.NewReader(tt.want), "consumer_lag_messages", "consumer_kafka_fetch_queue_messages",
				"consumer_kafka_broker_up", "consumer_kafka_request_rtt_avg_seconds", "consumer_kafka_requests_in_flight"); err != nil {
				t.Error(err)
			}
			if n := testutil.CollectAndCount(c); tt.want == "" && n != 0 {
				t.Errorf("%d gauges, want none", n)
			}
		})
	}
}

func TestClientStats_updateRefusesWhatIsNoStatistics(t *testing.T) {
	c := NewClientStats(time.Second)
	if err := c.Update("{not json", time.Now()); err == nil || !strings.HasPrefix(err.Error(), "librdkafka statistics: ") {
		t.Errorf("Update = %v, want an error", err)
	}
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Errorf("%d gauges from no statistics, want none", n)
	}
}
