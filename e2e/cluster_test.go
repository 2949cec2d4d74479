package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/event-driven-go/kafka-go/internal/stack"
	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
)

// cluster is the three nodes of docker-compose.cluster.yml, started as
// users start them, under a project of the test's own on free host ports.
type cluster struct {
	pool      *dockertest.Pool
	project   string
	compose   []string
	env       []string
	bootstrap string
}

// startCluster starts the cluster and waits until its three brokers serve;
// the project goes away with the test.
func startCluster(t *testing.T, pool *dockertest.Pool) *cluster {
	t.Helper()
	compose, err := stack.ComposeCommand()
	if err != nil {
		t.Fatal(err)
	}
	ports, err := stack.FreePorts(3)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{pool: pool, project: name(t, "cluster"), compose: compose}
	c.env = append(composeFileEnv(t, c.project, repo.ClusterComposeFile()), "KAFKA_IMAGE="+suite.settings.kafkaImage)
	var addrs []string
	for i, p := range ports {
		c.env = append(c.env, fmt.Sprintf("KAFKA_CLUSTER_PORT_%d=%d", i+1, p))
		addrs = append(addrs, fmt.Sprintf("localhost:%d", p))
	}
	c.bootstrap = strings.Join(addrs, ",")
	t.Cleanup(func() {
		if t.Failed() {
			for n := int32(1); n <= 3; n++ {
				logs := containerLogs(pool, c.container(t, n), 0)
				t.Logf("kafka-%d, its group coordinator's lines:\n%s\nits last log lines:\n%s", n, linesWith(logs, "[GroupId ", 300), lastLines(logs, 40))
				keep(t, fmt.Sprintf("kafka-%d.log", n), logs)
			}
		}
		if out, err := c.run(2*time.Minute, "down", "--volumes", "--remove-orphans"); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
	})
	started := time.Now()
	if out, err := c.run(5*time.Minute, "up", "--detach", "kafka-1", "kafka-2", "kafka-3"); err != nil {
		t.Fatalf("cluster up: %v\n%s%s", err, out, imageHint(pool, suite.settings.kafkaImage))
	}
	waitUntil(t, 2*time.Minute, "three brokers serving", func() error {
		md, err := c.metadata(nil)
		if err == nil && len(md.Brokers) != 3 {
			err = fmt.Errorf("%d brokers", len(md.Brokers))
		}
		if err == nil {
			err = roundTrip(c.bootstrap, 0) // a produce acknowledged by the replicas
		}
		return err
	})
	t.Logf("cluster %s serving after %s at %s", c.project, time.Since(started).Round(100*time.Millisecond), c.bootstrap)
	return c
}

// run runs a compose command on the cluster's project.
func (c *cluster) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.compose[0], append(c.compose[1:], args...)...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// container is the id of node n's container.
func (c *cluster) container(t *testing.T, n int32) string {
	return projectContainer(t, c.pool, c.project, fmt.Sprintf("kafka-%d", n))
}

