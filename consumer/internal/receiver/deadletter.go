package receiver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The dead-letter path: a message that cannot be decoded is copied byte for byte, with key
// and headers plus dlq.* headers, to the dead-letter topic. Dead-letter before store: its
// partition is paused until the broker acknowledged the copy, so no later offset is stored
// first. Polling goes on meanwhile, which keeps the group membership and commits alive.

// maxErrorBytes bounds the dlq.error header, so that the dlq headers take at most 1,361 bytes:
// the dead-letter topic takes 2,048 more than the source topic.
const maxErrorBytes = 1024

// deadLetter is a write in flight, one per partition.
type deadLetter struct {
	m       *kafka.Message
	reason  error
	report  chan kafka.Event
	backoff time.Duration
	retry   time.Time // when to try (again); zero while an attempt is in flight
}

// newDeadLetterProducer creates the idempotent dead-letter producer.
func (r *Receiver) newDeadLetterProducer() (*kafka.Producer, error) {
	// The broker, not the client, judges a dead letter's size: the topic is made to take anything
	// the source takes plus the dlq headers, and a record it refuses stops the consumer, saying so.
	cm := kafka.ConfigMap{"message.timeout.ms": 30000, // then the consumer retries, saying so
		"message.max.bytes": 1_000_000_000} // librdkafka's largest
	maps.Copy(cm, r.dlqCM)
	// Reports go to each write's own channel: no buffers of a million entries.
	maps.Copy(cm, kafka.ConfigMap{"enable.idempotence": true, "allow.auto.create.topics": false, "go.logs.channel.enable": true,
		"go.logs.channel": r.logs, "go.delivery.report.fields": "none", "go.events.channel.size": 1000, "go.produce.channel.size": 1})
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		return nil, fmt.Errorf("create dead-letter producer: %w", err)
	}
	return p, nil
}

// deadLetter stores what was handled, pauses m's partition and has deadLetters write m.
func (r *Receiver) deadLetter(m *kafka.Message, reason error) error {
	r.store()
	if err := r.c.Pause([]kafka.TopicPartition{m.TopicPartition}); err != nil {
		return fmt.Errorf("pause %s: %w", m.TopicPartition, err)
	}
	r.pending[m.TopicPartition.Partition] = &deadLetter{m: m, reason: reason, report: make(chan kafka.Event, 1),
		backoff: 100 * time.Millisecond, retry: time.Now()}
	return nil
}

// dlqHeaders are m's headers and the four that say why and where from.
func dlqHeaders(m *kafka.Message, reason error) []kafka.Header {
	why, tp := reason.Error(), m.TopicPartition
	if len(why) > maxErrorBytes {
		why = strings.ToValidUTF8(why[:maxErrorBytes], "")
	}
	return append(slices.Clone(m.Headers), kafka.Header{Key: "dlq.error", Value: []byte(why)},
		kafka.Header{Key: "dlq.topic", Value: []byte(*tp.Topic)},
		kafka.Header{Key: "dlq.partition", Value: []byte(strconv.Itoa(int(tp.Partition)))},
		kafka.Header{Key: "dlq.offset", Value: []byte(strconv.Itoa(int(tp.Offset)))})
}

// deadLetters starts due writes and finishes acknowledged ones: only now is the offset stored.
// A failed write is retried with backoff, unless only a person can fix it: then it returns it.
func (r *Receiver) deadLetters() error {
	for len(r.dlq.Events()) > 0 { // client errors; "all brokers are down" is in librdkafka's lines already
		if kerr, ok := (<-r.dlq.Events()).(kafka.Error); ok && kerr.Code() != kafka.ErrAllBrokersDown {
			r.log.Warn("Dead-letter producer error", "err", kerr, "fatal", kerr.IsFatal())
		}
	}
	for _, d := range r.pending {
		var err error
		tp := d.m.TopicPartition
		select {
		case e := <-d.report:
			if err = e.(*kafka.Message).TopicPartition.Error; err == nil {
				delete(r.pending, tp.Partition)
				r.deadLettered.Add(1)
				r.log.Warn("Dead-lettered", "reason", d.reason, "partition", tp.Partition, "offset", int64(tp.Offset), "dlq", r.cfg.DLQTopic)
				r.handled(d.m, time.Now())
				if err := r.c.Resume([]kafka.TopicPartition{tp}); err != nil {
					return fmt.Errorf("resume %s: %w", tp, err)
				}
			}
		default:
			if !d.retry.IsZero() && !time.Now().Before(d.retry) {
				d.retry = time.Time{}
				err = r.dlq.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &r.cfg.DLQTopic, Partition: kafka.PartitionAny},
					Key: d.m.Key, Value: d.m.Value, Headers: dlqHeaders(d.m, d.reason)}, d.report)
			}
		}
		if err != nil && permanent(err) {
			return fmt.Errorf("cannot dead-letter offset %d of %s[%d] to %q: %w (%s)",
				tp.Offset, *tp.Topic, tp.Partition, r.cfg.DLQTopic, err, codeName(err))
		} else if err != nil {
			r.log.Warn("Dead-letter write failed, retrying", "dlq", r.cfg.DLQTopic, "partition", tp.Partition,
				"offset", int64(tp.Offset), "in", d.backoff, "err", err)
			d.retry, d.backoff = time.Now().Add(d.backoff), min(2*d.backoff, 5*time.Second)
		}
	}
	return nil
}

