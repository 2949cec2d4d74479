// Package deadletter is the consumer's dead-letter path: a message that
// cannot be decoded is copied byte for byte, key and headers kept, plus
// dlq.* headers that say why and where from, to the dead-letter topic.
// Dead-letter before store: the message's partition is paused until the
// broker acknowledged the copy, so that no later offset is stored first;
// polling goes on meanwhile, which keeps the group membership and the
// commits alive. A bad message is never the reason the consumer stops:
// only a dead-letter topic that refuses it for good is.
package deadletter

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// maxErrorBytes bounds the dlq.error header, so that the dlq headers take at most 1,361 bytes:
// the dead-letter topic takes 2,048 more than the source topic (internal/topics makes it so).
const maxErrorBytes = 1024

// Writer writes the dead letters of one consumer; use it from the goroutine that polls.
type Writer struct {
	p       *kafka.Producer
	topic   string
	log     *slog.Logger
	pending map[int32]*letter // one write at a time per partition: its partition is paused
	fatal   atomic.Pointer[error]
}

// letter is a write in flight or waiting for its retry.
type letter struct {
	m       *kafka.Message
	reason  error
	report  chan kafka.Event
	backoff time.Duration
	retry   time.Time // when to try (again); zero while an attempt is in flight
}

// New creates the idempotent producer of the dead letters from the consumer's
// configuration cm, without the properties only a consumer takes.
func New(cm kafka.ConfigMap, topic string, log *slog.Logger) (*Writer, error) {
	// The broker, not the client, judges a dead letter's size.
	own := kafka.ConfigMap{"message.max.bytes": 1_000_000_000, "message.timeout.ms": 30000} // then the consumer retries, saying so
	for k, v := range cm {
		if !consumerOnly(k) {
			own[k] = v
		}
	}
	// Reports go to each write's own channel: no buffers of a million entries.
	maps.Copy(own, kafka.ConfigMap{"enable.idempotence": true, "allow.auto.create.topics": false,
		"go.delivery.report.fields": "none", "go.events.channel.size": 1000, "go.produce.channel.size": 1})
	p, err := kafka.NewProducer(&own)
	if err != nil {
		return nil, fmt.Errorf("create dead-letter producer: %w", err)
	}
	return &Writer{p: p, topic: topic, log: log, pending: map[int32]*letter{}}, nil
}

// consumerOnly tells the properties kept off the dead-letter producer.
func consumerOnly(k string) bool {
	return strings.HasPrefix(k, "group.") || strings.HasPrefix(k, "fetch.") || strings.HasPrefix(k, "enable.auto.") ||
		slices.Contains([]string{"partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms",
			"coordinator.query.interval.ms", "max.poll.interval.ms", "auto.commit.interval.ms", "queued.min.messages",
			"queued.max.messages.kbytes", "max.partition.fetch.bytes", "isolation.level", "enable.partition.eof",
			"check.crcs", "auto.offset.reset", "allow.auto.create.topics", "statistics.interval.ms"}, k)
}

// Add pauses m's partition and queues m's dead letter; Poll writes it.
func (w *Writer) Add(c *kafka.Consumer, m *kafka.Message, reason error) error {
	if err := c.Pause([]kafka.TopicPartition{m.TopicPartition}); err != nil {
		return fmt.Errorf("pause %s: %w", m.TopicPartition, err)
	}
	w.pending[m.TopicPartition.Partition] = &letter{m: m, reason: reason, report: make(chan kafka.Event, 1),
		backoff: 100 * time.Millisecond, retry: time.Now()}
	return nil
}

// Headers are m's headers and the four that say why and where from.
func Headers(m *kafka.Message, reason error) []kafka.Header {
	why, tp := reason.Error(), m.TopicPartition
	if len(why) > maxErrorBytes {
		why = strings.ToValidUTF8(why[:maxErrorBytes], "")
	}
	return append(slices.Clone(m.Headers), kafka.Header{Key: "dlq.error", Value: []byte(why)},
		kafka.Header{Key: "dlq.topic", Value: []byte(*tp.Topic)},
		kafka.Header{Key: "dlq.partition", Value: []byte(strconv.Itoa(int(tp.Partition)))},
		kafka.Header{Key: "dlq.offset", Value: []byte(strconv.Itoa(int(tp.Offset)))})
}

