package receiver

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/consumer/internal/config"
)

func TestReceiver_recreatesAStalledClient(t *testing.T) {
	// The mock cluster leads the topic on broker 1 and coordinates
	// "test-group" on broker 2. With broker 1 down, brokers 2 and 3 still
	// name it the leader: the client cannot fetch while the metadata says
	// all is well, a stand-in for librdkafka#5430's stuck partition.
	mc := newMockCluster(t, 3, map[string]int{topic: 1, topic + ".dlq": 1})
	const n = 300
	produceSingly(t, mc.BootstrapServers(), n)

	var out syncBuffer
	// Little fetched ahead and a slow handler, so that the leader goes
	// while most events are still to read. The mock cluster's classic
	// groups give a closed member's partitions to the next one only after
	// the session timeout (45 s); its consumer protocol (KIP-848) at once.
	r := newReceiver(t, mc, &out, config.Config{}, kafka.ConfigMap{
		"max.partition.fetch.bytes": 2000, "queued.max.messages.kbytes": 1, "queued.min.messages": 5,
		"auto.commit.interval.ms": 100, "group.protocol": "consumer",
	})
	r.stallAfter = 2 * time.Second
	r.now = func() time.Time { time.Sleep(5 * time.Millisecond); return time.Now() }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	var res Result
	go func() {
		defer close(done)
		var err error
		if res, err = r.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	ids := func() map[string]bool {
		seen := map[string]bool{}
		for _, rec := range out.records(t, "Received: ") {
			seen[rec["id"].(string)] = true
		}
		return seen
	}
	waitFor(t, 20*time.Second, "the first events", func() bool { return len(ids()) >= 20 })
	if err := mc.SetBrokerDown(1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the stall to be seen", func() bool { return len(out.records(t, "Leader stall")) > 0 })
	if err := mc.SetBrokerUp(1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every event", func() bool { return len(ids()) == n })
	cancel()
	<-done
	if res.Recovered < 1 || res.Received < n {
		t.Errorf("result %+v, want every event received and a recovery", res)
	}
	line := out.records(t, "Leader stall")[0]
	client, _ := line["client"].(string)
	broker, _ := line["broker"].(string)
	if line["level"] != "WARN" || line["msg"] != "Leader stall: re-creating the Kafka client" || line["partitions"] != "0" ||
		!strings.HasPrefix(client, "partition 0: no message for ") || !strings.Contains(client, " at position ") ||
		!strings.HasPrefix(broker, "partition 0: leader 1, high watermark 300") {
		t.Errorf("stall line %v", line)
	}
}

func TestReceiver_caughtUpIsNoStall(t *testing.T) {
	mc := mockCluster(t)
	produce(t, mc.BootstrapServers(), goodEvent(1), goodEvent(2), goodEvent(3))
	var out syncBuffer
	r := newReceiver(t, mc, &out, config.Config{}, nil)
	r.stallAfter = time.Second
	var quietSince time.Time
	res := runUntil(t, r, 20*time.Second, func() bool {
		if quietSince.IsZero() && len(out.records(t, "Received: ")) == 3 {
			quietSince = time.Now()
		}
		return !quietSince.IsZero() && time.Since(quietSince) > 4*time.Second
	})
	if res.Recovered != 0 || len(out.records(t, "Leader stall")) != 0 {
		t.Errorf("a consumer with nothing to read for 4s was taken for stalled: %+v", res)
	}
}

// produceSingly writes events 1 to n, one a batch, so that a fetch of a few
// kilobytes takes a few.
func produceSingly(t *testing.T, bootstrap string, n int) {
	t.Helper()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "batch.num.messages": 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	reports := make(chan kafka.Event, 1)
	for i := range n {
		if err := p.Produce(goodEvent(i+1), reports); err != nil {
			t.Fatal(err)
		}
		if m := (<-reports).(*kafka.Message); m.TopicPartition.Error != nil {
			t.Fatal(m.TopicPartition.Error)
		}
	}
}

func TestReceiver_outageLongerThanStallAfterIsNoStall(t *testing.T) {
	// The broker goes away for twice stallAfter with events left to read.
	// Once it is back the client resumes by itself: the check must give it
	// stallAfter from then, not count the outage as a stall.
	mc := mockCluster(t)
	const n = 300
	produceSingly(t, mc.BootstrapServers(), n)
	var out syncBuffer
	const stallAfter = 2 * time.Second
	r := newReceiver(t, mc, &out, config.Config{}, kafka.ConfigMap{
		"max.partition.fetch.bytes": 2000, "queued.max.messages.kbytes": 1, "queued.min.messages": 5,
		"reconnect.backoff.max.ms": 200, // back within a few hundred milliseconds of the broker
	})
	r.stallAfter = stallAfter
	r.now = func() time.Time { time.Sleep(5 * time.Millisecond); return time.Now() }
	received := func() int { return len(out.records(t, "Received: ")) }
	down := false
	res := runUntil(t, r, time.Minute, func() bool {
		if !down && received() >= 20 {
			if err := mc.SetBrokerDown(1); err != nil {
				t.Fatal(err)
			}
			down = true
			time.Sleep(2 * stallAfter)
			if err := mc.SetBrokerUp(1); err != nil {
				t.Fatal(err)
			}
		}
		return received() >= n
	})
	if got := received(); got < n || res.Recovered != 0 {
		t.Errorf("received %d of %d, recovered %d times; want all, and no recovery: %v",
			got, n, res.Recovered, out.records(t, "Leader stall"))
	}
}
