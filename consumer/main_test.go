package main

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/consumer/latency"
	"github.com/event-driven-go/kafka-go/consumer/logging"
	"github.com/event-driven-go/kafka-go/consumer/receiver"
)

func TestRun_exitCodes(t *testing.T) {
	mc, err := kafka.NewMockCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	for _, tp := range []string{"timestamp", "timestamp.dlq"} {
		if err := mc.CreateTopic(tp, 1, 1); err != nil {
			t.Fatal(err)
		}
	}
	broker := mc.BootstrapServers()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": broker})
	if err != nil {
		t.Fatal(err)
	}
	topic := "timestamp"
	reports := make(chan kafka.Event, 2)
	for _, v := range []string{`{"timestamp":"10:00:00"}`, `"10:00:05"`} {
		if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}, Value: []byte(v)}, reports); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if m := (<-reports).(*kafka.Message); m.TopicPartition.Error != nil {
			t.Fatal(m.TopicPartition.Error)
		}
	}
	p.Close()

	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		code   int
		stdout []string
		absent []string // text that must not be on stdout
		stderr string
	}{
		{name: "help", args: []string{"--help"}, code: 0, stdout: []string{"Usage: consumer"}},
		{name: "bad flag value", args: []string{"--log-format", "xml"}, code: 2,
			stderr: `consumer: invalid --log-format "xml": want one of text, json`},
		{name: "bad environment value", env: map[string]string{"KAFKA_GROUP_ID": " "}, code: 2,
			stderr: `consumer: invalid KAFKA_GROUP_ID " "`},
		{name: "receives and stops after count", args: []string{"--bootstrap-servers", broker, "--count", "2"}, code: 0,
			stdout: []string{"Received: 10:00:00 partition=0 offset=0\n", "Received: 10:00:05 partition=0 offset=1\n",
				"Consumer stopped received=2 duplicates=0 dead_lettered=0"}},
		{name: "summary only", args: []string{"--bootstrap-servers", broker, "--count", "2", "--group", "quiet", "--log-events=false"}, code: 0,
			stdout: []string{"Consumer stopped received=2 duplicates=0 dead_lettered=0 elapsed="},
			// Events without ce_time have no latency to sum up.
			absent: []string{"Received: ", "latency_p50"}},
		{name: "bad warm-up", args: []string{"--warmup", "soon"}, code: 2,
			stderr: `consumer: invalid --warmup "soon": want a duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stdout, stderr strings.Builder
			code := run(ctx, tt.args, func(k string) string { return tt.env[k] }, &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			for _, s := range tt.absent {
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

func TestSummary(t *testing.T) {
	var h latency.Histogram
	for _, d := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond} {
		h.Record(d)
	}
	tests := []struct {
		name string
		res  receiver.Result
		want string
	}{
		{name: "nothing received", res: receiver.Result{Latency: new(latency.Histogram)}, want: ""},
		{name: "events without send times", res: receiver.Result{Received: 3, Elapsed: 2 * time.Second, Latency: new(latency.Histogram)},
			want: "elapsed=2s events_per_s=1"},
		{name: "latencies", res: receiver.Result{Received: 3, Elapsed: time.Second, Latency: &h},
			want: "elapsed=1s events_per_s=2 latency_events=3 latency_p50=2.007ms latency_p99=3ms latency_p999=3ms latency_max=3ms latency_mean=2ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			logging.New(&out, logging.Text, slog.LevelInfo).Info("s", summary(tt.res)...)
			if got := strings.TrimSpace(strings.TrimPrefix(out.String(), "s")); got != tt.want {
				t.Errorf("summary %q, want %q", got, tt.want)
			}
		})
	}
}