// Poll starts the writes that are due and returns the messages whose dead
// letters the broker acknowledged, their partitions resumed: only now may
// their offsets be stored. A failed write is retried with backoff, unless
// only a person can fix it: then Poll returns the error, and so it does
// once the producer had a fatal error.
func (w *Writer) Poll(c *kafka.Consumer) (written []*kafka.Message, _ error) {
	for len(w.p.Events()) > 0 { // client errors; "all brokers are down" is in librdkafka's lines already
		if kerr, ok := (<-w.p.Events()).(kafka.Error); ok && kerr.IsFatal() {
			err := fmt.Errorf("fatal dead-letter producer error: %w", kerr)
			w.fatal.Store(&err)
		} else if ok && kerr.Code() != kafka.ErrAllBrokersDown {
			w.log.Warn("Dead-letter producer error", "err", kerr)
		}
	}
	if err := w.Healthy(); err != nil {
		return nil, err
	}
	for _, d := range w.pending {
		var err error
		tp := d.m.TopicPartition
		select {
		case e := <-d.report:
			if err = e.(*kafka.Message).TopicPartition.Error; err == nil {
				delete(w.pending, tp.Partition)
				w.log.Warn("Dead-lettered", "reason", d.reason, "partition", tp.Partition, "offset", int64(tp.Offset), "dlq", w.topic)
				written = append(written, d.m)
				if err := c.Resume([]kafka.TopicPartition{tp}); err != nil {
					return written, fmt.Errorf("resume %s: %w", tp, err)
				}
			}
		default:
			if !d.retry.IsZero() && !time.Now().Before(d.retry) {
				d.retry = time.Time{}
				err = w.p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &w.topic, Partition: kafka.PartitionAny},
					Key: d.m.Key, Value: d.m.Value, Headers: Headers(d.m, d.reason)}, d.report)
			}
		}
		if err != nil && permanent(err) {
			return written, fmt.Errorf("cannot dead-letter offset %d of %s[%d] to %q: %w (%s)",
				tp.Offset, *tp.Topic, tp.Partition, w.topic, err, codeName(err))
		} else if err != nil {
			w.log.Warn("Dead-letter write failed, retrying", "dlq", w.topic, "partition", tp.Partition,
				"offset", int64(tp.Offset), "in", d.backoff, "err", err)
			d.retry, d.backoff = time.Now().Add(d.backoff), min(2*d.backoff, 5*time.Second)
		}
	}
	return written, nil
}

// Revoked settles the writes of partitions the consumer gives up: one in
// flight is waited for, up to wait, so that a copy that lands is stored and
// committed with the rest, not written again by the partition's next owner.
// It returns the messages whose dead letters were written; the others come
// again to the next owner. Their partitions are resumed, should they come back.
func (w *Writer) Revoked(c *kafka.Consumer, tps []kafka.TopicPartition, wait time.Duration) (written []*kafka.Message) {
	deadline := time.Now().Add(wait)
	for _, tp := range tps {
		d := w.pending[tp.Partition]
		if d == nil {
			continue
		}
		delete(w.pending, tp.Partition)
		_ = c.Resume([]kafka.TopicPartition{tp})
		if !d.retry.IsZero() {
			continue // not in flight: nothing was written
		}
		select {
		case e := <-d.report:
			if e.(*kafka.Message).TopicPartition.Error == nil {
				written = append(written, d.m)
			}
		case <-time.After(max(time.Until(deadline), time.Millisecond)): // a report already there wins
			w.log.Warn("Dead-letter write unconfirmed as its partition goes: the next owner may write it again",
				"partition", tp.Partition, "offset", int64(d.m.TopicPartition.Offset), "dlq", w.topic)
		}
	}
	return written
}

// Healthy returns the producer's fatal error, if any: then only a restart helps.
func (w *Writer) Healthy() error {
	if err := w.fatal.Load(); err != nil {
		return *err
	}
	return nil
}

// Close purges what was not written (those offsets were never stored: the
// messages come again) and closes the producer.
func (w *Writer) Close() {
	_ = w.p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight)
	w.p.Close()
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