// stop stops node n: SIGTERM and a controlled shutdown, or SIGKILL, a crash.
func (c *cluster) stop(t *testing.T, n int32, sig dc.Signal) {
	t.Helper()
	id := c.container(t, n)
	if err := c.pool.Client.KillContainer(dc.KillContainerOptions{ID: id, Signal: sig}); err != nil {
		t.Fatalf("signal kafka-%d: %v", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.pool.Client.WaitContainerWithContext(id, ctx); err != nil {
		t.Fatalf("wait for kafka-%d to stop: %v", n, err)
	}
}

// start starts node n again.
func (c *cluster) start(t *testing.T, n int32) {
	t.Helper()
	if err := c.pool.Client.StartContainer(c.container(t, n), nil); err != nil {
		t.Fatalf("start kafka-%d: %v", n, err)
	}
}

// metadata asks the cluster for topic's metadata (nil: of every topic).
func (c *cluster) metadata(topic *string) (md *kafka.Metadata, err error) {
	err = withAdmin(c.bootstrap, func(a *kafka.AdminClient) error {
		md, err = a.GetMetadata(topic, topic == nil, 5000)
		return err
	})
	return md, err
}

// topic describes topic: each partition's leader and number of replicas.
func (c *cluster) topic(topic string) (leaders map[int32]int32, replicas map[int32]int, err error) {
	md, err := c.metadata(&topic)
	if err != nil {
		return nil, nil, err
	}
	tm := md.Topics[topic]
	if tm.Error.Code() != kafka.ErrNoError {
		return nil, nil, tm.Error
	}
	leaders, replicas = map[int32]int32{}, map[int32]int{}
	for _, p := range tm.Partitions {
		leaders[p.ID], replicas[p.ID] = p.Leader, len(p.Replicas)
	}
	return leaders, replicas, nil
}

// waitInSync waits until every partition of every topic, the internal ones
// included, has a leader and all its replicas in sync, and the controller
// would place a new topic's three copies (it counts no node as fenced): the
// state a rolling restart waits for between nodes, and the next scenario
// starts from.
func (c *cluster) waitInSync(t *testing.T, timeout time.Duration) {
	t.Helper()
	waitUntil(t, timeout, "every replica in sync", func() error {
		md, err := c.metadata(nil)
		if err != nil {
			return err
		}
		for name, tm := range md.Topics {
			for _, p := range tm.Partitions {
				if p.Leader < 0 || len(p.Isrs) < len(p.Replicas) {
					return fmt.Errorf("%s partition %d: leader %d, %d of %d replicas in sync", name, p.ID, p.Leader, len(p.Isrs), len(p.Replicas))
				}
			}
		}
		return withAdmin(c.bootstrap, func(a *kafka.AdminClient) error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			res, err := a.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: "e2e-probe-" + runID, NumPartitions: 1, ReplicationFactor: 3}},
				kafka.SetAdminValidateOnly(true))
			if err == nil && res[0].Error.Code() != kafka.ErrNoError {
				err = fmt.Errorf("a topic of three copies: %w", res[0].Error)
			}
			return err
		})
	})
}

