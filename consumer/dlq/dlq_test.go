package dlq

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func TestWriter_boundsTheErrorHeader(t *testing.T) {
	mc, err := kafka.NewMockCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	if err := mc.CreateTopic("t.dlq", 1, 1); err != nil {
		t.Fatal(err)
	}
	w, err := New("t.dlq", kafka.ConfigMap{"bootstrap.servers": mc.BootstrapServers()}, 0, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(0)
	src := "t"
	m := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &src, Partition: 3, Offset: 42}, Value: []byte("v")}
	report := make(chan kafka.Event, 1)
	// A reason of 3,000 bytes whose cut would split a two-byte character.
	if err := w.Send(m, errors.New(strings.Repeat("x", MaxErrorBytes-1)+strings.Repeat("é", 1000)), report); err != nil {
		t.Fatal(err)
	}
	got := (<-report).(*kafka.Message)
	if got.TopicPartition.Error != nil {
		t.Fatal(got.TopicPartition.Error)
	}
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": mc.BootstrapServers(), "group.id": "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dlqTopic := "t.dlq"
	if err := c.Assign([]kafka.TopicPartition{{Topic: &dlqTopic, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	d, err := c.ReadMessage(10e9)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{HeaderError: strings.Repeat("x", MaxErrorBytes-1), HeaderTopic: "t", HeaderPartition: "3", HeaderOffset: "42"}
	for _, h := range d.Headers {
		if want[h.Key] != string(h.Value) {
			t.Errorf("header %s = %.40q (%d bytes), want %.40q", h.Key, h.Value, len(h.Value), want[h.Key])
		}
	}
	if len(d.Headers) != 4 {
		t.Errorf("%d headers, want 4", len(d.Headers))
	}
}
