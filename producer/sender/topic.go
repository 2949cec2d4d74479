package sender

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// ensureTopic looks the topic up and creates it through the admin API when
// it is missing; it never relies on the broker's auto-creation.
func ensureTopic(ctx context.Context, p *kafka.Producer, topic string, log *slog.Logger) error {
	ready, err := topicReady(ctx, p, topic)
	if err != nil || ready {
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
	for _, r := range res {
		switch r.Error.Code() {
		case kafka.ErrNoError:
			log.Info("Created topic", "topic", r.Topic)
		case kafka.ErrTopicAlreadyExists:
		default:
			return fmt.Errorf("create topic %q: %w", r.Topic, r.Error)
		}
	}
	// Wait until the topic has leaders, so that the first send or
	// subscription does not race the topic's propagation.
	for {
		if ready, err := topicReady(ctx, p, topic); err != nil || ready {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %q created but has no leader yet: %w", topic, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// topicReady reports whether the cluster knows topic and every partition has a leader.
func topicReady(ctx context.Context, p *kafka.Producer, topic string) (bool, error) {
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	md, err := p.GetMetadata(&topic, false, int(timeout/time.Millisecond))
	if err != nil {
		return false, fmt.Errorf("look up topic %q: %w", topic, err)
	}
	t, ok := md.Topics[topic]
	if !ok || t.Error.Code() != kafka.ErrNoError || len(t.Partitions) == 0 {
		return false, nil
	}
	for _, pt := range t.Partitions {
		if pt.Leader < 0 {
			return false, nil
		}
	}
	return true, nil
}
