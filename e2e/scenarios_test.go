package e2e

import (
	"slices"
	"strconv"
	"testing"
	"time"
)

// Scenario 1: the tutorial itself. Every timestamp the producer sends
// arrives at the consumer once, with the same id and timestamp, in order,
// and with its latency.
func TestTimestamps_arriveInOrderWithLatency(t *testing.T) {
	defer teardownOnPanic()
	k := sharedKafka(t, false)
	producerBin, consumerBin := binaries(t)
	topic, group := name(t, "topic"), name(t, "group")
	const n = 20

	c := startService(t, consumerBin, "consumer", "--bootstrap-servers", k.bootstrap,
		"--topic", topic, "--group", group, "--count", strconv.Itoa(n))
	c.waitCount(msgPartitionsAsg, 1, time.Minute)
	p := startService(t, producerBin, "producer", "--bootstrap-servers", k.bootstrap,
		"--topic", topic, "--interval", "100ms", "--count", strconv.Itoa(n), "--log-level", "debug")
	if code := p.wait(time.Minute); code != 0 {
		t.Errorf("producer exited with %d; want 0", code)
	}
	if code := c.wait(time.Minute); code != 0 {
		t.Errorf("consumer exited with %d; want 0", code)
	}

	f := check(observation{
		producers: [][]logLine{p.log()},
		consumers: [][]logLine{c.log()},
		log:       readTopic(t, k.bootstrap, topic),
	})
	var latencies []time.Duration
	for _, l := range c.log() {
		if !l.is(msgReceived) {
			continue
		}
		if l.Latency == nil || *l.Latency <= 0 {
			t.Errorf("%q of event %s reports no positive latency", l.Msg, l.ID)
			continue
		}
		latencies = append(latencies, time.Duration(*l.Latency))
	}
	if len(latencies) != n {
		t.Errorf("%d events with a latency; want %d", len(latencies), n)
	}
	if len(latencies) > 0 {
		slices.Sort(latencies)
		f.add("latency_p50", latencies[len(latencies)/2].Round(time.Microsecond))
		f.add("latency_max", latencies[len(latencies)-1].Round(time.Microsecond))
		if worst := latencies[len(latencies)-1]; worst > 5*time.Second {
			t.Errorf("worst latency %s; a local broker delivers within 5s", worst)
		}
	}
	if f.Received != n {
		t.Errorf("consumer received %d events; want %d", f.Received, n)
	}
	assertFigures(t, f, limits{})
}
