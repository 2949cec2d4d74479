package sender

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The mock cluster keeps a partition's leader on a broker that is down, so
// a fresh metadata request names a leader the client cannot reach: the
// view of a client stuck in a leader stall.
func TestSender_leaderStallRecreatesTheClientAndLosesNothing(t *testing.T) {
	mc := mockCluster(t, 3)
	var out syncBuffer
	const n = 400
	goroutines := runtime.NumGoroutine()
	s := newSender(t, mc, Options{Interval: 10 * time.Millisecond, Count: n, StallAfter: 2 * time.Second, Source: quietSource},
		&out, kafka.ConfigMap{"reconnect.backoff.max.ms": 500})
	leader := leaderOf(t, s)

	ran := runInBackground(context.Background(), s)
	waitDelivered(s)
	if err := mc.SetBrokerDown(leader); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); s.Counts().Recovered == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery within 10s of the leader's outage:\n%s", out.String())
		}
	}
	// The new client reports nothing either while the leader is away: it
	// is not re-created again, which would start the events'
	// message.timeout.ms over and hold them for as long as the outage.
	time.Sleep(3 * 2 * time.Second)
	if err := mc.SetBrokerUp(leader); err != nil {
		t.Fatal(err)
	}
	r := <-ran
	if r.err != nil {
		t.Fatalf("Run: %v\n%s", r.err, out.String())
	}
	if r.res.Attempted != n || r.res.Delivered != n || r.res.Recovered != 1 {
		t.Fatalf("result %+v, want all %d delivered after one recovery", r.res, n)
	}
	// The client library's goroutines end soon after Close returns.
	for deadline := time.Now().Add(time.Second); runtime.NumGoroutine() > goroutines; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after the run, %d before: the old client's were left behind", runtime.NumGoroutine(), goroutines)
		}
	}
	want := `level=WARN msg="Leader stall: re-creating the Kafka client" topic=timestamp client="no delivery report for `
	if got := strings.Count(out.String(), want); int64(got) != r.res.Recovered {
		t.Errorf("%d lines %q for %d recoveries:\n%s", got, want, r.res.Recovered, out.String())
	}
	if !strings.Contains(out.String(), "broker=\"partition 0 led by broker "+strconv.Itoa(leader)+"\"") {
		t.Errorf("the warning does not name the leader the cluster reported:\n%s", out.String())
	}
	seqs := readSequences(t, mc.BootstrapServers(), "timestamp", n, 20*time.Second)
	for seq := 1; seq <= n; seq++ {
		if seqs[seq] == 0 {
			t.Fatalf("event %d is not in the topic", seq)
		}
	}
}

func TestSender_outageIsNoLeaderStall(t *testing.T) {
	mc := mockCluster(t, 1)
	var out syncBuffer
	const n = 300
	s := newSender(t, mc, Options{Interval: 10 * time.Millisecond, Count: n, StallAfter: 2 * time.Second, Source: quietSource},
		&out, kafka.ConfigMap{"reconnect.backoff.max.ms": 500})
	ran := runInBackground(context.Background(), s)
	waitDelivered(s)
	if err := mc.SetBrokerDown(1); err != nil {
		t.Fatal(err)
	}
	// Long enough for a check whose metadata request fails, and one whose
	// request waits for the broker's return.
	time.Sleep(6 * time.Second)
	if err := mc.SetBrokerUp(1); err != nil {
		t.Fatal(err)
	}
	r := <-ran
	if r.err != nil || r.res.Delivered != n || r.res.Recovered != 0 {
		t.Fatalf("result %+v, error %v: want all %d delivered, no recovery\n%s", r.res, r.err, n, out.String())
	}
}

// With linger.ms, events wait at every check; reports keep coming, though.
func TestSender_busyClientIsNoLeaderStall(t *testing.T) {
	mc := mockCluster(t, 1)
	var out syncBuffer
	const n = 3000
	s := newSender(t, mc, Options{Interval: time.Millisecond, Count: n, StallAfter: time.Second, Source: quietSource},
		&out, kafka.ConfigMap{"linger.ms": 100})
	res, err := s.Run(context.Background())
	if err != nil || res.Delivered != n || res.Recovered != 0 {
		t.Fatalf("result %+v, error %v: want all %d delivered, no recovery\n%s", res, err, n, out.String())
	}
}

// leaderOf returns the broker that leads partition 0 of the sender's topic.
func leaderOf(t *testing.T, s *Sender) int {
	t.Helper()
	md, err := s.c.p.GetMetadata(&s.opts.Topic, false, 5000)
	if err != nil {
		t.Fatal(err)
	}
	return int(md.Topics[s.opts.Topic].Partitions[0].Leader)
}

// readSequences reads partition 0 of topic until it has seen sequences 1 to
// n or the timeout passed, and counts the copies of each.
func readSequences(t *testing.T, bootstrap, topic string, n int, timeout time.Duration) map[int]int {
	t.Helper()
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "group.id": "reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Assign([]kafka.TopicPartition{{Topic: &topic, Partition: 0, Offset: kafka.OffsetBeginning}}); err != nil {
		t.Fatal(err)
	}
	seqs := map[int]int{}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		m, err := c.ReadMessage(100 * time.Millisecond)
		if err != nil {
			continue
		}
		seq, _ := strconv.Atoi(header(m, "ce_id"))
		if seqs[seq]++; seqs[seq] == 1 && len(seqs) == n {
			break
		}
	}
	return seqs
}
