package topic

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

const source, dlq = "timestamp", "timestamp.dlq"

// consumer is a consumer of a mock cluster with topics, each with the
// number of partitions given.
func consumer(t *testing.T, topics map[string]int) (*kafka.Consumer, string) {
	t.Helper()
	mc, err := kafka.NewMockCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mc.Close)
	for tp, n := range topics {
		if err := mc.CreateTopic(tp, n, 1); err != nil {
			t.Fatal(err)
		}
	}
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": mc.BootstrapServers(), "group.id": "test-group"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, mc.BootstrapServers()
}

// The consumer creates no topic: a missing one is said at once, in one line
// that names it and both topics to create.
func TestWait_saysAtOnceThatATopicIsMissing(t *testing.T) {
	for _, tt := range []struct {
		name    string
		topics  map[string]int
		missing string // the topic named; "" when both exist
	}{
		{"both exist", map[string]int{source: 2, dlq: 1}, ""},
		{"no topic", map[string]int{dlq: 1}, source},
		{"no dead-letter topic", map[string]int{source: 1}, dlq},
		{"neither", map[string]int{}, source},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, servers := consumer(t, tt.topics)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err := Wait(ctx, c, servers, source, dlq)
			if tt.missing == "" {
				if err != nil {
					t.Fatalf("Wait: %v", err)
				}
				return
			}
			want := `topic "` + tt.missing + `" does not exist at ` + servers + `: the consumer creates none; create "timestamp" and "timestamp.dlq" first`
			if !errors.Is(err, ErrMissing) || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Wait = %v; want ErrMissing in one line starting %s", err, want)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %s to say so; waiting does not create a topic", took)
			}
			// Asking did not create it.
			md, err := c.GetMetadata(&tt.missing, false, 5000)
			if err != nil || md.Topics[tt.missing].Error.Code() != kafka.ErrUnknownTopicOrPart {
				t.Errorf("the cluster now has %q: %v %v", tt.missing, md, err)
			}
		})
	}
}

// Kafka out of reach: the wait ends with the context, and the error says so.
func TestWait_unreachableEndsWithTheContext(t *testing.T) {
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1", "group.id": "test-group", "log_level": 0})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err = Wait(ctx, c, "127.0.0.1:1", source, dlq)
	if err == nil || errors.Is(err, ErrMissing) || !strings.HasPrefix(err.Error(), `cannot reach Kafka at 127.0.0.1:1: looking up topic "timestamp": `) {
		t.Fatalf("Wait = %v; want that Kafka could not be reached", err)
	}
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("Wait took %s, want to end with its context's 2s", took)
	}
}

// answers is a cluster that gives each metadata request the next answer,
// the last one for good.
type answers []func(topic string) (*kafka.Metadata, error)

func (a *answers) GetMetadata(topic *string, _ bool, _ int) (*kafka.Metadata, error) {
	next := (*a)[0]
	if len(*a) > 1 {
		*a = (*a)[1:]
	}
	return next(*topic)
}

// with is an answer of topics with the given leaders, and error code.
func with(code kafka.ErrorCode, leaders ...int32) func(string) (*kafka.Metadata, error) {
	return func(topic string) (*kafka.Metadata, error) {
		t := kafka.TopicMetadata{Topic: topic, Error: kafka.NewError(code, code.String(), false)}
		for i, l := range leaders {
			t.Partitions = append(t.Partitions, kafka.PartitionMetadata{ID: int32(i), Leader: l})
		}
		return &kafka.Metadata{Topics: map[string]kafka.TopicMetadata{topic: t}}, nil
	}
}

// Wait waits for a leader of every partition, and says in one line why it
// could not.
func TestWait_waitsForALeaderOfEveryPartition(t *testing.T) {
	timedOut := func(string) (*kafka.Metadata, error) {
		return nil, kafka.NewError(kafka.ErrTimedOut, "Local: Timed out", false)
	}
	tests := []struct {
		name    string
		answers answers
		want    string // the error's start; "" for none
	}{
		{"leaders at once", answers{with(kafka.ErrNoError, 1, 2)}, ""},
		{"a leader elected meanwhile", answers{with(kafka.ErrLeaderNotAvailable), with(kafka.ErrNoError, -1, 2), with(kafka.ErrNoError, 1, 2)}, ""},
		{"an answer after a timeout", answers{timedOut, with(kafka.ErrNoError, 1)}, ""},
		{"a partition without a leader for good", answers{with(kafka.ErrNoError, 1, -1)},
			`cannot reach Kafka at k:9092: looking up topic "timestamp": topic "timestamp" has a partition with no leader`},
		{"no partitions yet, for good", answers{with(kafka.ErrNoError)},
			`cannot reach Kafka at k:9092: looking up topic "timestamp": topic "timestamp" has a partition with no leader`},
		{"no answer", answers{timedOut}, `cannot reach Kafka at k:9092: looking up topic "timestamp": Local: Timed out`},
		{"refused", answers{with(kafka.ErrTopicAuthorizationFailed)}, `Kafka at k:9092 refused the metadata of topic "timestamp": `},
		{"missing", answers{with(kafka.ErrUnknownTopicOrPart)}, `topic "timestamp" does not exist at k:9092`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			err := Wait(ctx, &tt.answers, "k:9092", source, dlq)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)) {
				t.Errorf("Wait = %v, want %q", err, tt.want)
			}
		})
	}
}
