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

const (
	maxErrorBytes = 1024 // of the dlq.error header, so that headroom holds
	headroom      = 2048 // the dlq headers take at most 1,361 bytes, a record's length fields a few more
)

// deadLetter is a write in flight, one per partition.
type deadLetter struct {
	m       *kafka.Message
	reason  error
	report  chan kafka.Event
	backoff time.Duration
	retry   time.Time // when to try (again); zero while an attempt is in flight
}

// newDeadLetterProducer creates the idempotent dead-letter producer; maxBytes > 0 sets message.max.bytes.
func (r *Receiver) newDeadLetterProducer(maxBytes int) (*kafka.Producer, error) {
	cm := kafka.ConfigMap{"message.timeout.ms": 30000} // then the consumer retries, saying so
	if maxBytes > 0 {
		cm["message.max.bytes"] = maxBytes
	}
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

// errorCode is err's Kafka error code, if it has one.
func errorCode(err error) kafka.ErrorCode {
	var kerr kafka.Error
	errors.As(err, &kerr)
	return kerr.Code()
}

// codeName is the name of err's Kafka error code.
func codeName(err error) string {
	var kerr kafka.Error
	errors.As(err, &kerr)
	return cmp.Or(permanentCodes[kerr.Code()], fmt.Sprintf("error code %d", int(kerr.Code())))
}

// Admin is the part of *kafka.AdminClient that EnsureTopics uses.
type Admin interface {
	CreateTopics(context.Context, []kafka.TopicSpecification, ...kafka.CreateTopicsAdminOption) ([]kafka.TopicResult, error)
	DescribeConfigs(context.Context, []kafka.ConfigResource, ...kafka.DescribeConfigsAdminOption) ([]kafka.ConfigResourceResult, error)
	IncrementalAlterConfigs(context.Context, []kafka.ConfigResource, ...kafka.AlterConfigsAdminOption) ([]kafka.ConfigResourceResult, error)
}

// EnsureTopics checks the group protocol, creates both topics unless they exist, and gives the dead-letter
// topic and producer room for anything the topic takes plus the dlq headers. Its errors say whether
// Kafka was out of reach within timeout or refused. A nil admin is the cluster's admin API.
func (r *Receiver) EnsureTopics(ctx context.Context, admin Admin, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r.admin, r.timeout = admin, timeout
	if admin == nil {
		a, err := kafka.NewAdminClientFromProducer(r.dlq)
		if err != nil {
			return fmt.Errorf("create admin client: %w", err)
		}
		defer a.Close()
		r.admin = a
	}
	if err := r.checkGroupProtocol(ctx); err != nil {
		return err
	}
	if _, err := r.ensure(ctx, r.cfg.Topic, nil); err != nil {
		return err
	}
	limit, err := r.maxMessageBytes(ctx, r.cfg.Topic)
	if err != nil {
		return err
	}
	want, topic := limit+headroom, r.cfg.DLQTopic
	created, err := r.ensure(ctx, topic, map[string]string{"max.message.bytes": strconv.Itoa(want)})
	have := want // of a topic created just now
	if err == nil && !created {
		have, err = r.maxMessageBytes(ctx, topic)
	}
	if err != nil {
		return err
	}
	if have < want {
		res, err := r.admin.IncrementalAlterConfigs(ctx, []kafka.ConfigResource{{Type: kafka.ResourceTopic, Name: topic,
			Config: []kafka.ConfigEntry{{Name: "max.message.bytes", Value: strconv.Itoa(want), IncrementalOperation: kafka.AlterConfigOpTypeSet}}}})
		if err = firstErr(err, res); err != nil {
			return r.fail(fmt.Sprintf("raising max.message.bytes of topic %q from %d to %d", topic, have, want), err)
		}
		r.log.Info("Raised max.message.bytes of the dead-letter topic", "topic", topic, "from", have, "to", want, "source_limit", limit)
	}
	p, err := r.newDeadLetterProducer(want) // message.max.bytes is fixed at creation
	if err == nil {
		r.dlq.Close()
		r.dlq = p
	}
	return err
}

// firstErr is err, or the error of the first result of an admin request.
func firstErr(err error, res []kafka.ConfigResourceResult) error {
	if err == nil && len(res) > 0 && res[0].Error.Code() != kafka.ErrNoError {
		return res[0].Error
	}
	return err
}

// ensure creates topic unless it is ready (never by auto-creation), and waits for its leaders
// so that the subscription does not race its propagation. It reports whether it created it.
func (r *Receiver) ensure(ctx context.Context, topic string, config map[string]string) (created bool, _ error) {
	for asked := false; ; {
		md, err := r.dlq.GetMetadata(&topic, false, 1000)
		if err == nil {
			t, ok := md.Topics[topic]
			switch code := t.Error.Code(); {
			case ok && code != kafka.ErrNoError && code != kafka.ErrUnknownTopicOrPart && code != kafka.ErrLeaderNotAvailable:
				return created, r.fail(fmt.Sprintf("the metadata of topic %q", topic), t.Error)
			case ok && code == kafka.ErrNoError && len(t.Partitions) > 0 &&
				!slices.ContainsFunc(t.Partitions, func(p kafka.PartitionMetadata) bool { return p.Leader < 0 }):
				return created, nil
			case !asked:
				asked = true
				// -1 partitions or 0 copies take the cluster's defaults.
				res, err := r.admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: cmp.Or(r.cfg.Partitions, -1),
					ReplicationFactor: r.cfg.Replication, Config: config}})
				if err == nil && len(res) > 0 && res[0].Error.Code() != kafka.ErrTopicAlreadyExists { // else created meanwhile
					if created = res[0].Error.Code() == kafka.ErrNoError; !created {
						err = res[0].Error
					}
				}
				if err != nil {
					return false, r.fail(fmt.Sprintf("creating topic %q", topic), err)
				}
				if created {
					r.log.Info("Created topic", "topic", topic)
				}
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return created, r.fail(fmt.Sprintf("looking up topic %q", topic), err)
			}
			return created, fmt.Errorf("topic %q has a partition with no leader after %s", topic, r.timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// maxMessageBytes is the topic's max.message.bytes: its own, or the broker's default.
func (r *Receiver) maxMessageBytes(ctx context.Context, topic string) (int, error) {
	what := fmt.Sprintf("describing topic %q", topic)
	res, err := r.admin.DescribeConfigs(ctx, []kafka.ConfigResource{{Type: kafka.ResourceTopic, Name: topic}})
	// A broker may not know yet of a topic another client created a moment ago: it is asked again.
	for errorCode(firstErr(err, res)) == kafka.ErrUnknownTopicOrPart && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
		res, err = r.admin.DescribeConfigs(ctx, []kafka.ConfigResource{{Type: kafka.ResourceTopic, Name: topic}})
	}
	if err = firstErr(err, res); err != nil {
		return 0, r.fail(what, err)
	}
	n, err := strconv.Atoi(res[0].Config["max.message.bytes"].Value)
	if err != nil || n <= 0 {
		//lint:ignore ST1005 Kafka is a name
		return 0, fmt.Errorf("Kafka at %s answered %s without a max.message.bytes", r.cfg.BootstrapServers, what)
	}
	return n, nil
}

// fail words a failed request: refused (a broker's error code, positive), or not answered.
func (r *Receiver) fail(what string, err error) error {
	var kerr kafka.Error
	if errors.As(err, &kerr) && kerr.Code() > 0 {
		//lint:ignore ST1005 Kafka is a name
		return fmt.Errorf("Kafka at %s refused %s: %s: %w", r.cfg.BootstrapServers, what, codeName(err), err)
	}
	return fmt.Errorf("cannot reach Kafka at %s within %s: %s: %w", r.cfg.BootstrapServers, r.timeout, what, err)
}
