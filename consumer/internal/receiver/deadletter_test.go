package receiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/consumer/internal/config"
)

func TestReceiver_deadLettersAMessageOfAlmostAMegabyte(t *testing.T) {
	mc := mockCluster(t)
	// The mock broker takes messages of any size; a real one takes up to
	// 1,048,588 bytes by default, as the broker default the fake admin
	// reports does. Another client's producer sends what the broker takes.
	big := rawMessage("big", strings.Repeat("x", 1_040_000), kafka.Header{Key: "trace", Value: []byte("t-1")})
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": mc.BootstrapServers(), "message.max.bytes": 1048588})
	if err != nil {
		t.Fatal(err)
	}
	reports := make(chan kafka.Event, 2)
	for _, m := range []*kafka.Message{big, goodEvent(1)} {
		if err := p.Produce(m, reports); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if m := (<-reports).(*kafka.Message); m.TopicPartition.Error != nil {
			t.Fatal(m.TopicPartition.Error)
		}
	}
	p.Close()

	var out syncBuffer
	// The event after the big message arrives only once the big one was written.
	r := newReceiver(t, mc, &out, config.Config{Count: 1}, nil)
	if err := r.CheckTopics(context.Background()); err != nil {
		t.Fatalf("CheckTopics: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := r.Run(ctx)
	if err != nil || res.DeadLettered != 1 || res.Received != 1 {
		t.Fatalf("Run = %+v, %v; want the big message dead-lettered and the event after it received", res, err)
	}
	dead := readAll(t, mc.BootstrapServers(), topic+".dlq", 0, 1)
	if len(dead) != 1 || !bytes.Equal(dead[0].Value, big.Value) || string(dead[0].Key) != "big" || header(dead[0], "trace") != "t-1" {
		t.Fatalf("dead-letter topic holds %d messages; want the big one byte for byte", len(dead))
	}
}

func TestReceiver_stopsWhenTheDeadLetterTopicRefuses(t *testing.T) {
	mc := mockCluster(t)
	// The dead-letter producer takes at most 5,000 bytes here, as a broker
	// whose dead-letter topic was made too small would.
	produce(t, mc.BootstrapServers(), goodEvent(1), goodEvent(2), rawMessage("", strings.Repeat("x", 10_000)), goodEvent(3))
	var out syncBuffer
	r := newReceiver(t, mc, &out, config.Config{}, kafka.ConfigMap{"message.max.bytes": 5000, "auto.commit.interval.ms": 100})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := r.Run(ctx)
	want := `cannot dead-letter offset 2 of timestamp[0] to "timestamp.dlq": Broker: Message size too large (MSG_SIZE_TOO_LARGE)`
	if err == nil || err.Error() != want {
		t.Fatalf("Run error %v, want %s", err, want)
	}
	if res.Received != 2 || res.DeadLettered != 0 {
		t.Errorf("result %+v, want the two events before the message received", res)
	}
	if got := committed(t, mc.BootstrapServers(), "test-group"); got != 2 {
		t.Errorf("committed offset %d, want 2: the refused message must come again", got)
	}
}

// keyOn is a message key that librdkafka's default partitioner puts on
// partition p of n.
func keyOn(p, n uint32) string {
	for i := 0; ; i++ {
		k := "key-" + strconv.Itoa(i)
		if crc32.ChecksumIEEE([]byte(k))%n == p {
			return k
		}
	}
}

func TestReceiver_keepsPollingWhileTheDeadLetterTopicIsAway(t *testing.T) {
	// Three brokers: the mock cluster leads partition p on broker p%3+1,
	// and coordinates "test-group" on broker 2. The topic lives on broker
	// 1; the dead letter goes to partition 2 of the dead-letter topic, on
	// broker 3, which is down for longer than max.poll.interval.ms.
	mc := newMockCluster(t, 3, map[string]int{topic: 1, topic + ".dlq": 3})
	bad := rawMessage(keyOn(2, 3), "not json", kafka.Header{Key: "trace", Value: []byte("t-1")})
	msgs := []*kafka.Message{goodEvent(1), bad}
	for i := 2; i <= 5; i++ {
		msgs = append(msgs, goodEvent(i))
	}
	produce(t, mc.BootstrapServers(), msgs...)
	if err := mc.SetBrokerDown(3); err != nil {
		t.Fatal(err)
	}

	var out syncBuffer
	r := newReceiver(t, mc, &out, config.Config{}, kafka.ConfigMap{
		"max.poll.interval.ms": 6000, "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
		"auto.commit.interval.ms": 100, "message.timeout.ms": 1000,
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var res Result
	go func() {
		var err error
		res, err = r.Run(ctx)
		done <- err
	}()
	waitFor(t, 20*time.Second, "the first event", func() bool { return len(out.records(t, "Received: ")) >= 1 })
	time.Sleep(8 * time.Second)
	if n := len(out.records(t, "Dead-letter write failed, retrying")); n == 0 {
		t.Errorf("no failed write reported while the dead-letter topic was away")
	}
	if n := len(out.records(t, "Received: ")); n != 1 {
		t.Errorf("%d events received while the message before them was not dead-lettered, want 1", n)
	}
	if got := committed(t, mc.BootstrapServers(), "test-group"); got != 1 {
		t.Errorf("committed offset %d while the dead-letter write fails, want 1", got)
	}
	if err := mc.SetBrokerUp(3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "every event", func() bool { return len(out.records(t, "Received: ")) == 5 })
	waitFor(t, 10*time.Second, "the commit of every offset", func() bool { return committed(t, mc.BootstrapServers(), "test-group") == 6 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.DeadLettered != 1 || res.Received != 5 {
		t.Errorf("result %+v, want 5 received and 1 dead-lettered", res)
	}
	for i, rec := range out.records(t, "Received: ") {
		if rec["id"] != strconv.Itoa(i+1) {
			t.Errorf("event %d has id %v: each event once, in order, after the paused partition resumed", i, rec["id"])
		}
	}
	if revoked := out.records(t, "Partitions revoked"); len(revoked) > 1 { // the one of Close
		t.Errorf("partitions revoked while the write failed: the member was evicted: %v", revoked)
	}
	if dead := readAll(t, mc.BootstrapServers(), topic+".dlq", 2, 1); len(dead) != 1 || string(dead[0].Value) != "not json" || header(dead[0], "trace") != "t-1" ||
		header(dead[0], "dlq.offset") != "1" {
		t.Errorf("dead-letter partition 2 holds %d messages, want the bad one once, byte for byte", len(dead))
	}
}

// waitFor waits until cond holds, or fails the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s in vain", timeout, what)
		}
	}
}

func TestReceiver_closeKeepsToItsBudget(t *testing.T) {
	// As in the test above, with the group's coordinator (broker 2) and the
	// dead-letter partition's leader (broker 3) gone before Close: a
	// commit, a group to leave and a write to flush, none of which can end.
	mc := newMockCluster(t, 3, map[string]int{topic: 1, topic + ".dlq": 3})
	produce(t, mc.BootstrapServers(), goodEvent(1), rawMessage(keyOn(2, 3), "not json"))
	if err := mc.SetBrokerDown(3); err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	r := newReceiver(t, mc, &out, config.Config{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		_, _ = r.Run(ctx)
		close(done)
	}()
	waitFor(t, 20*time.Second, "the first event", func() bool { return len(out.records(t, "Received: ")) == 1 })
	if err := mc.SetBrokerDown(2); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cancel()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
	}
	if took := time.Since(start); took > shutdownBudget+500*time.Millisecond {
		t.Errorf("Run took %s to end after the context did, want at most the budget of %s", took.Round(time.Millisecond), shutdownBudget)
	}
}

func TestReceiver_givesUpADeadLetterWhosePartitionGoes(t *testing.T) {
	mc := mockCluster(t)
	var out syncBuffer
	r := newReceiver(t, mc, &out, config.Config{}, nil)
	t.Cleanup(r.Close)
	tp := kafka.TopicPartition{Topic: new(topic), Partition: 0, Offset: 7}
	d := &deadLetter{m: &kafka.Message{TopicPartition: tp}, reason: errors.New("bad"), report: make(chan kafka.Event, 1)}
	r.pending[0] = d
	if err := r.rebalanced(r.c, kafka.RevokedPartitions{Partitions: []kafka.TopicPartition{tp}}); err != nil {
		t.Fatal(err)
	}
	// The write's report comes after the partition went: its next owner
	// reads the message again, so this consumer must not count it done.
	d.report <- &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: new(topic + ".dlq")}}
	if err := r.deadLetters(); err != nil {
		t.Fatal(err)
	}
	r.store()
	if len(r.pending) != 0 || r.result().DeadLettered != 0 || strings.Contains(out.String(), "Offsets not stored") {
		t.Errorf("%d writes pending, %d dead-lettered after the partition was revoked; want the write given up", len(r.pending), r.result().DeadLettered)
	}
}

func TestDLQHeaders_boundTheError(t *testing.T) {
	src := "t"
	m := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &src, Partition: 3, Offset: 42}, Value: []byte("v"),
		Headers: []kafka.Header{{Key: "trace", Value: []byte("t-1")}}}
	// A reason of 3,000 bytes whose cut would split a two-byte character.
	hs := dlqHeaders(m, errors.New(strings.Repeat("x", maxErrorBytes-1)+strings.Repeat("é", 1000)))
	want := []kafka.Header{{Key: "trace", Value: []byte("t-1")}, {Key: "dlq.error", Value: []byte(strings.Repeat("x", maxErrorBytes-1))},
		{Key: "dlq.topic", Value: []byte("t")}, {Key: "dlq.partition", Value: []byte("3")}, {Key: "dlq.offset", Value: []byte("42")}}
	if fmt.Sprint(hs) != fmt.Sprint(want) {
		t.Errorf("headers %.200v, want %.200v", hs, want)
	}
}
