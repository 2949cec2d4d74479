package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/event-driven-go/kafka-go/internal/stack"
	"github.com/magefile/mage/mg"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Demo runs the tutorial: consumer and producer side by side.
//
// It starts a broker, then both services, and runs until Ctrl-C, or until DEMO_EVENTS events arrived. The broker is
// KAFKA_BOOTSTRAP_SERVERS if set, else Kafka in Docker if the daemon answers
// and a Kafka image can be had, else an embedded in-memory broker;
// BROKER=docker or BROKER=embedded picks one; BROKER=cluster runs the
// three-node cluster and three consumers of one group, and says which
// broker leads each partition. PRODUCER_INTERVAL sets the
// pace (default 5s). The output of the two services is interleaved, one
// pane each, the way the tutorial's two terminals show them. Each service
// serves /healthz, /readyz and /metrics on a free loopback port; the demo
// prints their URLs.
// (os/exec: the panes read each service's output as it comes.)
func Demo(ctx context.Context) error {
	mg.Deps(needCgo)
	events, err := demoEvents()
	if err != nil {
		return err
	}
	bootstrap, consumers, stopBroker, err := demoBroker(ctx)
	if err != nil {
		return err
	}
	defer stopBroker()
	producer, err := buildService("producer")
	if err != nil {
		return err
	}
	consumer, err := buildService("consumer")
	if err != nil {
		return err
	}

	env := append(os.Environ(), "KAFKA_BOOTSTRAP_SERVERS="+bootstrap, "LOG_FORMAT=text")
	topic, err := repo.Setting("KAFKA_TOPIC", "timestamp")
	if err != nil {
		return err
	}
	if err := provision(ctx, bootstrap); err != nil {
		return err
	}
	// A group of its own that starts at the current end of the topic: the
	// demo shows this run's events, whatever earlier runs left there.
	group := fmt.Sprintf("demo-%d", time.Now().UnixNano())
	if err := startGroupAtEnd(ctx, bootstrap, topic, group); err != nil {
		return err
	}
	consumerArgs := []string{"--group", group}
	var producerArgs []string
	if consumers > 1 {
		// On the cluster: the events take the partitions in turn, so that
		// every consumer of the group gets some.
		producerArgs = append(producerArgs, "--key", "none")
	}
	if events > 0 {
		producerArgs = append(producerArgs, "--count", strconv.Itoa(events))
		if consumers == 1 {
			consumerArgs = append(consumerArgs, "--count", strconv.Itoa(events))
		}
	}

	// Each service's HTTP endpoint on a port of its own.
	ports, err := stack.FreePorts(consumers + 1)
	if err != nil {
		return err
	}
	httpAddr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	producerArgs = append(producerArgs, "--http-addr", httpAddr(consumers))

	out := newPanes(os.Stdout)
	var names []string
	var cmds []*exec.Cmd
	var dones []<-chan error
	var joined sync.WaitGroup
	for i := range consumers {
		name := "consumer"
		if consumers > 1 {
			name = fmt.Sprintf("consumer%d", i+1)
		}
		joined.Add(1)
		once := sync.OnceFunc(joined.Done)
		cmd := serviceCommand(ctx, consumer, env, append(consumerArgs, "--http-addr", httpAddr(i))...)
		done, err := out.start(cmd, name, func(line string) {
			if assignedLine.MatchString(line) {
				once()
			}
		})
		if err != nil {
			return err
		}
		names, cmds, dones = append(names, name), append(cmds, cmd), append(dones, done)
	}
	assigned := make(chan struct{})
	go func() { joined.Wait(); close(assigned) }()
	// The producer starts once every consumer owns partitions, so that not
	// one event goes by unseen.
	select {
	case <-assigned:
	case <-ctx.Done():
		return waitAll(dones)
	case <-time.After(time.Minute):
		return errors.New("a consumer got no partition within a minute; see its output above")
	}
	if consumers > 1 {
		if leaders, err := partitionLeaders(ctx, bootstrap, topic); err == nil {
			fmt.Println("Leaders of " + topic + ": " + leaders)
		}
	}
	for i, name := range append(names, "producer") {
		fmt.Printf("%s: http://%s/metrics, /readyz, /healthz\n", name, httpAddr(i))
	}
	prod := serviceCommand(ctx, producer, env, producerArgs...)
	prodDone, err := out.start(prod, "producer", nil)
	if err != nil {
		return err
	}
	prodErr := <-prodDone
	sent := out.count("producer", stoppedProducer)
	received := func() int {
		n := 0
		for _, name := range names {
			n += out.matching(name, receivedLine)
		}
		return n
	}
	// The producer is done; whatever has not arrived within the grace will not.
	for deadline := time.Now().Add(consumerGrace); received() < sent && time.Now().Before(deadline) && ctx.Err() == nil; {
		time.Sleep(100 * time.Millisecond)
	}
	for _, cmd := range cmds {
		_ = cmd.Cancel() // a consumer that stopped by itself is not signalled again
	}
	consErr := waitAll(dones)

	fmt.Printf("Demo finished: sent %d, received %d.\n", sent, received())
	if ctx.Err() != nil {
		return nil // stopped with Ctrl-C: the services reported above
	}
	if prodErr != nil || consErr != nil {
		return fmt.Errorf("demo: producer: %v; consumer: %v", prodErr, consErr)
	}
	if events > 0 && (sent != events || received() != events) {
		return fmt.Errorf("demo: sent %d and received %d events, want %d each", sent, received(), events)
	}
	return nil
}

