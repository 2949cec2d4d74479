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
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	md, err := p.GetMetadata(&topic, false, int(timeout/time.Millisecond))
	if err != nil {
		return fmt.Errorf("look up topic %q: %w", topic, err)
	}
	if t, ok := md.Topics[topic]; ok && t.Error.Code() == kafka.ErrNoError {
		return nil
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
	return nil
}
