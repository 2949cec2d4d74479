package sender

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

var (
	// ErrRefused is a start-up request the cluster answered with an error,
	// such as an authorization failure: waiting longer will not help.
	ErrRefused = errors.New("refused")
	// ErrNoLeader is a topic with a partition that got no leader in time.
	ErrNoLeader = errors.New("topic has no leader")
)

// EnsureTopic creates the topic unless it exists (-1 partitions and 0
// copies take the cluster's defaults) and waits until it has leaders, and
// for the cluster until ctx ends.
func (s *Sender) EnsureTopic(ctx context.Context) error {
	err := ensureTopic(ctx, s.c.p, kafka.TopicSpecification{Topic: s.opts.Topic,
		NumPartitions: cmp.Or(s.opts.Partitions, -1), ReplicationFactor: s.opts.Replication}, s.log)
	if err != nil {
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

// ensureTopic returns once every partition of the topic has a leader. A
// missing topic is created on purpose, never by auto-creation.
func ensureTopic(ctx context.Context, p *kafka.Producer, spec kafka.TopicSpecification, log *slog.Logger) error {
	topic, created := spec.Topic, false
	for {
		// A request cannot be cancelled; each waits at most FlushTimeout,
		// so that a stop during start-up takes no longer than one after it.
		md, err := p.GetMetadata(&topic, false, int(FlushTimeout/time.Millisecond))
		if err == nil {
			if n, err := topicState(md, topic); err != nil || n > 0 {
				return err
			}
			if !created {
				if err = create(ctx, p, spec, log); err != nil {
					return err
				}
				created = true
			}
		}
		select {
		case <-ctx.Done():
			if created {
				return fmt.Errorf("topic %q: %w", topic, ErrNoLeader)
			}
			return fmt.Errorf("look up topic %q: %w", topic, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// create creates the topic; -1 partitions or 0 copies take the cluster's default.
func create(ctx context.Context, p *kafka.Producer, spec kafka.TopicSpecification, log *slog.Logger) error {
	admin, err := kafka.NewAdminClientFromProducer(p)
	if err != nil {
		return fmt.Errorf("create admin client: %w", err)
	}
	defer admin.Close()
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{spec})
	if err != nil {
		return fmt.Errorf("create topic %q: %w", spec.Topic, err)
	}
	return created(res, log)
}

// created reads the answer to CreateTopics: a topic that already exists is
// fine (another producer may have created it), any other error a refusal.
func created(res []kafka.TopicResult, log *slog.Logger) error {
	for _, r := range res {
		switch r.Error.Code() {
		case kafka.ErrNoError:
			log.Info("Created topic", "topic", r.Topic)
		case kafka.ErrTopicAlreadyExists:
		default:
			return refused(fmt.Sprintf("to create topic %q", r.Topic), r.Error)
		}
	}
	return nil
}

// topicState is the topic's number of partitions if each has a leader, 0
// while it is missing or without a leader, or ErrRefused for other errors.
func topicState(md *kafka.Metadata, topic string) (int32, error) {
	t := md.Topics[topic]
	switch t.Error.Code() {
	case kafka.ErrNoError:
	case kafka.ErrUnknownTopicOrPart, kafka.ErrLeaderNotAvailable:
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