// waitAll waits for every command and returns the first error.
func waitAll(dones []<-chan error) error {
	var first error
	for _, done := range dones {
		if err := <-done; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// partitionLeaders says which broker leads each partition of topic: the
// broker each event on that partition goes through.
func partitionLeaders(ctx context.Context, bootstrap, topic string) (string, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...))
	if err != nil {
		return "", err
	}
	defer cl.Close()
	td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil || td[topic].Err != nil {
		return "", errors.Join(err, td[topic].Err)
	}
	var parts []string
	for _, p := range td[topic].Partitions.Sorted() {
		parts = append(parts, fmt.Sprintf("partition %d on broker %d", p.Partition, p.Leader))
	}
	return strings.Join(parts, ", "), nil
}

// consumerGrace is how long the consumer may go on after the producer stopped.
const consumerGrace = 30 * time.Second

var (
	assignedLine    = regexp.MustCompile(`^Partitions assigned`)
	stoppedProducer = regexp.MustCompile(`Producer stopped attempted=\d+ delivered=(\d+)`)
	receivedLine    = regexp.MustCompile(`^Received: `)
)

// startGroupAtEnd commits the topic's end offsets for group, so that a
// consumer of that group reads only events sent from now on. A topic that
// does not exist yet needs nothing: the group will start at its beginning.
func startGroupAtEnd(ctx context.Context, bootstrap, topic, group string) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", bootstrap, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the end of topic %s at %s: %w", topic, bootstrap, err)
	}
	res, err := adm.CommitOffsets(ctx, group, ends.Offsets())
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		return fmt.Errorf("start group %s at the end of %s: %w", group, topic, err)
	}
	return nil
}

// demoEvents reads DEMO_EVENTS: how many events the demo sends and awaits.
func demoEvents() (int, error) {
	v := os.Getenv("DEMO_EVENTS")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid DEMO_EVENTS %q: want a whole number >= 0 (0 runs until Ctrl-C)", v)
	}
	return n, nil
}

// demoBroker finds or starts the demo's broker and returns its address
// and how many consumers the demo runs: three on the cluster, else one.
func demoBroker(ctx context.Context) (bootstrap string, consumers int, stop func(), err error) {
	noop := func() {}
	mode := os.Getenv("BROKER")
	switch mode {
	case "":
		if bs := os.Getenv("KAFKA_BOOTSTRAP_SERVERS"); bs != "" {
			fmt.Printf("Broker: %s (from KAFKA_BOOTSTRAP_SERVERS).\n", bs)
			return bs, 1, noop, nil
		}
		if err := needDocker(); err != nil {
			fmt.Printf("Docker is not reachable (%v): using the embedded broker.\n", err)
			bootstrap, stop, err = embeddedBroker()
			return bootstrap, 1, stop, err
		}
		bootstrap, stop, err = dockerBroker()
		return bootstrap, 1, stop, err
	case "docker":
		bootstrap, stop, err = dockerBroker()
		return bootstrap, 1, stop, err
	case "cluster":
		bootstrap, err = clusterBroker(ctx)
		return bootstrap, 3, noop, err
	case "embedded":
		bootstrap, stop, err = embeddedBroker()
		return bootstrap, 1, stop, err
	}
	return "", 0, noop, fmt.Errorf("invalid BROKER %q: want docker, cluster or embedded (or unset to choose by itself)", mode)
}

