package receiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Admin is the part of *kafka.AdminClient that EnsureTopics uses.
type Admin interface {
	CreateTopics(context.Context, []kafka.TopicSpecification, ...kafka.CreateTopicsAdminOption) ([]kafka.TopicResult, error)
	DescribeConfigs(context.Context, []kafka.ConfigResource, ...kafka.DescribeConfigsAdminOption) ([]kafka.ConfigResourceResult, error)
	IncrementalAlterConfigs(context.Context, []kafka.ConfigResource, ...kafka.AlterConfigsAdminOption) ([]kafka.ConfigResourceResult, error)
}

// EnsureTopics creates the topic and the dead-letter topic unless they
// exist, so that the consumer can start before the producer, and gives the
// dead-letter topic and producer room for anything the topic accepts. Its
// errors say whether Kafka was out of reach within timeout or refused.
func (r *Receiver) EnsureTopics(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	s := setup{p: r.dlq, admin: r.opts.Admin, servers: fmt.Sprint(r.opts.Kafka["bootstrap.servers"]), timeout: timeout, log: r.log}
	if s.admin == nil {
		a, err := kafka.NewAdminClientFromProducer(r.dlq)
		if err != nil {
			return fmt.Errorf("create admin client: %w", err)
		}
		defer a.Close()
		s.admin = a
	}
	limit, err := s.topics(ctx, r.opts.Topic, r.opts.DLQTopic)
	if err != nil {
		return err
	}
	p, err := newDeadLetterProducer(r.dlqProps, limit) // message.max.bytes is fixed at creation
	if err != nil {
		return err
	}
	r.dlq.Close()
	r.dlq = p
	return nil
}

// setup creates and sizes the topics at start.
type setup struct {
	p       *kafka.Producer // for metadata requests
	admin   Admin
	servers string
	timeout time.Duration
	log     *slog.Logger
}

// topics makes sure both topics exist, the dead-letter topic with room for
// anything topic takes plus the dead-letter headers; it returns that room.
func (s setup) topics(ctx context.Context, topic, dlqTopic string) (int, error) {
	if _, err := s.ensure(ctx, topic, nil); err != nil {
		return 0, err
	}
	limit, err := s.maxMessageBytes(ctx, topic)
	if err != nil {
		return 0, err
	}
	want := limit + headroom
	created, err := s.ensure(ctx, dlqTopic, map[string]string{"max.message.bytes": strconv.Itoa(want)})
	if err != nil || created {
		return want, err
	}
	have, err := s.maxMessageBytes(ctx, dlqTopic)
	if err != nil || have >= want {
		return want, err
	}
	res, err := s.admin.IncrementalAlterConfigs(ctx, []kafka.ConfigResource{{Type: kafka.ResourceTopic, Name: dlqTopic,
		Config: []kafka.ConfigEntry{{Name: "max.message.bytes", Value: strconv.Itoa(want), IncrementalOperation: kafka.AlterConfigOpTypeSet}}}})
	if err = resultErr(err, res, func(r kafka.ConfigResourceResult) kafka.Error { return r.Error }); err != nil {
		return 0, s.fail(fmt.Sprintf("raising max.message.bytes of topic %q from %d to %d", dlqTopic, have, want), err)
	}
	s.log.Info("Raised max.message.bytes of the dead-letter topic", "topic", dlqTopic, "from", have, "to", want, "source_limit", limit)
	return want, nil
}

// resultErr is err, or the error of the first result.
func resultErr[R any](err error, res []R, of func(R) kafka.Error) error {
	if err == nil && len(res) > 0 && of(res[0]).Code() != kafka.ErrNoError {
		return of(res[0])
	}
	return err
}

// ensure creates the topic through the admin API when it is missing (never
// by the broker's auto-creation), with one partition, the broker's default
// replication and config, and waits for its leaders. It reports whether it created it.
func (s setup) ensure(ctx context.Context, topic string, config map[string]string) (created bool, err error) {
	if ready, err := s.ready(ctx, topic); err != nil || ready {
		return false, err
	}
	res, err := s.admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: 1, Config: config}})
	if err == nil && len(res) > 0 && res[0].Error.Code() == kafka.ErrTopicAlreadyExists {
		res = nil // created meanwhile, by someone else
	}
	if err = resultErr(err, res, func(r kafka.TopicResult) kafka.Error { return r.Error }); err != nil {
		return false, s.fail(fmt.Sprintf("creating topic %q", topic), err)
	}
	if created = len(res) > 0; created {
		s.log.Info("Created topic", "topic", topic)
	}
	for { // until it has leaders, so that the subscription does not race its propagation
		if ready, err := s.ready(ctx, topic); err != nil || ready {
			return created, err
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return created, fmt.Errorf("topic %q created but has no leader after %s", topic, s.timeout)
		}
	}
}

// ready reports whether the cluster knows topic and every partition has a
// leader. It asks again until an answer comes or ctx ends.
func (s setup) ready(ctx context.Context, topic string) (bool, error) {
	md, err := s.p.GetMetadata(&topic, false, 1000)
	for err != nil && sleep(ctx, 100*time.Millisecond) {
		md, err = s.p.GetMetadata(&topic, false, 1000)
	}
	if err != nil {
		return false, s.fail(fmt.Sprintf("looking up topic %q", topic), err)
	}
	t, ok := md.Topics[topic]
	switch code := t.Error.Code(); {
	case !ok || code == kafka.ErrUnknownTopicOrPart || code == kafka.ErrLeaderNotAvailable:
		return false, nil
	case code != kafka.ErrNoError:
		return false, s.fail(fmt.Sprintf("the metadata of topic %q", topic), t.Error)
	}
	for _, pt := range t.Partitions {
		if pt.Leader < 0 {
			return false, nil
		}
	}
	return len(t.Partitions) > 0, nil
}

// sleep waits for d and reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// maxMessageBytes is the topic's max.message.bytes: its own, or the broker's default.
func (s setup) maxMessageBytes(ctx context.Context, topic string) (int, error) {
	res, err := s.admin.DescribeConfigs(ctx, []kafka.ConfigResource{{Type: kafka.ResourceTopic, Name: topic}})
	what := fmt.Sprintf("describing topic %q", topic)
	if err = resultErr(err, res, func(r kafka.ConfigResourceResult) kafka.Error { return r.Error }); err != nil {
		return 0, s.fail(what, err)
	}
	n, err := strconv.Atoi(res[0].Config["max.message.bytes"].Value)
	if err != nil || n <= 0 {
		//lint:ignore ST1005 Kafka is a name
		return 0, fmt.Errorf("Kafka at %s answered %s without a max.message.bytes", s.servers, what)
	}
	return n, nil
}

// fail words a failed request: refused by the cluster (a broker's error
// code, positive), or no answer (librdkafka's negative codes, and the rest).
func (s setup) fail(what string, err error) error {
	var kerr kafka.Error
	if errors.As(err, &kerr) && kerr.Code() > 0 {
		//lint:ignore ST1005 Kafka is a name
		return fmt.Errorf("Kafka at %s refused %s: %s: %w", s.servers, what, codeName(kerr.Code()), err)
	}
	return fmt.Errorf("cannot reach Kafka at %s within %s: %s: %w", s.servers, s.timeout, what, err)
}
