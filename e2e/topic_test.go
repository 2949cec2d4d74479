package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/event-driven-go/kafka-go/internal/topics"
)

// record is one message of a topic as the suite's own reader saw it.
type record struct {
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []kafka.Header
}

// header returns the value of the first header named key.
func (r record) header(key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// id is the event's ce_id, empty when absent.
func (r record) id() string { v, _ := r.header("ce_id"); return v }

// source is the event's ce_source, empty when absent.
func (r record) source() string { v, _ := r.header("ce_source"); return v }

// seq is the event's ce_id as a number (our producer's ids count from 1
// within their source), 0 when absent or not a number.
func (r record) seq() uint64 {
	n, _ := strconv.ParseUint(r.id(), 10, 64)
	return n
}

// key identifies the event: ids are unique only within their source.
func (r record) key() string { return eventKey(r.source(), r.id()) }

// eventKey is the key of the event id of source; empty without an id.
func eventKey(source, id string) string {
	if id == "" {
		return ""
	}
	return source + " " + id
}

// timestamp is the HH:MM:SS of the value in either of the tutorial's forms,
// empty when the value is neither.
func (r record) timestamp() string {
	var obj struct {
		Timestamp string `json:"timestamp"`
	}
	if json.Unmarshal(r.Value, &obj) == nil && obj.Timestamp != "" {
		return obj.Timestamp
	}
	var s string
	if json.Unmarshal(r.Value, &s) == nil {
		return s
	}
	return ""
}

// readTopic reads every message of topic, from the first offset of each
// partition to its end, with a consumer of its own that commits nothing.
func readTopic(t *testing.T, bootstrap, topic string) []record {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers":  bootstrap,
		"group.id":           "e2e-reader-" + runID,
		"enable.auto.commit": false,
		"auto.offset.reset":  "earliest",
		"log_level":          3,
	})
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	defer c.Close()
	md, err := c.GetMetadata(&topic, false, 10000)
	if err != nil {
		t.Fatalf("reader: metadata of %s: %v", topic, err)
	}
	tm, ok := md.Topics[topic]
	if !ok || tm.Error.Code() != kafka.ErrNoError {
		t.Fatalf("reader: topic %s: %v", topic, tm.Error)
	}
	end := map[int32]int64{}
	var assign []kafka.TopicPartition
	for _, p := range tm.Partitions {
		_, high, err := c.QueryWatermarkOffsets(topic, p.ID, 10000)
		if err != nil {
			t.Fatalf("reader: watermarks of %s[%d]: %v", topic, p.ID, err)
		}
		if high > 0 {
			end[p.ID] = high
			assign = append(assign, kafka.TopicPartition{Topic: &topic, Partition: p.ID, Offset: kafka.OffsetBeginning})
		}
	}
	if len(assign) == 0 {
		return nil
	}
	if err := c.Assign(assign); err != nil {
		t.Fatalf("reader: assign: %v", err)
	}
	var out []record
	deadline := time.Now().Add(time.Minute)
	for len(end) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("reader: %s not read to its end within a minute; %d partitions left", topic, len(end))
		}
		ev := c.Poll(200)
		m, ok := ev.(*kafka.Message)
		if !ok {
			if e, isErr := ev.(kafka.Error); isErr && e.IsFatal() {
				t.Fatalf("reader: %v", e)
			}
			continue
		}
		if m.TopicPartition.Error != nil {
			t.Fatalf("reader: %v", m.TopicPartition.Error)
		}
		r := record{
			Partition: m.TopicPartition.Partition,
			Offset:    int64(m.TopicPartition.Offset),
			Key:       m.Key,
			Value:     m.Value,
			Headers:   m.Headers,
		}
		out = append(out, r)
		if r.Offset+1 >= end[r.Partition] {
			delete(end, r.Partition)
		}
	}
	return out
}

// writer writes messages to Kafka the way any plain client would: no
// headers unless given. Each write waits for its acknowledgement.
type writer struct {
	t *testing.T
	p *kafka.Producer
}

// newWriter returns an idempotent writer, closed when the test ends. It
// writes anything the broker accepts: librdkafka's own limit of 1,000,000
// bytes a message is below the broker's 1,048,588.
func newWriter(t *testing.T, bootstrap string) *writer {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":        bootstrap,
		"enable.idempotence":       true,
		"allow.auto.create.topics": false,
		"message.max.bytes":        2 << 20,
		"log_level":                3,
	})
	if err != nil {
		t.Fatalf("writer: %v", err)
	}
	t.Cleanup(p.Close)
	return &writer{t: t, p: p}
}

// provision creates topic and its dead-letter topic with the cluster's
// defaults, as go tool mage up does (the services create none), and waits
// until every broker knows both. It returns topic.
func provision(t *testing.T, bootstrap, topic string) string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := topics.Ensure(ctx, cl, topics.Spec{Topic: topic}); err != nil {
		t.Fatalf("create topics %s and %s.dlq at %s: %v", topic, topic, bootstrap, err)
	}
	return topic
}

// write sends one message and returns it as stored: partition and offset.
func (w *writer) write(topic string, key, value []byte, headers []kafka.Header) record {
	w.t.Helper()
	report := make(chan kafka.Event, 1)
	err := w.p.Produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
		Key:            key,
		Value:          value,
		Headers:        headers,
	}, report)
	if err != nil {
		w.t.Fatalf("writer: produce: %v", err)
	}
	select {
	case e := <-report:
		m := e.(*kafka.Message)
		if m.TopicPartition.Error != nil {
			w.t.Fatalf("writer: delivery: %v", m.TopicPartition.Error)
		}
		return record{Partition: m.TopicPartition.Partition, Offset: int64(m.TopicPartition.Offset),
			Key: key, Value: value, Headers: headers}
	case <-time.After(30 * time.Second):
		w.t.Fatal("writer: no delivery report within 30s")
		return record{}
	}
}

// newID returns a random (version 4) UUID.
func newID() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// withAdmin runs f with an admin client of its own, closed when f returns.
// No admin client outlives a question: one that lived through a broker's
// restart has crashed the test process (librdkafka#4605, in admin requests
// that time out or lose their connection).
func withAdmin(bootstrap string, f func(*kafka.AdminClient) error) error {
	a, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "log_level": 0})
	if err != nil {
		return fmt.Errorf("admin client: %w", err)
	}
	defer a.Close()
	return f(a)
}

// committedOffsets returns the offsets group committed on each partition of
// topic: the next one it will read, negative where it committed none. It
// asks with a consumer of the group that never joins it, not the admin API:
// librdkafka 2.15's admin ListConsumerGroupOffsets crashed this process (a
// segmentation fault in rd_kafka_cgrp_op, from rd_kafka_handle_OffsetFetch,
// in an admin client, which has no consumer group) as a cluster settled.
func committedOffsets(bootstrap, group, topic string) (map[int32]int64, error) {
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": group,
		"enable.auto.commit": false, "log_level": 0})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	md, err := c.GetMetadata(&topic, false, 5000)
	if err != nil {
		return nil, err
	}
	var partitions []kafka.TopicPartition
	for _, p := range md.Topics[topic].Partitions {
		partitions = append(partitions, kafka.TopicPartition{Topic: &topic, Partition: p.ID})
	}
	res, err := c.Committed(partitions, 5000)
	if err != nil {
		return nil, err
	}
	offsets := map[int32]int64{}
	for _, tp := range res {
		if tp.Error != nil {
			return nil, fmt.Errorf("committed offset of %s [%d]: %w", topic, tp.Partition, tp.Error)
		}
		offsets[tp.Partition] = int64(tp.Offset)
	}
	return offsets, nil
}