// clusterBroker starts the three-node cluster, as cluster:up does.
func clusterBroker(ctx context.Context) (string, error) {
	if err := (Cluster{}).Up(ctx); err != nil {
		return "", err
	}
	s, err := newClusterStack()
	if err != nil {
		return "", err
	}
	fmt.Printf("Broker: the three-node cluster at %s; it keeps running after the demo (go tool mage cluster:down stops it).\n", s.bootstrap())
	return s.bootstrap(), nil
}

// dockerBroker starts Kafka with compose, or the embedded broker when no
// Kafka image can be had: the demo never fails for want of an image.
func dockerBroker() (string, func(), error) {
	s, err := newStack()
	if err != nil {
		return "", nil, err
	}
	image, _, err := kafkaImage()
	if err != nil {
		fmt.Printf("No Kafka image for Docker (%v): using the embedded broker.\n", err)
		return embeddedBroker()
	}
	if err := s.up(image); err != nil {
		return "", nil, err
	}
	fmt.Printf("Broker: Kafka in Docker (%s) at %s; it keeps running after the demo (go tool mage down stops it).\n", image, s.bootstrap())
	return s.bootstrap(), func() {}, nil
}

// embeddedBroker starts an in-process Kafka-protocol broker (franz-go's
// kfake) on a free loopback port: enough for the demo on a machine without
// Docker, but not Kafka, and nothing it holds survives the demo.
func embeddedBroker() (string, func(), error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		return "", nil, fmt.Errorf("start the embedded broker: %w", err)
	}
	addr := c.ListenAddrs()[0]
	fmt.Printf("Broker: embedded in-memory Kafka-protocol broker at %s. Its data lives in memory only and is gone when the demo ends.\n", addr)
	return addr, c.Close, nil
}

// panes interleaves the output of several processes line by line, each
// line behind its process's name, coloured on a terminal.
type panes struct {
	mu     sync.Mutex
	w      io.Writer
	colour bool
	lines  map[string][]string
}

func newPanes(w *os.File) *panes {
	fi, err := w.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	return &panes{w: w, colour: tty && os.Getenv("NO_COLOR") == "", lines: map[string][]string{}}
}

var paneColours = map[string]string{"producer": "\x1b[36m", "consumer": "\x1b[35m", "consumer1": "\x1b[35m",
	"consumer2": "\x1b[33m", "consumer3": "\x1b[32m"}

// start starts cmd with its output shown under name; onLine sees each line.
// The returned channel yields the command's exit error once it ended and
// all its output was shown.
func (p *panes) start(cmd *exec.Cmd, name string, onLine func(string)) (<-chan error, error) {
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan error, 1)
	shown := make(chan struct{})
	go func() {
		defer close(shown)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.show(name, sc.Text())
			if onLine != nil {
				onLine(sc.Text())
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		w.Close()
		<-shown
		done <- err
	}()
	return done, nil
}

func (p *panes) show(name, line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lines[name] = append(p.lines[name], line)
	prefix := fmt.Sprintf("%-9s | ", name)
	if p.colour {
		prefix = paneColours[name] + prefix + "\x1b[0m"
	}
	fmt.Fprintln(p.w, prefix+line)
}

// matching counts name's lines that match re.
func (p *panes) matching(name string, re *regexp.Regexp) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.lines[name] {
		if re.MatchString(l) {
			n++
		}
	}
	return n
}

// count returns the number in the first group of re on name's last matching line.
func (p *panes) count(name string, re *regexp.Regexp) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.lines[name] {
		if m := re.FindStringSubmatch(l); m != nil {
			n, _ = strconv.Atoi(m[1])
		}
	}
	return n
}
