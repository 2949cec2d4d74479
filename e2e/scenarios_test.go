package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dc "github.com/ory/dockertest/v3/docker"
)

// Scenario 1: the tutorial itself. Every timestamp the producer sends
// arrives at the consumer once, with the same id and timestamp, in order,
// and with its latency.
func TestTimestamps_arriveInOrderWithLatency(t *testing.T) {
	defer teardownOnPanic()
	k := sharedKafka(t, false)
	producerBin, consumerBin := binaries(t)
	topic, group := provision(t, k.bootstrap, name(t, "topic")), name(t, "group")
	const n = 20

	c := startService(t, consumerBin, "consumer", consumerArgs(k.bootstrap, topic, group,
		"--count", strconv.Itoa(n))...)
	c.waitCount(msgPartitionsAsg, 1, time.Minute)
	p := startService(t, producerBin, "producer", producerArgs(k.bootstrap, topic,
		"--interval", "100ms", "--count", strconv.Itoa(n))...)
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

// producerArgs are the flags of a producer that logs every delivery report,
// which the checker needs.
func producerArgs(bootstrap, topic string, extra ...string) []string {
	return append([]string{"--bootstrap-servers", bootstrap, "--topic", topic, "--log-level", "debug"}, extra...)
}

// consumerArgs are the flags of a consumer of topic in group.
func consumerArgs(bootstrap, topic, group string, extra ...string) []string {
	return append([]string{"--bootstrap-servers", bootstrap, "--topic", topic, "--group", group}, extra...)
}

// waitHandled waits until the consumer runs together handled or
// dead-lettered every message of log, or until the last run handled the
// last message of each partition: a consumer goes in offset order, so what
// it skipped by then stays skipped, and the checker reports it as lost.
func waitHandled(t *testing.T, runs []*service, log []record, timeout time.Duration) {
	t.Helper()
	want := map[position]bool{}
	end := map[int32]int64{}
	for _, r := range log {
		want[position{r.Partition, r.Offset}] = true
		end[r.Partition] = max(end[r.Partition], r.Offset)
	}
	last := runs[len(runs)-1]
	done := func() bool {
		seen := map[position]bool{}
		for _, s := range runs {
			for _, l := range s.log() {
				if (l.is(msgReceived) || l.is(msgDeadLettered)) && l.Partition != nil && l.Offset != nil {
					if pos := (position{*l.Partition, *l.Offset}); want[pos] {
						seen[pos] = true
					}
				}
			}
		}
		if len(seen) == len(want) {
			return true
		}
		for p, o := range end {
			if !seen[position{p, o}] {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(timeout)
	for !done() {
		if !last.running() || time.Now().After(deadline) {
			t.Errorf("%s did not reach the end of the log (%d messages) within %s", last.name, len(want), timeout)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// handledOffsets is the highest offset s handled (received or
// dead-lettered) on each partition.
func handledOffsets(s *service) map[int32]int64 {
	return handledOffsetsBefore(s, time.Now().Add(time.Hour))
}

// handledOffsetsBefore is the highest offset s handled on each partition
// in the lines it logged before t.
func handledOffsetsBefore(s *service, t time.Time) map[int32]int64 {
	handled := map[int32]int64{}
	for _, l := range s.log() {
		if (l.is(msgReceived) || l.is(msgDeadLettered)) && l.Partition != nil && l.Offset != nil && l.Time.Before(t) {
			if o, ok := handled[*l.Partition]; !ok || *l.Offset > o {
				handled[*l.Partition] = *l.Offset
			}
		}
	}
	return handled
}

// beforeFault records the group's committed offsets as a fault begins.
func beforeFault(t *testing.T, bootstrap, group, topic string) fault {
	t.Helper()
	var committed map[int32]int64
	waitUntil(t, 30*time.Second, "committed offsets of "+group+" before a fault", func() (err error) {
		committed, err = committedOffsets(bootstrap, group, topic) // a new client's first connection may fail
		return err
	})
	return fault{at: time.Now(), committed: committed}
}

// lastOffset is the highest offset s logged as received; -1 before any.
func lastOffset(s *service) int64 {
	last := int64(-1)
	for _, l := range s.log() {
		if l.is(msgReceived) && l.Offset != nil {
			last = max(last, *l.Offset)
		}
	}
	return last
}

// logsOf returns the log lines of each run.
func logsOf(runs ...*service) [][]logLine {
	out := make([][]logLine, len(runs))
	for i, s := range runs {
		out[i] = s.log()
	}
	return out
}

// Scenario 2: a steady stream survives the broker being restarted three
// times and killed once: nothing acknowledged is lost, nothing is stored
// twice, the producer still accounts for every event, and the consumer
// commits again after each fault. What it handles again after a fault lies
// between its last commit before the fault and the last event it handled
// before it was given its partitions again (if the broker forgot the
// group's member, the commits it made in between were refused, and those
// events come again), or before the broker was back if it kept them.
func TestBroker_restartsLoseNothing(t *testing.T) {
	defer teardownOnPanic()
	pool := needDocker(t, true)
	producerBin, consumerBin := binaries(t)
	b, err := startBroker(pool, suite.settings.kafkaImage, name(t, "kafka"), false)
	t.Cleanup(func() {
		if t.Failed() {
			logs := b.logs(0)
			t.Logf("last log lines of %s:\n%s", b.name, lastLines(logs, 300))
			keep(t, "kafka.log", logs)
		}
		if err := b.purge(); err != nil {
			t.Errorf("purge %s: %v", b.name, err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	topic, group := provision(t, b.bootstrap, name(t, "topic")), name(t, "group")
	const (
		commitInterval = time.Second
	)

	c := startService(t, consumerBin, "consumer", consumerArgs(b.bootstrap, topic, group,
		"-X", fmt.Sprintf("auto.commit.interval.ms=%d", commitInterval.Milliseconds()),
		"-X", leaderDebug, "--log-level", "debug")...) // the client library's lines come at debug level
	p := startService(t, producerBin, "producer", producerArgs(b.bootstrap, topic, "--interval", "1ms", "-X", leaderDebug)...)
	started := time.Now()
	c.waitCount(msgReceived, 1000, time.Minute)

	faults := []struct {
		what string
		sig  dc.Signal
	}{
		{"restart", dc.SIGTERM},
		{"restart", dc.SIGTERM},
		{"restart", dc.SIGTERM},
		{"kill", dc.SIGKILL},
	}
	var downtimes []string
	var windows []fault
	for i, fault := range faults {
		w := beforeFault(t, b.bootstrap, group, topic)
		took, err := b.restart(fault.sig)
		if err != nil {
			t.Fatalf("fault %d (%s): %v", i+1, fault.what, err)
		}
		ready := time.Now()
		downtimes = append(downtimes, took.Round(100*time.Millisecond).String())
		// Both clients resume. A client that never does is the failure this
		// scenario exists to catch: say so with what the clients logged.
		before, acked := lastOffset(c), p.count(msgDelivered)
		// 90 s: the services' leader-stall guards act after 30 s of a stall, plus their checks and a new client.
		waitResumed(t, fmt.Sprintf("fault %d (%s)", i+1, fault.what), 90*time.Second, b.bootstrap, topic,
			progress{p, func() bool { return p.count(msgDelivered) > acked }},
			progress{c, func() bool { return lastOffset(c) > before }})
		// The consumer commits again: a commit past an event it handled
		// after the broker came back is one made after the fault.
		handled := lastOffset(c)
		c.waitFor(fmt.Sprintf("a commit past offset %d after fault %d", handled, i+1), time.Minute, func() bool {
			off, err := committedOffsets(b.bootstrap, group, topic)
			return err == nil && off[0] > handled
		})
		// The consumer's position can go back only when it is given its
		// partitions again (the broker forgot the member, so the commits
		// it made meanwhile were refused). H is what it handled before
		// that, or before the broker was back if it kept its partitions.
		cut := ready
		if assigned, ok := c.lastBetween(msgPartitionsAsg, w.at, time.Now()); ok {
			cut = assigned.Time
		}
		w.handled = handledOffsetsBefore(c, cut)
		windows = append(windows, w)
		// The stream goes on steadily before the next fault: what queued
		// while the broker was down is acknowledged, then 3 s more.
		p.waitCount(msgDelivered, p.count(msgSending)+3000, 2*time.Minute)
	}
	p.stop(15 * time.Second)
	duration := time.Since(started)

	log := readTopic(t, b.bootstrap, topic)
	waitHandled(t, []*service{c}, log, 2*time.Minute)
	c.stop(15 * time.Second)

	f := check(observation{producers: logsOf(p), consumers: logsOf(c), log: log, faults: windows})
	rate := float64(f.Sent) / duration.Seconds()
	f.add("restarts", 3)
	f.add("kills", 1)
	f.add("rate", fmt.Sprintf("%.0f/s", rate))
	f.add("downtime", strings.Join(downtimes, ","))
	f.add("recovered", recoveries(p, msgProducerStop)+recoveries(c, msgConsumerStop))
	for _, s := range []*service{p, c} {
		for _, l := range s.outputWith(msgLeaderStall) {
			t.Logf("%s: %s", s.name, l)
		}
	}
	assertFigures(t, f, limits{})
}

// recoveries is how often s re-created its Kafka client after the client
// stalled (librdkafka#5430), as its final line stopMsg says.
func recoveries(s *service, stopMsg string) int {
	if l, ok := s.last(stopMsg); ok && l.Recovered != nil {
		return int(*l.Recovered)
	}
	return 0
}

// Scenario 3: consumers killed mid-stream and restarted in the same group
// miss nothing; what they handle again lies between their last commit and
// the last event they handled.
func TestConsumer_killedLosesNothing(t *testing.T) {
	defer teardownOnPanic()
	k := sharedKafka(t, true)
	producerBin, consumerBin := binaries(t)
	topic, group := provision(t, k.bootstrap, name(t, "topic")), name(t, "group")
	const (
		commitInterval = time.Second
		kills          = 2
	)
	args := consumerArgs(k.bootstrap, topic, group,
		"-X", fmt.Sprintf("auto.commit.interval.ms=%d", commitInterval.Milliseconds()),
		// A killed member leaves the group when its session times out. With
		// the classic protocol the client sets it, and the broker's minimum
		// keeps the restarted consumer's wait short; the consumer protocol's
		// is the broker's own, 45 s at least.
		"--group-protocol", "classic", "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=1000")

	p := startService(t, producerBin, "producer", producerArgs(k.bootstrap, topic, "--interval", "2ms")...)
	runs := []*service{startService(t, consumerBin, "consumer#1", args...)}
	var windows []fault
	for i := range kills {
		cur := runs[len(runs)-1]
		// Killed after several commits, so that what it handled since the
		// last one is a part of what it handled, not all of it.
		cur.waitFor("4s of steady consumption", 2*time.Minute, func() bool {
			first, ok := cur.first(msgReceived)
			return ok && time.Since(first.Time) > 4*commitInterval && cur.count(msgReceived) >= 500
		})
		w := beforeFault(t, k.bootstrap, group, topic)
		cur.signal(syscall.SIGKILL)
		cur.wait(10 * time.Second)
		w.handled = handledOffsets(cur)
		windows = append(windows, w)
		runs = append(runs, startService(t, consumerBin, fmt.Sprintf("consumer#%d", i+2), args...))
	}
	runs[len(runs)-1].waitCount(msgReceived, 500, 2*time.Minute)
	p.stop(15 * time.Second)

	log := readTopic(t, k.bootstrap, topic)
	waitHandled(t, runs, log, 2*time.Minute)
	runs[len(runs)-1].stop(15 * time.Second)

	f := check(observation{producers: logsOf(p), consumers: logsOf(runs...), log: log, faults: windows})
	f.add("kills", kills)
	assertFigures(t, f, limits{})
}

// Scenario 4: a producer stopped with SIGTERM mid-stream delivers every
// event it accepted before it exits, within its flush timeout, and exits 0.
func TestProducer_stoppedDeliversEverythingAccepted(t *testing.T) {
	defer teardownOnPanic()
	k := sharedKafka(t, true)
	producerBin, consumerBin := binaries(t)
	topic, group := provision(t, k.bootstrap, name(t, "topic")), name(t, "group")

	c := startService(t, consumerBin, "consumer", consumerArgs(k.bootstrap, topic, group)...)
	p := startService(t, producerBin, "producer", producerArgs(k.bootstrap, topic,
		"--interval", "0", "--count", "100000000")...)
	p.waitCount(msgSending, 20000, time.Minute)
	stopped := time.Now()
	p.signal(syscall.SIGTERM)
	if code := p.wait(15 * time.Second); code != 0 {
		t.Errorf("producer exited with %d after SIGTERM; want 0", code)
	}
	stopTook := time.Since(stopped)
	if stopTook > 4*time.Second {
		t.Errorf("producer took %s to stop; its flush and purge are bounded by 3s", stopTook)
	}

	log := readTopic(t, k.bootstrap, topic)
	waitHandled(t, []*service{c}, log, 2*time.Minute)
	c.stop(15 * time.Second)

	f := check(observation{producers: logsOf(p), consumers: logsOf(c), log: log})
	// The flush's work: events accepted before SIGTERM, delivered after it.
	flushed := 0
	for _, l := range p.log() {
		if l.is(msgDelivered) && l.Time.After(stopped) {
			flushed++
		}
	}
	f.add("delivered_after_sigterm", flushed)
	f.add("stop_took", stopTook.Round(time.Millisecond))
	if f.Sent != f.Acked {
		t.Errorf("producer accepted %d events but %d were delivered", f.Sent, f.Acked)
	}
	assertFigures(t, f, limits{})
}
