package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
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
			if !strings.HasPrefix(stderr.String(), tt.stderr) || strings.Count(stderr.String(), "\n") > 1 {
				t.Errorf("stderr %q, want one line starting %q", stderr.String(), tt.stderr)
			}
		})
	}
}