// permanentCodes, by librdkafka's names, only a person can fix: retried, they would stop a
// partition for good, in silence. A topic that disappeared is not re-created.
var permanentCodes = map[kafka.ErrorCode]string{
	kafka.ErrTopicAuthorizationFailed: "TOPIC_AUTHORIZATION_FAILED", kafka.ErrClusterAuthorizationFailed: "CLUSTER_AUTHORIZATION_FAILED",
	kafka.ErrPolicyViolation: "POLICY_VIOLATION", kafka.ErrTopicException: "TOPIC_EXCEPTION",
	kafka.ErrMsgSizeTooLarge: "MSG_SIZE_TOO_LARGE", kafka.ErrRecordListTooLarge: "RECORD_LIST_TOO_LARGE",
	kafka.ErrInvalidRecord: "INVALID_RECORD", kafka.ErrUnknownTopicOrPart: "UNKNOWN_TOPIC_OR_PART",
	kafka.ErrUnknownTopic: "_UNKNOWN_TOPIC", kafka.ErrUnknownPartition: "_UNKNOWN_PARTITION",
	kafka.ErrInvalidConfig: "INVALID_CONFIG", kafka.ErrInvalidReplicationFactor: "INVALID_REPLICATION_FACTOR",
	kafka.ErrInvalidPartitions: "INVALID_PARTITIONS", kafka.ErrFatal: "_FATAL",
}

func permanent(err error) bool {
	var kerr kafka.Error
	return errors.As(err, &kerr) && (permanentCodes[kerr.Code()] != "" || kerr.IsFatal())
}

// codeName is the name of err's Kafka error code.
func codeName(err error) string {
	var kerr kafka.Error
	errors.As(err, &kerr)
	return cmp.Or(permanentCodes[kerr.Code()], fmt.Sprintf("error code %d", int(kerr.Code())))
}

// ErrMissing is a topic the cluster does not have. The consumer creates none: topics are made
// by whoever runs the cluster (go tool mage up here), sized for the dead letters.
var ErrMissing = errors.New("does not exist")

// CheckTopics waits until the topic and the dead-letter topic have a leader for every partition,
// and for the cluster until ctx ends. A topic the cluster does not have is ErrMissing at once.
// It needs only Describe on the topics: no administrator rights.
func (r *Receiver) CheckTopics(ctx context.Context) error {
	for _, topic := range []string{r.cfg.Topic, r.cfg.DLQTopic} {
		for {
			md, err := r.dlq.GetMetadata(&topic, false, 1000)
			if err == nil {
				t := md.Topics[topic]
				switch code := t.Error.Code(); {
				case code == kafka.ErrUnknownTopicOrPart:
					return fmt.Errorf("topic %q %w", topic, ErrMissing)
				case code != kafka.ErrNoError && code != kafka.ErrLeaderNotAvailable:
					//lint:ignore ST1005 Kafka is a name
					return fmt.Errorf("Kafka at %s refused the metadata of topic %q: %s: %w", r.cfg.BootstrapServers, topic, codeName(t.Error), t.Error)
				case code == kafka.ErrNoError && len(t.Partitions) > 0 &&
					!slices.ContainsFunc(t.Partitions, func(p kafka.PartitionMetadata) bool { return p.Leader < 0 }):
				default:
					err = fmt.Errorf("topic %q has a partition with no leader", topic)
				}
			}
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("cannot reach Kafka at %s: looking up topic %q: %w", r.cfg.BootstrapServers, topic, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}
