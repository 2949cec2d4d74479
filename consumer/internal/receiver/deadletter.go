package receiver

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The dead-letter path: a message that cannot be decoded is copied, byte for
// byte with key and headers, to the dead-letter topic, plus headers that say
// why and where from. Its partition is paused until the broker acknowledged
// the copy, so that no later offset of it is stored before: no message is
// lost between the two topics. Pausing drops what librdkafka fetched ahead;
// resuming fetches from the message after the last one Poll returned.
// Polling goes on, which keeps the group membership and the commits alive.

const (
	maxErrorBytes = 1024 // of the dlq.error header, so that headroom holds
	// headroom is how much more the dead-letter topic must take than the
	// source topic: the four headers take at most 1,361 bytes (names 41,
	// error 1,024, topic 249, partition 11, offset 20, lengths 16), and a
	// record's length fields grow by a few bytes more.
	headroom = 2048
)

// deadLetter is a write in flight, one per partition.
type deadLetter struct {
	m       *kafka.Message
	reason  error
	report  chan kafka.Event
	backoff time.Duration
	retry   time.Time // when to try again; zero while an attempt is in flight
}

// newDeadLetterProducer creates the idempotent producer of the dead-letter
// topic; maxBytes above 0 is its message.max.bytes unless props set it.
func newDeadLetterProducer(props kafka.ConfigMap, maxBytes int) (*kafka.Producer, error) {
	// An attempt gives up after 30 s; the consumer then retries, saying so.
	cm := kafka.ConfigMap{"message.timeout.ms": 30000}
	if maxBytes > 0 {
		cm["message.max.bytes"] = maxBytes
	}
	for k, v := range props {
		cm[k] = v
	}
	// Reports go to each write's own channel: no buffers of a million entries.
	for k, v := range map[string]any{"enable.idempotence": true, "allow.auto.create.topics": false,
		"go.delivery.report.fields": "none", "go.events.channel.size": 1000, "go.produce.channel.size": 1} {
		cm[k] = v
	}
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		return nil, fmt.Errorf("create dead-letter producer: %w", err)
	}
	return p, nil
}

// deadLetter stores what was handled, pauses m's partition and starts the write.
func (r *Receiver) deadLetter(m *kafka.Message, reason error) error {
	r.store()
	if err := r.c.Pause([]kafka.TopicPartition{m.TopicPartition}); err != nil {
		return fmt.Errorf("pause %s: %w", m.TopicPartition, err)
	}
	d := &deadLetter{m: m, reason: reason, report: make(chan kafka.Event, 1), backoff: 100 * time.Millisecond}
	r.pending[m.TopicPartition.Partition] = d
	return r.send(d)
}

func (r *Receiver) send(d *deadLetter) error {
	d.retry = time.Time{}
	err := r.dlq.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &r.opts.DLQTopic, Partition: kafka.PartitionAny},
		Key: d.m.Key, Value: d.m.Value, Headers: dlqHeaders(d.m, d.reason)}, d.report)
	if err != nil {
		return r.failed(d, err)
	}
	return nil
}

// dlqHeaders are m's headers and the four that say why and where from.
func dlqHeaders(m *kafka.Message, reason error) []kafka.Header {
	why, tp := reason.Error(), m.TopicPartition
	if len(why) > maxErrorBytes {
		why = strings.ToValidUTF8(why[:maxErrorBytes], "")
	}
	return append(append(make([]kafka.Header, 0, len(m.Headers)+4), m.Headers...),
		kafka.Header{Key: "dlq.error", Value: []byte(why)}, kafka.Header{Key: "dlq.topic", Value: []byte(*tp.Topic)},
		kafka.Header{Key: "dlq.partition", Value: []byte(strconv.Itoa(int(tp.Partition)))},
		kafka.Header{Key: "dlq.offset", Value: []byte(strconv.Itoa(int(tp.Offset)))})
}

// deadLetters finishes the writes the broker acknowledged: only now is the
// offset stored and the partition resumed. It retries failed writes after
// their backoff, and returns an error for one only a person can fix.
func (r *Receiver) deadLetters() error {
	for len(r.dlq.Events()) > 0 { // client errors; "all brokers are down" is in librdkafka's lines already
		if kerr, ok := (<-r.dlq.Events()).(kafka.Error); ok && kerr.Code() != kafka.ErrAllBrokersDown {
			r.log.Warn("Dead-letter producer error", "err", kerr, "fatal", kerr.IsFatal())
		}
	}
	for _, d := range r.pending {
		var err error
		select {
		case e := <-d.report:
			if err = e.(*kafka.Message).TopicPartition.Error; err != nil {
				err = r.failed(d, err)
				break
			}
			tp := d.m.TopicPartition
			delete(r.pending, tp.Partition)
			r.res.DeadLettered++
			r.log.Warn("Dead-lettered", "reason", d.reason, "partition", tp.Partition, "offset", int64(tp.Offset), "dlq", r.opts.DLQTopic)
			r.handled(d.m)
			if err = r.c.Resume([]kafka.TopicPartition{tp}); err != nil {
				err = fmt.Errorf("resume %s: %w", tp, err)
			}
		default:
			if !d.retry.IsZero() && time.Now().After(d.retry) {
				err = r.send(d)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// failed stops the consumer for a permanent error, or retries with backoff
// (100 ms doubling to 5 s): timeouts, a broker away, a full queue.
func (r *Receiver) failed(d *deadLetter, err error) error {
	tp := d.m.TopicPartition
	if permanent(err) {
		var kerr kafka.Error
		errors.As(err, &kerr)
		return fmt.Errorf("cannot dead-letter offset %d of %s[%d] to %q: %w (%s)",
			tp.Offset, *tp.Topic, tp.Partition, r.opts.DLQTopic, err, codeName(kerr.Code()))
	}
	r.log.Warn("Dead-letter write failed, retrying", "dlq", r.opts.DLQTopic, "partition", tp.Partition,
		"offset", int64(tp.Offset), "in", d.backoff, "err", err)
	d.retry, d.backoff = time.Now().Add(d.backoff), min(2*d.backoff, 5*time.Second)
	return nil
}

// permanentCodes are the errors only a person can fix, by librdkafka's names
// (which the Kafka documentation uses): retried, they would stop a partition
// for good, in silence. A topic that disappeared is not re-created.
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

func codeName(c kafka.ErrorCode) string {
	return cmp.Or(permanentCodes[c], fmt.Sprintf("error code %d", int(c)))
}
