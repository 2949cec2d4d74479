package topic

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func TestState(t *testing.T) {
	const topic = "timestamp"
	led := []kafka.PartitionMetadata{{ID: 0, Leader: 1}}
	tests := []struct {
		name  string
		md    kafka.TopicMetadata
		ready bool
		err   string // "" for none
	}{
		{"ready", kafka.TopicMetadata{Partitions: led}, true, ""},
		{"missing", kafka.TopicMetadata{Error: kafka.NewError(kafka.ErrUnknownTopicOrPart, "", false)}, false, "does not exist"},
		{"electing a leader", kafka.TopicMetadata{Error: kafka.NewError(kafka.ErrLeaderNotAvailable, "", false)}, false, ""},
		{"a partition without a leader", kafka.TopicMetadata{Partitions: append(led, kafka.PartitionMetadata{ID: 1, Leader: -1})}, false, ""},
		{"no partitions yet", kafka.TopicMetadata{}, false, ""},
		{"not authorized", kafka.TopicMetadata{Error: kafka.NewError(kafka.ErrTopicAuthorizationFailed, "", false)},
			false, `refused the metadata of topic "timestamp": Broker: Topic authorization failed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.md.Topic = topic
			ready, err := state(&kafka.Metadata{Topics: map[string]kafka.TopicMetadata{topic: tt.md}}, topic)
			if ready != tt.ready || (err == nil) != (tt.err == "") || (err != nil && err.Error() != tt.err) {
				t.Fatalf("state = %v, %v; want %v, %q", ready, err, tt.ready, tt.err)
			}
		})
	}
}

func TestWait(t *testing.T) {
	mc, err := kafka.NewMockCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	if err := mc.CreateTopic("timestamp", 2, 1); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := l.Addr().String()
	l.Close() // nothing listens there now
	for _, tt := range []struct {
		name, servers, topic, err string
	}{
		{"ready", mc.BootstrapServers(), "timestamp", ""},
		{"missing, said at once", mc.BootstrapServers(), "tiemstamp", `topic "tiemstamp" does not exist at ` + mc.BootstrapServers() + ": the producer creates none"},
		{"out of reach until the stop", nowhere, "timestamp", "cannot reach Kafka at " + nowhere + `: look up topic "timestamp": `},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": tt.servers, "log_level": 0, "allow.auto.create.topics": false})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			time.AfterFunc(time.Second, cancel) // a stop signal
			start := time.Now()
			err = Wait(ctx, p, tt.topic, tt.servers, 500*time.Millisecond)
			if (err == nil) != (tt.err == "") || (err != nil && !strings.HasPrefix(err.Error(), tt.err)) || errors.Is(err, ErrRefused) {
				t.Fatalf("Wait = %v; want %q", err, tt.err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %s; a stop must end the wait within a request's step", took)
			}
		})
	}
}
