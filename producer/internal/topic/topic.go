// Package topic checks at start that the producer's topic exists and every
// partition has a leader. The producer creates no topic: topics are made
// by whoever runs the cluster (go tool mage up here), so it needs no
// administrator rights, and a typo is an error, not a new topic.
package topic

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

var (
	// ErrRefused is an answer that waiting will not change, such as an authorization failure.
	ErrRefused = errors.New("refused")
	// ErrMissing is a topic the cluster does not have.
	ErrMissing = errors.New("does not exist")
)

// Metadata is the part of a Kafka client that Wait uses.
type Metadata interface {
	GetMetadata(topic *string, allTopics bool, timeoutMs int) (*kafka.Metadata, error)
}

// Wait returns once every partition of topic has a leader, trying until ctx
// ends. Its errors say what failed, in one line: the topic is missing, the
// cluster refused, did not answer, or gave a partition no leader in time.
// A single request waits at most step, so that a stop is taken soon.
//
// Once the topic is ready it asks once more. An idempotent producer sends
// nothing before the broker gave it a producer id, and each metadata answer
// makes librdkafka ask for one at once if it has none; but a first request
// made before the connection was ready is retried only 500 ms later. Without
// this second answer, 6 of 55 starts against a warm broker delivered their
// first event after 500 ms; with it, none of 40.
func Wait(ctx context.Context, c Metadata, topic, servers string, step time.Duration) error {
	for {
		md, err := c.GetMetadata(&topic, false, int(step.Milliseconds()))
		if err == nil {
			ready, err := state(md, topic)
			switch {
			case errors.Is(err, ErrMissing):
				return fmt.Errorf("topic %q does not exist at %s: the producer creates none; create it first "+
					"(go tool mage up does; docs/configuration.md says how elsewhere)", topic, servers)
			case err != nil:
				//lint:ignore ST1005 Kafka is a name
				return fmt.Errorf("Kafka at %s %w", servers, err)
			case ready:
				_, _ = c.GetMetadata(&topic, false, int(step.Milliseconds())) // see above
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				return fmt.Errorf("topic %q has a partition with no leader: %w", topic, context.Cause(ctx))
			}
			return fmt.Errorf("cannot reach Kafka at %s: look up topic %q: %w", servers, topic, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// state says whether every partition of topic has a leader; its errors are
// ErrMissing and ErrRefused.
func state(md *kafka.Metadata, topic string) (bool, error) {
	t := md.Topics[topic]
	switch t.Error.Code() {
	case kafka.ErrNoError:
	case kafka.ErrUnknownTopicOrPart:
		return false, ErrMissing
	case kafka.ErrLeaderNotAvailable:
		return false, nil
	default:
		msg := t.Error.Code().String()
		if t.Error.Error() != msg {
			msg += ": " + t.Error.Error() // the broker's own message
		}
		return false, fmt.Errorf("%w the metadata of topic %q: %s", ErrRefused, topic, msg)
	}
	for _, p := range t.Partitions {
		if p.Leader < 0 {
			return false, nil
		}
	}
	return len(t.Partitions) > 0, nil
}
