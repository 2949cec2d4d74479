package sender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// RefusedError is a start-up request that the cluster answered with an
// error, such as an authorization failure: unlike an unreachable cluster,
// waiting longer will not help.
type RefusedError struct {
	What string      // what was refused, e.g. `metadata of topic "timestamp"`
	Err  kafka.Error // the broker's answer
}

func (e *RefusedError) Error() string {
	msg := e.Err.Code().String()
	if s := e.Err.Error(); s != msg {
		msg += ": " + s // the broker's own message, when it sent one
	}
	return "refused " + e.What + ": " + msg
}

// ErrNoLeader is returned when the topic exists but some partition still
// had no leader when the start-up time ran out.
var ErrNoLeader = errors.New("topic has no leader")

// ensureTopic looks the topic up and creates it through the admin API when
// it is missing; it never relies on the broker's auto-creation. Errors are a
// *RefusedError, ErrNoLeader, or else mean that the cluster did not answer.
func ensureTopic(ctx context.Context, p *kafka.Producer, topic string, log *slog.Logger) error {
	md, err := metadata(ctx, p, topic)
	if err != nil {
		return err
	}
	if ready, err := topicState(md, topic); err != nil || ready {
		return err
	}
	admin, err := kafka.NewAdminClientFromProducer(p)
	if err != nil {
		return fmt.Errorf("create admin client: %w", err)
	}
	defer admin.Close()
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{
		Topic:         topic,
		NumPartitions: 1,
		// ReplicationFactor 0 asks for the broker's default.replication.factor.
	}})
	if err != nil {
		return fmt.Errorf("create topic %q: %w", topic, err)
	}
	if err := created(res, log); err != nil {
		return err
	}
	// Wait until the topic has leaders, so that the first send or
	// subscription does not race the topic's propagation.
	for {
		if md, err := metadata(ctx, p, topic); err == nil {
			if ready, err := topicState(md, topic); err != nil || ready {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %q: %w", topic, ErrNoLeader)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// created reads the answer to CreateTopics: a topic that already exists
// is fine (another producer may have created it), any other error is a
// *RefusedError.
func created(res []kafka.TopicResult, log *slog.Logger) error {
	for _, r := range res {
		switch r.Error.Code() {
		case kafka.ErrNoError:
			log.Info("Created topic", "topic", r.Topic)
		case kafka.ErrTopicAlreadyExists:
		default:
			return &RefusedError{What: fmt.Sprintf("to create topic %q", r.Topic), Err: r.Error}
		}
	}
	return nil
}

// metadata asks the cluster about topic until it answers or ctx ends. A
// request cannot be cancelled; each waits at most FlushTimeout, so that a
// stop during start-up takes no longer than one after it.
func metadata(ctx context.Context, p *kafka.Producer, topic string) (*kafka.Metadata, error) {
	for {
		md, err := p.GetMetadata(&topic, false, int(FlushTimeout/time.Millisecond))
		if err == nil {
			return md, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("look up topic %q: %w", topic, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// topicState reads the cluster's answer about topic: ready when every
// partition has a leader; not ready when the topic is missing or waits for
// a leader; a *RefusedError for any other error of the topic.
func topicState(md *kafka.Metadata, topic string) (ready bool, err error) {
	t, ok := md.Topics[topic]
	if !ok {
		return false, nil
	}
	switch t.Error.Code() {
	case kafka.ErrNoError:
	case kafka.ErrUnknownTopicOrPart, kafka.ErrLeaderNotAvailable:
		return false, nil
	default:
		return false, &RefusedError{What: fmt.Sprintf("metadata of topic %q", topic), Err: t.Error}
	}
	for _, pt := range t.Partitions {
		if pt.Leader < 0 {
			return false, nil
		}
	}
	return len(t.Partitions) > 0, nil
}
