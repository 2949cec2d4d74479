package sender

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func TestTopicState(t *testing.T) {
	const topic = "timestamp"
	led := []kafka.PartitionMetadata{{ID: 0, Leader: 1}}
	tests := []struct {
		name    string
		md      kafka.TopicMetadata
		ready   int32  // partitions, when all have a leader
		refused string // the refusal's text; "" for none
	}{
		{"ready", kafka.TopicMetadata{Partitions: led}, 1, ""},
		{"electing a leader", kafka.TopicMetadata{Error: kafka.NewError(kafka.ErrLeaderNotAvailable, "", false)}, 0, ""},
		{"a partition without a leader", kafka.TopicMetadata{Partitions: append(led, kafka.PartitionMetadata{ID: 1, Leader: -1})}, 0, ""},
		{"no partitions yet", kafka.TopicMetadata{}, 0, ""},
		{"not authorized", kafka.TopicMetadata{Error: kafka.NewError(kafka.ErrTopicAuthorizationFailed, "", false)},
			0, `refused metadata of topic "timestamp": Broker: Topic authorization failed`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.md.Topic = topic
			ready, err := topicState(&kafka.Metadata{Topics: map[string]kafka.TopicMetadata{topic: tt.md}}, topic)
			if ready != tt.ready || (err == nil) != (tt.refused == "") || (err != nil && (!errors.Is(err, ErrRefused) || err.Error() != tt.refused)) {
				t.Fatalf("topicState = %v, %v; want %v, refusal %q", ready, err, tt.ready, tt.refused)
			}
		})
	}
}

// A missing topic is said at once: no service creates topics, and waiting does not help.
func TestTopicState_missingTopic(t *testing.T) {
	md := &kafka.Metadata{Topics: map[string]kafka.TopicMetadata{"timestamp": {Topic: "timestamp",
		Error: kafka.NewError(kafka.ErrUnknownTopicOrPart, "", false)}}}
	if _, err := topicState(md, "timestamp"); !errors.Is(err, ErrMissing) || err.Error() != `topic "timestamp" does not exist` {
		t.Fatalf("topicState = %v; want ErrMissing", err)
	}
}

func TestWaitTopic_unreachableIsNoRefusalAndEndsWithCtx(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": addr, "log_level": 0})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // the producer's start-up time
	defer cancel()
	start := time.Now()
	time.AfterFunc(500*time.Millisecond, cancel) // a stop signal
	err = waitTopic(ctx, p, "timestamp")
	if err == nil || errors.Is(err, ErrRefused) || errors.Is(err, ErrNoLeader) || errors.Is(err, ErrMissing) {
		t.Fatalf("waitTopic = %v, want an error that the cluster did not answer", err)
	}
	if took := time.Since(start); took > 500*time.Millisecond+FlushTimeout+500*time.Millisecond {
		t.Errorf("took %s, want to stop within FlushTimeout of the context's end", took)
	}
}

// librdkafka retries a failed producer id request only after 500 ms; a
// first event sent before the id came would wait as long.
func TestCheckTopic_firstEventGoesOutAtOnce(t *testing.T) {
	for round := range 3 {
		mc := mockCluster(t, 1)
		var out syncBuffer
		s := newSender(t, mc, Options{Count: 1, Source: quietSource}, &out, nil)
		res, err := s.Run(context.Background())
		if err != nil || res.Delivered != 1 {
			t.Fatalf("round %d: result %+v, error %v\n%s", round, res, err, out.String())
		}
		if res.Elapsed > 100*time.Millisecond {
			t.Errorf("round %d: the first event took %s from send to delivery report, want < 100ms", round, res.Elapsed)
		}
	}
}
