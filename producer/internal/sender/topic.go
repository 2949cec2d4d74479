package sender

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

var (
	// ErrRefused is a start-up request the cluster answered with an error,
	// such as an authorization failure: waiting longer will not help.
	ErrRefused = errors.New("refused")
	// ErrMissing is a topic the cluster does not have. The producer creates
	// none: topics are made by whoever runs the cluster (go tool mage up here).
	ErrMissing = errors.New("does not exist")
	// ErrNoLeader is a topic with a partition that got no leader in time.
	ErrNoLeader = errors.New("topic has no leader")
)

// CheckTopic waits until every partition of the topic has a leader, and
// for the cluster until ctx ends. A topic the cluster does not have is
// ErrMissing at once.
func (s *Sender) CheckTopic(ctx context.Context) error {
	if err := waitTopic(ctx, s.c.p, s.opts.Topic); err != nil {
		return err
	}
	// No event goes out before the idempotent producer has its id, and
	// librdkafka asks again only every 500 ms after a failed try (no
	// connection yet, a broker still loading): a schedule started
	// earlier would hold its first events that long.
	select {
	case <-s.c.hasID:
	case <-ctx.Done():
	case <-time.After(3 * time.Second): // a bound only: the events wait for the id anyway
	}
	return nil
}

// waitTopic returns once every partition of the topic has a leader.
func waitTopic(ctx context.Context, p *kafka.Producer, topic string) error {
	for {
		// A request cannot be cancelled; each waits at most FlushTimeout,
		// so that a stop during start-up takes no longer than one after it.
		md, err := p.GetMetadata(&topic, false, int(FlushTimeout/time.Millisecond))
		if err == nil {
			if n, err := topicState(md, topic); err != nil || n > 0 {
				return err
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				return fmt.Errorf("topic %q: %w", topic, ErrNoLeader)
			}
			return fmt.Errorf("look up topic %q: %w", topic, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// topicState is the topic's number of partitions if each has a leader, 0
// while one has none, ErrMissing for a topic the cluster does not have, or
// ErrRefused for other errors.
func topicState(md *kafka.Metadata, topic string) (int32, error) {
	t := md.Topics[topic]
	switch t.Error.Code() {
	case kafka.ErrNoError:
	case kafka.ErrUnknownTopicOrPart:
		return 0, fmt.Errorf("topic %q %w", topic, ErrMissing)
	case kafka.ErrLeaderNotAvailable:
		return 0, nil
	default:
		return 0, refused(fmt.Sprintf("metadata of topic %q", topic), t.Error)
	}
	for _, pt := range t.Partitions {
		if pt.Leader < 0 {
			return 0, nil
		}
	}
	return int32(len(t.Partitions)), nil
}

func refused(what string, e kafka.Error) error {
	msg := e.Code().String()
	if e.Error() != msg {
		msg += ": " + e.Error() // the broker's own message
	}
	return fmt.Errorf("%w %s: %s", ErrRefused, what, msg)
}
