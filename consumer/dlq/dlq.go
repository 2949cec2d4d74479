// Package dlq writes messages that cannot be handled to a dead-letter topic,
// byte for byte, with headers that say why and where they came from.
//
// A write counts only once the broker acknowledged it: the consumer stores
// the source offset after Write returns nil, so a message is never dropped
// between the two topics.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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

// FlushTimeout bounds the wait for outstanding writes on Close.
const FlushTimeout = 4 * time.Second

// Writer writes to one dead-letter topic through an idempotent producer.
type Writer struct {
	p     *kafka.Producer
	topic string
	log   *slog.Logger
	done  chan struct{} // closed when the event goroutine ended
}

// New creates a writer for topic; props are librdkafka properties
// (bootstrap.servers and any overrides).
func New(topic string, props kafka.ConfigMap, log *slog.Logger) (*Writer, error) {
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
	// A single attempt gives up after this long; Write then tries again,
	// saying so, instead of waiting in silence for librdkafka's 5 minutes.
	if _, ok := cm["message.timeout.ms"]; !ok {
		cm["message.timeout.ms"] = 30000
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

// Write copies m to the dead-letter topic with reason and its origin in
// headers, and returns once the broker acknowledged the copy. Failed
// attempts are retried with backoff until ctx ends.
func (w *Writer) Write(ctx context.Context, m *kafka.Message, reason error) error {
	headers := make([]kafka.Header, 0, len(m.Headers)+4)
	headers = append(headers, m.Headers...)
	headers = append(headers,
		kafka.Header{Key: HeaderError, Value: []byte(reason.Error())},
		kafka.Header{Key: HeaderTopic, Value: []byte(*m.TopicPartition.Topic)},
		kafka.Header{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(m.TopicPartition.Partition), 10)},
		kafka.Header{Key: HeaderOffset, Value: strconv.AppendInt(nil, int64(m.TopicPartition.Offset), 10)},
	)
	out := &kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &w.topic, Partition: kafka.PartitionAny},
		Key:            m.Key,
		Value:          m.Value,
		Headers:        headers,
	}
	backoff := 100 * time.Millisecond
	for {
		err := w.writeOnce(ctx, out)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if kerr := (kafka.Error{}); errors.As(err, &kerr) && (kerr.IsFatal() || kerr.Code() == kafka.ErrFatal) {
			return fmt.Errorf("dead-letter producer failed: %w", err)
		}
		w.log.Warn("Dead-letter write failed, retrying", "topic", w.topic, "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (w *Writer) writeOnce(ctx context.Context, m *kafka.Message) error {
	report := make(chan kafka.Event, 1)
	if err := w.p.Produce(m, report); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case e := <-report:
		if dm, ok := e.(*kafka.Message); ok {
			return dm.TopicPartition.Error
		}
		return fmt.Errorf("unexpected delivery event %v", e)
	}
}

// events logs the producer's client errors; reports go to Write's channel.
func (w *Writer) events() {
	defer close(w.done)
	for e := range w.p.Events() {
		if kerr, ok := e.(kafka.Error); ok {
			w.log.Warn("Dead-letter producer error", "err", kerr, "fatal", kerr.IsFatal())
		}
	}
}

// Close waits up to FlushTimeout for outstanding writes, then closes the producer.
func (w *Writer) Close() {
	w.p.Flush(int(FlushTimeout / time.Millisecond))
	w.p.Close()
	<-w.done
}
