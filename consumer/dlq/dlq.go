// Package dlq writes messages that cannot be handled to a dead-letter topic,
// byte for byte, with headers that say why and where they came from.
//
// A write counts only once the broker acknowledged it: the consumer stores
// the source offset after the report of Send says so, so a message is never
// dropped between the two topics.
package dlq

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Headers added to each dead-lettered message, after the original ones.
const (
	HeaderError     = "dlq.error"     // why the message could not be handled
	HeaderTopic     = "dlq.topic"     // the topic it was read from
	HeaderPartition = "dlq.partition" // its partition there
	HeaderOffset    = "dlq.offset"    // its offset there
)

// MaxErrorBytes bounds the dlq.error header, so that Headroom holds.
const MaxErrorBytes = 1024

// Headroom is how much larger than the source topic's limit the dead-letter
// topic's must be: the four headers take at most 1,361 bytes (names 41,
// error 1,024, topic 249, partition 11, offset 20, lengths 16), and a
// record's length fields grow by a few bytes more.
const Headroom = 2048

// Writer writes to one dead-letter topic through an idempotent producer.
type Writer struct {
	p     *kafka.Producer
	topic string
	log   *slog.Logger
	done  chan struct{} // closed when the event goroutine ended
}

// New creates a writer for topic; props are librdkafka properties
// (bootstrap.servers and any overrides). A maxMessageBytes above 0 is the
// producer's message.max.bytes unless props set it.
func New(topic string, props kafka.ConfigMap, maxMessageBytes int, log *slog.Logger) (*Writer, error) {
	cm := kafka.ConfigMap{}
	for k, v := range props {
		cm[k] = v
	}
	cm["enable.idempotence"] = true
	cm["go.delivery.report.fields"] = "none"
	cm["allow.auto.create.topics"] = false
	// Reports go to each write's own channel and ProduceChannel is never
	// used, so the client's default buffers of a million entries each (24
	// MiB of pointers, which the garbage collector scans on every cycle of
	// the consumer) would only slow the consumer down.
	cm["go.events.channel.size"] = 1000
	cm["go.produce.channel.size"] = 1
	// A single attempt gives up after this long; the consumer then tries
	// again, saying so, instead of waiting in silence for librdkafka's 5 minutes.
	if _, ok := cm["message.timeout.ms"]; !ok {
		cm["message.timeout.ms"] = 30000
	}
	if _, ok := cm["message.max.bytes"]; !ok && maxMessageBytes > 0 {
		cm["message.max.bytes"] = maxMessageBytes
	}
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		return nil, fmt.Errorf("create dead-letter producer: %w", err)
	}
	w := &Writer{p: p, topic: topic, log: log, done: make(chan struct{})}
	go w.events()
	return w, nil
}

// Topic is the dead-letter topic's name.
func (w *Writer) Topic() string { return w.topic }

// Producer is the writer's Kafka producer, for admin requests.
func (w *Writer) Producer() *kafka.Producer { return w.p }

// Send starts copying m to the dead-letter topic with reason and its origin
// in headers. The outcome arrives on report (buffered) as a *kafka.Message
// whose TopicPartition.Error is nil once the broker acknowledged the copy.
func (w *Writer) Send(m *kafka.Message, reason error, report chan kafka.Event) error {
	why := reason.Error()
	if len(why) > MaxErrorBytes {
		why = strings.ToValidUTF8(why[:MaxErrorBytes], "")
	}
	headers := make([]kafka.Header, 0, len(m.Headers)+4)
	headers = append(headers, m.Headers...)
	headers = append(headers,
		kafka.Header{Key: HeaderError, Value: []byte(why)},
		kafka.Header{Key: HeaderTopic, Value: []byte(*m.TopicPartition.Topic)},
		kafka.Header{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(m.TopicPartition.Partition), 10)},
		kafka.Header{Key: HeaderOffset, Value: strconv.AppendInt(nil, int64(m.TopicPartition.Offset), 10)},
	)
	return w.p.Produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &w.topic, Partition: kafka.PartitionAny},
		Key:            m.Key,
		Value:          m.Value,
		Headers:        headers,
	}, report)
}

// events logs the producer's client errors; reports go to Send's channel.
func (w *Writer) events() {
	defer close(w.done)
	for e := range w.p.Events() {
		// librdkafka repeats "all brokers are down" on every failed
		// connection attempt, which its own log lines report already.
		if kerr, ok := e.(kafka.Error); ok && kerr.Code() != kafka.ErrAllBrokersDown {
			w.log.Warn("Dead-letter producer error", "err", kerr, "fatal", kerr.IsFatal())
		}
	}
}

// Close waits up to timeout for outstanding writes, then closes the producer.
func (w *Writer) Close(timeout time.Duration) {
	w.p.Flush(int(timeout / time.Millisecond))
	w.p.Close()
	<-w.done
}
