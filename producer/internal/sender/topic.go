package sender

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// RefusedError is a start-up request that the cluster answered with an
// error, such as an authorization failure: waiting longer will not help.
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

// ErrNoLeader: the topic exists, but some partition had no leader in time.
var ErrNoLeader = errors.New("topic has no leader")

// EnsureTopic creates the topic with one partition unless it exists, waits
// until it has leaders, and picks the partition this producer sends to. It
// waits for the cluster until ctx ends. Errors are a *RefusedError,
// ErrNoLeader, or else mean that the cluster did not answer.
func (s *Sender) EnsureTopic(ctx context.Context) error {
	n, err := ensureTopic(ctx, s.c.p, s.opts.Topic, s.log)
	if err == nil {
		// One partition for all events: Kafka keeps order only within a
		// partition, and its delivery reports come in order only there.
		s.partition = rand.Int32N(n)
	}
	return err
}

// ensureTopic returns the number of partitions of topic, created through the
// admin API when missing, never by the broker's auto-creation.
func ensureTopic(ctx context.Context, p *kafka.Producer, topic string, log *slog.Logger) (int32, error) {
	created := false
	for {
		// A request cannot be cancelled; each waits at most FlushTimeout,
		// so that a stop during start-up takes no longer than one after it.
		md, err := p.GetMetadata(&topic, false, int(FlushTimeout/time.Millisecond))
		if err == nil {
			n, err := topicState(md, topic)
			if err != nil || n > 0 {
				return n, err
			}
			if !created {
				if err := create(ctx, p, topic, log); err != nil {
					return 0, err
				}
				created = true
				continue
			}
		}
		select {
		case <-ctx.Done():
			if created {
				return 0, fmt.Errorf("topic %q: %w", topic, ErrNoLeader)
			}
			return 0, fmt.Errorf("look up topic %q: %w", topic, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// create asks for the topic with one partition, which keeps the whole
// stream in order, and the broker's default replication factor.
func create(ctx context.Context, p *kafka.Producer, topic string, log *slog.Logger) error {
	admin, err := kafka.NewAdminClientFromProducer(p)
	if err != nil {
		return fmt.Errorf("create admin client: %w", err)
	}
	defer admin.Close()
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: 1}})
	if err != nil {
		return fmt.Errorf("create topic %q: %w", topic, err)
	}
	return created(res, log)
}

// created reads the answer to CreateTopics: a topic that already exists is
// fine (another producer may have created it), any other error is a refusal.
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

// topicState reads the cluster's answer about topic: its number of
// partitions when every one has a leader; 0 when the topic is missing or
// waits for a leader; a *RefusedError for any other error of the topic.
func topicState(md *kafka.Metadata, topic string) (int32, error) {
	t := md.Topics[topic]
	switch t.Error.Code() {
	case kafka.ErrNoError:
	case kafka.ErrUnknownTopicOrPart, kafka.ErrLeaderNotAvailable:
		return 0, nil
	default:
		return 0, &RefusedError{What: fmt.Sprintf("metadata of topic %q", topic), Err: t.Error}
	}
	for _, pt := range t.Partitions {
		if pt.Leader < 0 {
			return 0, nil
		}
	}
	return int32(len(t.Partitions)), nil
}
