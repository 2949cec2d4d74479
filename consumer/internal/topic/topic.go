// Package topic checks at start that the consumer's topics exist and every
// partition has a leader. The consumer creates no topic: topics are made by
// whoever runs the cluster (go tool mage up here), the dead-letter topic
// sized for the dead letters, so the consumer needs only Describe, Read and
// Write on its topics and Read on its group: no administrator rights.
package topic

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// ErrMissing is a topic the cluster does not have.
var ErrMissing = errors.New("does not exist")

// Metadata is the part of a Kafka client that Wait uses.
type Metadata interface {
	GetMetadata(topic *string, allTopics bool, timeoutMs int) (*kafka.Metadata, error)
}

// Wait returns once every partition of each topic has a leader, trying until
// ctx ends. Its errors say what failed, in one line: a topic is missing, the
// cluster refused, did not answer, or gave a partition no leader in time.
func Wait(ctx context.Context, c Metadata, servers string, topics ...string) error {
	for _, topic := range topics {
		for {
			md, err := c.GetMetadata(&topic, false, 1000)
			if err == nil {
				t := md.Topics[topic]
				switch code := t.Error.Code(); {
				case code == kafka.ErrUnknownTopicOrPart:
					return fmt.Errorf("topic %q %w at %s: the consumer creates none; create %s first "+
						"(go tool mage up does; docs/configuration.md says how elsewhere)", topic, ErrMissing, servers, quoted(topics))
				case code != kafka.ErrNoError && code != kafka.ErrLeaderNotAvailable:
					//lint:ignore ST1005 Kafka is a name
					return fmt.Errorf("Kafka at %s refused the metadata of topic %q: %w", servers, topic, t.Error)
				case code != kafka.ErrNoError || len(t.Partitions) == 0 ||
					slices.ContainsFunc(t.Partitions, func(p kafka.PartitionMetadata) bool { return p.Leader < 0 }):
					err = fmt.Errorf("topic %q has a partition with no leader", topic)
				}
			}
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("cannot reach Kafka at %s: looking up topic %q: %w", servers, topic, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// quoted is "a" and "b".
func quoted(topics []string) string {
	q := make([]string, len(topics))
	for i, t := range topics {
		q[i] = strconv.Quote(t)
	}
	return strings.Join(q, " and ")
}
