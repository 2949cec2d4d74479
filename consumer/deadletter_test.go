package main

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/consumer/internal/event"
)

// Every message that cannot be decoded goes to the dead-letter topic byte
// for byte, key and headers kept, with dlq.* headers that say why and where
// from; the events around them are received, and every offset is committed.
func TestRun_deadLettersMalformedMessagesByteForByte(t *testing.T) {
	mc := mockCluster(t)
	huge := `{"timestamp":"10:00:00","pad":"` + strings.Repeat("x", event.MaxValueBytes) + `"}`
	bad := []*kafka.Message{
		rawMessage("k1", "not json"),
		rawMessage("", ""),
		rawMessage("", `{"time":"10:00:00"}`),
		rawMessage("", `{"timestamp":42}`),
		rawMessage("", `"25:61:00"`),
		rawMessage("", "[1,2]"),
		rawMessage("", huge),
		rawMessage("k2", `{"timestamp":"10:00:00"}`, kafka.Header{Key: "ce_time", Value: []byte("yesterday")}),
		rawMessage("", "\xff\xfe\x00binary"),
	}
	var all []*kafka.Message
	for i, b := range bad {
		all = append(all, goodEvent(i+1), b)
	}
	good := len(bad) + 1
	all = append(all, goodEvent(good))
	produce(t, mc.BootstrapServers(), nil, all...)

	c := start(t, "--bootstrap-servers", mc.BootstrapServers(), "--group", "test-group", "-X", "auto.commit.interval.ms=100")
	waitFor(t, 20*time.Second, "every event", func() bool { return len(ids(t, c.out.String())) == good })
	waitFor(t, 10*time.Second, "the commit of every offset", func() bool {
		return committed(t, mc.BootstrapServers(), "test-group", source, 0) == int64(len(all))
	})
	if code := c.stop(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if got, want := ids(t, c.out.String()), seq(1, good); !slices.Equal(got, want) {
		t.Errorf("received %v, want %v", got, want)
	}
	if s := c.summary(); s["received"] != float64(good) || s["dead_lettered"] != float64(len(bad)) {
		t.Errorf("summary %v, want %d received and %d dead-lettered", s, good, len(bad))
	}
	if n := len(records(t, c.out.String(), "Dead-lettered")); n != len(bad) {
		t.Errorf("%d dead-letter lines for %d bad messages", n, len(bad))
	}
	dead := readAll(t, mc.BootstrapServers(), source+".dlq", 0, len(bad))
	if len(dead) != len(bad) {
		t.Fatalf("dead-letter topic holds %d messages, want %d", len(dead), len(bad))
	}
	for i, d := range dead {
		b := bad[i]
		if !bytes.Equal(d.Value, b.Value) || !bytes.Equal(d.Key, b.Key) {
			t.Errorf("dead letter %d: key %q value %.40q, want the original key %q value %.40q", i, d.Key, d.Value, b.Key, b.Value)
		}
		for _, h := range b.Headers {
			if got := header(d, h.Key); got != string(h.Value) {
				t.Errorf("dead letter %d: original header %s = %q, want %q", i, h.Key, got, h.Value)
			}
		}
		wantOffset := strconv.Itoa(2*i + 1) // bad messages sit between good ones
		if !strings.HasPrefix(header(d, "dlq.error"), "invalid event: ") || header(d, "dlq.topic") != source ||
			header(d, "dlq.partition") != "0" || header(d, "dlq.offset") != wantOffset {
			t.Errorf("dead letter %d headers %v: want the error, topic %s, partition 0, offset %s", i, d.Headers, source, wantOffset)
		}
	}
}

func TestRun_deadLettersAMessageOfAlmostAMegabyte(t *testing.T) {
	mc := mockCluster(t)
	// The mock broker takes messages of any size; a real one takes up to
	// 1,048,588 bytes by default. Another client's producer sends what the
	// broker takes.
	big := rawMessage("big", strings.Repeat("x", 1_040_000), kafka.Header{Key: "trace", Value: []byte("t-1")})
	produce(t, mc.BootstrapServers(), kafka.ConfigMap{"message.max.bytes": 1048588}, big, goodEvent(1))
	// The event after the big message arrives only once the big one was written.
	c := start(t, "--bootstrap-servers", mc.BootstrapServers(), "--count", "1")
	if code := c.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if s := c.summary(); s["received"] != 1.0 || s["dead_lettered"] != 1.0 {
		t.Errorf("summary %v, want the big message dead-lettered and the event after it received", s)
	}
	dead := readAll(t, mc.BootstrapServers(), source+".dlq", 0, 1)
	if len(dead) != 1 || !bytes.Equal(dead[0].Value, big.Value) || string(dead[0].Key) != "big" || header(dead[0], "trace") != "t-1" {
		t.Fatalf("dead-letter topic holds %d messages; want the big one byte for byte", len(dead))
	}
}

// Dead-letter before store: while the copy cannot be written, its partition
// is paused (no later event is handled, no later offset committed) and the
// consumer keeps polling, so that the group keeps it beyond
// max.poll.interval.ms. Once written, the events after it arrive, each once.
func TestRun_pausesThePartitionUntilItsDeadLetterIsWritten(t *testing.T) {
	// Three brokers: the mock cluster leads partition p on broker p%3+1. The
	// topic lives on broker 1; the dead letter goes to partition 2 of the
	// dead-letter topic, on broker 3, which is down for longer than
	// max.poll.interval.ms.
	mc := newCluster(t, 3, map[string]int{source: 1, source + ".dlq": 3})
	bad := rawMessage(keyOn(2, 3), "not json", kafka.Header{Key: "trace", Value: []byte("t-1")})
	produce(t, mc.BootstrapServers(), nil, append([]*kafka.Message{goodEvent(1), bad}, events(2, 5, 0)...)...)
	if err := mc.SetBrokerDown(3); err != nil {
		t.Fatal(err)
	}
	c := start(t, "--bootstrap-servers", mc.BootstrapServers(), "--group", "test-group", "-X", "max.poll.interval.ms=6000",
		"-X", "auto.commit.interval.ms=100", "-X", "message.timeout.ms=1000")
	waitFor(t, 20*time.Second, "the first event", func() bool { return len(ids(t, c.out.String())) >= 1 })
	time.Sleep(8 * time.Second) // beyond max.poll.interval.ms
	if n := len(records(t, c.out.String(), "Dead-letter write failed, retrying")); n == 0 {
		t.Errorf("no failed write reported while the dead-letter topic was away")
	}
	if got := ids(t, c.out.String()); len(got) != 1 {
		t.Errorf("received %v while the message before them was not dead-lettered, want only event 1", got)
	}
	if got := committed(t, mc.BootstrapServers(), "test-group", source, 0); got != 1 {
		t.Errorf("committed offset %d while the dead-letter write fails, want 1", got)
	}
	if err := mc.SetBrokerUp(3); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "every event", func() bool { return len(ids(t, c.out.String())) == 5 })
	waitFor(t, 10*time.Second, "the commit of every offset", func() bool {
		return committed(t, mc.BootstrapServers(), "test-group", source, 0) == 6
	})
	if code := c.stop(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if got := ids(t, c.out.String()); !slices.Equal(got, seq(1, 5)) {
		t.Errorf("received %v: want each event once, in order, after the paused partition resumed", got)
	}
	if s := c.summary(); s["received"] != 5.0 || s["dead_lettered"] != 1.0 {
		t.Errorf("summary %v, want 5 received and 1 dead-lettered", s)
	}
	if revoked := records(t, c.out.String(), "Partitions revoked"); len(revoked) > 1 { // the one of the close
		t.Errorf("partitions revoked while the write failed: the member was evicted: %v", revoked)
	}
	dead := readAll(t, mc.BootstrapServers(), source+".dlq", 2, 1)
	if len(dead) != 1 || string(dead[0].Value) != "not json" || header(dead[0], "trace") != "t-1" || header(dead[0], "dlq.offset") != "1" {
		t.Errorf("dead-letter partition 2 holds %d messages, want the bad one once, byte for byte", len(dead))
	}
}

// A dead letter still in flight when its partition goes (here: the consumer
// stops) is waited for; once written, its offset is committed with the
// revoke's commit, so that the partition's next owner does not write it
// again.
func TestRun_aDeadLetterInFlightAsItsPartitionGoesIsWrittenOnce(t *testing.T) {
	// Two brokers: the topic and the group's coordinator (the mock cluster
	// coordinates "test-group" on broker 1 of 2) answer at once; the dead
	// letters go to partition 1 of the dead-letter topic, on broker 2, which
	// answers each request after 1.2 s: a copy's acknowledgement comes after
	// its partition was revoked.
	mc := newCluster(t, 2, map[string]int{source: 1, source + ".dlq": 2})
	key := keyOn(1, 2)
	// The first bad message warms the dead-letter producer up (connection,
	// metadata); the second is in flight when the consumer stops.
	produce(t, mc.BootstrapServers(), nil, rawMessage(key, "not json"), goodEvent(1), rawMessage(key, "not json either"), goodEvent(2))
	if err := mc.SetRoundtripDuration(2, 1200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	group := "test-group"
	a := start(t, "--bootstrap-servers", mc.BootstrapServers(), "--group", group)
	waitFor(t, 30*time.Second, "the first event", func() bool { return len(ids(t, a.out.String())) == 1 })
	time.Sleep(300 * time.Millisecond) // the second bad message, in the same fetch, is handed over and its copy sent
	if code := a.stop(); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if s := a.summary(); s["received"] != 1.0 || s["dead_lettered"] != 2.0 {
		t.Errorf("summary %v, want 1 received and both dead letters counted, the one in flight too", s)
	}
	if got := committed(t, mc.BootstrapServers(), group, source, 0); got != 3 {
		t.Errorf("committed offset %d, want 3: past the second dead-lettered message", got)
	}
	if err := mc.SetRoundtripDuration(2, 0); err != nil {
		t.Fatal(err)
	}
	// The partition's next owner starts after the bad message.
	b := start(t, "--bootstrap-servers", mc.BootstrapServers(), "--group", group, "--count", "1")
	if code := b.wait(30 * time.Second); code != 0 {
		t.Fatalf("second run: exit code %d, want 0", code)
	}
	if got := ids(t, b.out.String()); !slices.Equal(got, []string{"2"}) {
		t.Errorf("second run received %v, want event 2 only", got)
	}
	dead := readAll(t, mc.BootstrapServers(), source+".dlq", 1, 2)
	if len(dead) != 2 || string(dead[0].Value) != "not json" || string(dead[1].Value) != "not json either" {
		t.Errorf("dead-letter topic holds %d messages, want each bad message once", len(dead))
	}
}

// The shutdown keeps to its budget even when nothing can end: the group's
// coordinator and the dead letter's partition leader are gone.
func TestRun_stopsInTimeWithTheCoordinatorGone(t *testing.T) {
	// As above, the topic on broker 1, the dead letter's partition on broker
	// 3; the mock cluster coordinates "test-group" on broker 2.
	mc := newCluster(t, 3, map[string]int{source: 1, source + ".dlq": 3})
	produce(t, mc.BootstrapServers(), nil, goodEvent(1), rawMessage(keyOn(2, 3), "not json"))
	if err := mc.SetBrokerDown(3); err != nil {
		t.Fatal(err)
	}
	c := start(t, "--bootstrap-servers", mc.BootstrapServers(), "--group", "test-group")
	waitFor(t, 20*time.Second, "the first event", func() bool { return len(ids(t, c.out.String())) == 1 })
	if err := mc.SetBrokerDown(2); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	code := c.stop()
	t.Logf("ended %s after the stop signal", time.Since(begin).Round(time.Millisecond))
	// closeBudget to close the clients, and a little for the rest.
	if took := time.Since(begin); took > closeBudget+2*time.Second {
		t.Errorf("run took %s to end after the stop signal, want at most %s and a little", took.Round(time.Millisecond), closeBudget)
	}
	if code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
}