// waitUntil retries cond until it returns nil, failing t after timeout with its last error.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %s: %v", what, timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Scenario 10: three nodes, one topic of six partitions with three copies,
// and the faults a cluster exists for, each at about 1,000 events/s.
func TestCluster_survivesBrokerFaults(t *testing.T) {
	defer teardownOnPanic()
	pool := needDocker(t, true)
	producerBin, consumerBin := binaries(t)
	producerBin, consumerBin = niced(t, producerBin), niced(t, consumerBin)
	c := startCluster(t, pool)

	// The producer creates each topic with the cluster's defaults.
	checkLayout := func(t *testing.T, topic string) {
		t.Helper()
		leaders, replicas, err := c.topic(topic)
		if err != nil {
			t.Fatalf("describe %s: %v", topic, err)
		}
		if len(leaders) != 6 || replicas[0] != 3 {
			t.Errorf("topic %s has %d partitions of %d copies; the cluster's defaults are 6 of 3", topic, len(leaders), replicas[0])
		}
	}

	// (a) The leader of the partition being written crashes: the other two
	// elect a new leader from the in-sync copies and the producer goes on;
	// nothing acknowledged is lost and one producer's events stay in order.
	t.Run("leader killed", func(t *testing.T) {
		topic := provision(t, c.bootstrap, name(t, "topic"))
		p := startService(t, producerBin, "producer", producerArgs(c.bootstrap, topic, "--interval", "1ms", "--count", "40000")...)
		p.waitCount(msgDelivered, 3000, 2*time.Minute)
		checkLayout(t, topic)
		first, _ := p.first(msgDelivered)
		leaders, _, err := c.topic(topic)
		if err != nil {
			t.Fatal(err)
		}
		part := *first.Partition
		leader := leaders[part]
		killed := time.Now()
		c.stop(t, leader, dc.SIGKILL)
		acked := p.count(msgDelivered)
		p.waitFor("3,000 deliveries with a node down", 2*time.Minute, func() bool { return p.count(msgDelivered) >= acked+3000 })
		resumed := time.Now()
		newLeaders, _, _ := c.topic(topic)
		c.start(t, leader)
		c.waitInSync(t, 3*time.Minute)
		if code := p.wait(3 * time.Minute); code != 0 {
			t.Errorf("producer exited with %d; want 0", code)
		}
		f := check(observation{producers: logsOf(p), log: readTopic(t, c.bootstrap, topic)})
		f.add("partition", part)
		f.add("killed_leader", leader)
		f.add("new_leader", newLeaders[part])
		f.add("delivered_with_two_nodes", countBetween(p, msgDelivered, killed, resumed))
		f.add("took_to_3000", resumed.Sub(killed).Round(100*time.Millisecond))
		assertFigures(t, f, limits{})
	})

	// (b) The group grows from one consumer to three and back while events
	// flow (before two nodes stop, which leaves the cluster slow to settle
	// on two cores): every event is handled, each of the three receives some, and
	// the partitions move only after the offsets handled were committed. The
	// producer runs until the group is back to one: on a slow machine a
	// change of the group took half a minute, longer than a fixed count lasts.
	t.Run("group scales 1-3-1", func(t *testing.T) {
		topic, group := provision(t, c.bootstrap, name(t, "topic")), name(t, "group")
		args := consumerArgs(c.bootstrap, topic, group, "-X", "auto.commit.interval.ms=1000", "-X", "debug=cgrp", "--log-level", "debug")
		// Events flow until the group is back to one, however long its changes take.
		p := startService(t, producerBin, "producer", producerArgs(c.bootstrap, topic, "--key", "none", "--interval", "1ms")...)
		first := startService(t, consumerBin, "consumer#1", args...)
		first.waitCount(msgReceived, 3000, 2*time.Minute)
		runs := []*service{first}
		var windows []fault
		// A fault's window ends where the last consumer got its partitions.
		settle := func(w fault, members []*service) fault {
			t.Helper()
			var at time.Time
			for _, s := range members {
				s.waitFor("partitions after the group changed", 2*time.Minute, func() bool {
					l, ok := s.lastBetween(msgPartitionsAsg, w.at, time.Now())
					if ok && l.Time.After(at) {
						at = l.Time
					}
					return ok
				})
			}
			w.handled = map[int32]int64{}
			for _, s := range runs {
				for part, o := range handledOffsetsBefore(s, at) {
					w.handled[part] = max(w.handled[part], o)
				}
			}
			return w
		}

		up := beforeFault(t, c.bootstrap, group, topic)
		runs = append(runs, startService(t, consumerBin, "consumer#2", args...), startService(t, consumerBin, "consumer#3", args...))
		windows = append(windows, settle(up, runs[1:]))
		for _, s := range runs {
			s.waitFor("events with three in the group", time.Minute, func() bool {
				l, ok := s.last(msgReceived)
				return ok && l.Time.After(up.at)
			})
		}
		time.Sleep(5 * time.Second)
		down := beforeFault(t, c.bootstrap, group, topic)
		for _, s := range runs[1:] {
			s.signal(syscall.SIGTERM)
			if code := s.wait(15 * time.Second); code != 0 {
				t.Errorf("%s exited with %d after SIGTERM; want 0", s.name, code)
			}
		}
		windows = append(windows, settle(down, runs[:1]))
		p.signal(syscall.SIGTERM)
		if code := p.wait(15 * time.Second); code != 0 {
			t.Errorf("producer exited with %d after SIGTERM; want 0", code)
		}
		log := readTopic(t, c.bootstrap, topic)
		ordered := []*service{runs[1], runs[2], first} // waitHandled watches the last, still running
		waitHandled(t, ordered, log, 2*time.Minute)
		first.stop(15 * time.Second)
		f := check(observation{producers: logsOf(p), consumers: logsOf(runs...), log: log, faults: windows})
		var each []string
		for _, s := range runs {
			n := s.count(msgReceived)
			each = append(each, fmt.Sprint(n))
			if n == 0 {
				t.Errorf("%s received nothing", s.name)
			}
		}
		f.add("received_each", strings.Join(each, ","))
		assertFigures(t, f, limits{})
	})

	// (c) Two of three nodes stop: one copy is not enough (min.insync.replicas=2),
	// so the producer gets no acknowledgement and keeps its events; once a
	// second node is back it delivers them all.
	t.Run("two nodes down", func(t *testing.T) {
		topic := provision(t, c.bootstrap, name(t, "topic"))
		p := startService(t, producerBin, "producer", producerArgs(c.bootstrap, topic, "--interval", "1ms", "--count", "30000")...)
		p.waitCount(msgDelivered, 3000, 2*time.Minute)
		c.stop(t, 1, dc.SIGTERM)
		c.stop(t, 2, dc.SIGTERM)
		down := time.Now()
		time.Sleep(10 * time.Second)
		back := time.Now()
		c.start(t, 2)
		acked := p.count(msgDelivered)
		p.waitFor("deliveries once a second node is back", 3*time.Minute, func() bool { return p.count(msgDelivered) > acked })
		resumed := time.Now()
		c.start(t, 1)
		c.waitInSync(t, 3*time.Minute)
		if code := p.wait(3 * time.Minute); code != 0 {
			t.Errorf("producer exited with %d; want 0", code)
		}
		// What was in flight as the second node stopped may still be acknowledged in its first second.
		whileDown := countBetween(p, msgDelivered, down.Add(time.Second), back)
		f := check(observation{producers: logsOf(p), log: readTopic(t, c.bootstrap, topic)})
		f.add("delivered_with_one_node", whileDown)
		f.add("sent_with_one_node", countBetween(p, msgSending, down, back))
		f.add("resumed_after", resumed.Sub(down).Round(100*time.Millisecond))
		assertFigures(t, f, limits{})
		if whileDown > 0 {
			t.Errorf("%d events acknowledged with one node up; min.insync.replicas=2 allows none", whileDown)
		}
		// Waiting for copies is no leader stall: re-creating the client
		// would send the events in flight twice.
		if n := countBetween(p, msgLeaderStall, down, resumed); n > 0 {
			t.Errorf("the producer re-created its client %d times while it waited for a second copy", n)
		}
	})

	// (d) A rolling restart, one node at a time, each back in sync before
	// the next: the way a cluster is upgraded, with nothing lost.
	t.Run("rolling restart", func(t *testing.T) {
		topic := provision(t, c.bootstrap, name(t, "topic"))
		// Keyed (one partition): spread over six, librdkafka's broker
		// threads cost the producer about three times the CPU at this rate,
		// which two cores shared with three restarting nodes do not have.
		p := startService(t, producerBin, "producer", producerArgs(c.bootstrap, topic, "--interval", "1ms")...)
		p.waitCount(msgDelivered, 3000, 2*time.Minute)
		started := time.Now()
		for n := int32(1); n <= 3; n++ {
			c.stop(t, n, dc.SIGTERM)
			c.start(t, n)
			c.waitInSync(t, 4*time.Minute)
			acked := p.count(msgDelivered)
			p.waitFor(fmt.Sprintf("deliveries after kafka-%d came back", n), time.Minute, func() bool { return p.count(msgDelivered) > acked+1000 })
		}
		took := time.Since(started)
		p.stop(15 * time.Second)
		f := check(observation{producers: logsOf(p), log: readTopic(t, c.bootstrap, topic)})
		f.add("restarted", 3)
		f.add("roll_took", took.Round(time.Second))
		assertFigures(t, f, limits{})
	})
}

// niced returns a script that runs bin at a lower priority than the
// brokers. Three brokers and the clients share two cores here, and while a
// node is down librdkafka's broker threads poll in a tight loop (two busy
// cores measured): at equal priority they starve the nodes that are up,
// whose controller elections then time out again and again.
func niced(t *testing.T, bin string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), filepath.Base(bin))
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexec nice -n 10 "+bin+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// countBetween counts the lines of s with prefix logged in [from, to).
func countBetween(s *service, prefix string, from, to time.Time) int {
	n := 0
	for _, l := range s.log() {
		if l.is(prefix) && !l.Time.Before(from) && l.Time.Before(to) {
			n++
		}
	}
	return n
}

// linesWith returns the last n lines of logs that contain sub.
func linesWith(logs, sub string, n int) string {
	var found []string
	for l := range strings.Lines(logs) {
		if strings.Contains(l, sub) {
			found = append(found, l)
		}
	}
	return strings.Join(found[len(found)-min(n, len(found)):], "")
}
