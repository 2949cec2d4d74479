// Command consumer reads timestamp events from Kafka in a consumer group,
// like the tutorial's consumer, and prints "Received: HH:MM:SS" for each. It
// stores an event's offset only once the event was handled: at least once.
// Exit codes: 0 clean stop; 1 runtime failure (Kafka unreachable or refusing
// at start, a fatal client error, a dead letter refused, a shutdown over 8 s);
// 2 bad configuration; 128+signal when a second signal cut the shutdown short.
// "consumer healthcheck" asks a running consumer's /readyz (exit 0 when ready).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/event-driven-go/kafka-go/consumer/internal/config"
	"github.com/event-driven-go/kafka-go/consumer/internal/deadletter"
	"github.com/event-driven-go/kafka-go/consumer/internal/event"
	"github.com/event-driven-go/kafka-go/consumer/internal/leaderstall"
	"github.com/event-driven-go/kafka-go/consumer/internal/logging"
	"github.com/event-driven-go/kafka-go/consumer/internal/offsets"
	"github.com/event-driven-go/kafka-go/consumer/internal/shutdown"
	"github.com/event-driven-go/kafka-go/consumer/internal/telemetry"
	"github.com/event-driven-go/kafka-go/consumer/internal/topic"
)

const (
	startupTimeout = 30 * time.Second // for the cluster at start
	closeBudget    = 5 * time.Second  // to give the partitions up and close, inside docker stop's 10 s
	shutdownGrace  = 8 * time.Second  // after the first stop signal; docker stop kills after 10 s
)

func main() {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	os.Exit(run(context.Background(), env{args: os.Args[1:], getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr,
		signals: signals, exit: os.Exit}))
}

// env is what run takes from the process, so that a test can provide it.
type env struct {
	args           []string
	getenv         func(string) string
	stdout, stderr io.Writer
	signals        <-chan os.Signal
	exit           func(code int) // ends the process when the shutdown is cut short
}

// run is the whole program; it returns the exit code.
func run(ctx context.Context, e env) int {
	if len(e.args) > 0 && e.args[0] == "healthcheck" { // Docker's HEALTHCHECK: exit 0 once /readyz says ready
		cfg, err := config.Parse(e.args[1:], e.getenv, e.stdout)
		return telemetry.Healthcheck("consumer", cfg.HTTPAddr, err, e.stdout, e.stderr)
	}
	cfg, err := config.Parse(e.args, e.getenv, e.stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "consumer:", err)
		return 2
	}
	log := logging.New(e.stdout, cfg.LogFormat, cfg.LogLevel)
	tracer, stopTracer, err := telemetry.Tracer(ctx, e.getenv)
	if err != nil {
		fmt.Fprintln(e.stderr, "consumer: tracing:", err)
		return 2
	}
	defer stopTracer() // sends the spans still buffered, if exporting

	// The Kafka consumer, the tutorial's KafkaConsumer. The -X properties come
	// first; the settings after them carry the guarantees (-X may not set them).
	// Statistics every 5 s feed /metrics and the librdkafka#5430 guard.
	logs, stopLogs := logging.Kafka(log) // librdkafka's lines join ours
	cm := kafka.ConfigMap{"statistics.interval.ms": 5000, "log.connection.close": false,
		// A new group starts from the oldest event: none sent before it is skipped.
		"auto.offset.reset": "earliest",
		// librdkafka waits a second to refill a full local queue, stalling a fast reader.
		"fetch.queue.backoff.ms": 100}
	if cfg.GroupProtocol == "classic" { // like the consumer protocol, it moves only the partitions that must move
		cm["partition.assignment.strategy"] = "cooperative-sticky"
	}
	maps.Copy(cm, cfg.Kafka)
	maps.Copy(cm, kafka.ConfigMap{"bootstrap.servers": cfg.BootstrapServers, "group.id": cfg.Group,
		// consumer: the broker assigns the partitions (KIP-848, Kafka 4); classic: the members do.
		"group.protocol": cfg.GroupProtocol,
		// At least once: an offset is stored only once its event was handled
		// (offsets.Handled below), and the background commit sends only what
		// was stored: a crash delivers again what came since the last commit.
		"enable.auto.offset.store": false,
		"enable.auto.commit":       true,
		"allow.auto.create.topics": false, // a missing topic is an error, never created by a typo
		"go.logs.channel.enable":   true, "go.logs.channel": logs})
	// The client is re-created if it stalls without a leader or a coordinator (librdkafka#5430).
	c, err := leaderstall.NewConsumer(cm, cfg.Topic, log)
	if err != nil {
		fmt.Fprintln(e.stderr, "consumer: invalid Kafka client configuration:", err)
		return 2
	}
	dlq, err := deadletter.New(cm, cfg.DLQTopic, log) // messages that cannot be decoded go there
	if err != nil {
		_ = c.Close(0, func(*kafka.Consumer) {})
		fmt.Fprintln(e.stderr, "consumer: invalid Kafka client configuration:", err)
		return 2
	}
	_, lib := kafka.LibraryVersion()
	log.Info("Consumer started", "bootstrap_servers", cfg.BootstrapServers, "topic", cfg.Topic,
		"group", cfg.Group, "group_protocol", cfg.GroupProtocol, "dlq", cfg.DLQTopic, "librdkafka", lib)

	ctx, stop := context.WithCancel(ctx)
	defer stop()
	n := telemetry.NewCounts(cm)
	if cfg.HTTPAddr != "" {
		healthy := n.Healthy(c.Healthy, dlq.Healthy)
		closeHTTP, err := telemetry.Serve(cfg.HTTPAddr, log, healthy, n.Ready(ctx, healthy), n.Metrics(c.Recovered)...)
		defer closeHTTP()
		n.Fatal(err) // a port taken: the run ends, exit 1
	}
	done := make(chan struct{})
	defer close(done)
	o := offsets.New(log)
	left := func() []any { return []any{"uncommitted", o.Uncommitted.Load()} }
	w := shutdown.Watch{Signals: e.signals, Failed: n.Stopped(), Limit: shutdownGrace, Exit: e.exit, Log: log, Left: left}
	go w.Run(done, stop)

	setup, cancel := context.WithTimeout(ctx, startupTimeout)
	err = topic.Wait(setup, c.Kafka(), cfg.BootstrapServers, cfg.Topic, cfg.DLQTopic)
	cancel()
	if err == nil && n.Err() == nil {
		n.Started.Store(true)
		go c.Guard(ctx, n.Fatal) // should it give up, the run ends as on a fatal error
		r := &receiver{cfg: cfg, c: c, dlq: dlq, n: n, offsets: o, log: log, tracer: tracer}
		if err = c.Subscribe(r.rebalanced); err == nil {
			err = r.consume(ctx)
		}
	} else if ctx.Err() != nil {
		err = nil // stopped while starting: a clean stop
	}
	if cerr := c.Close(closeBudget, o.Commit); cerr != nil { // commit what was handled, leave the group
		log.Warn("Consumer close", "err", cerr)
	} else {
		dlq.Close() // what it did not write comes again: those offsets were never stored
		stopLogs()  // no client writes to it any more
	}
	if err = errors.Join(err, n.Err()); err != nil {
		log.Error("Consumer stopped", append(n.Summary(c.Recovered()), "err", err)...)
		return 1
	}
	log.Info("Consumer stopped", n.Summary(c.Recovered())...)
	return 0
}

// receiver is the poll loop's state.
type receiver struct {
	cfg     config.Config
	c       *leaderstall.Consumer
	dlq     *deadletter.Writer
	n       *telemetry.Counts
	offsets *offsets.Store
	log     *slog.Logger
	tracer  trace.Tracer
}

// consume is the tutorial's loop: poll, handle, store the offset; until
// Count events were handled or ctx ends.
func (r *receiver) consume(ctx context.Context) error {
	for ctx.Err() == nil && (r.cfg.Count == 0 || r.n.Handled.Load() < int64(r.cfg.Count)) {
		var err error
		switch e := r.c.Poll(100).(type) {
		case *kafka.Message:
			err = r.handle(e)
		case kafka.OffsetsCommitted:
			if r.offsets.Committed(e.Error, e.Offsets) {
				r.n.BrokersDown.Store(false)
			}
		case nil:
			r.offsets.Flush(r.c.Kafka()) // idle: nothing to batch with
		default:
			err = r.n.Observe(e, r.log) // client errors and statistics
		}
		written, derr := r.dlq.Poll(r.c.Kafka()) // dead letters the broker acknowledged: handled
		r.n.DeadLettered.Add(int64(len(written)))
		r.offsets.Handled(r.c.Kafka(), written...)
		if err = errors.Join(err, derr); err != nil {
			return err
		}
	}
	return nil
}

// handle is the tutorial's handler: print "Received: 15:04:05", or
// dead-letter what cannot be decoded; a bad message never stops the loop.
func (r *receiver) handle(m *kafka.Message) error {
	ctx, span := telemetry.Process(r.tracer, m, r.cfg.Group)
	defer span.End()
	ev, err := event.Decode(m.Value, m.Headers)
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		r.offsets.Flush(r.c.Kafka()) // what was handled before it, first
		return r.dlq.Add(r.c.Kafka(), m, err)
	}
	tp, now := m.TopicPartition, time.Now()
	dup := r.n.Received(tp.Partition, ev.Source, ev.ID, ev.Time, now)
	if r.cfg.LogEvents {
		r.log.InfoContext(ctx, "Received: "+ev.Timestamp, logging.Received(ev.ID, tp, ev.Time, now, dup)...)
	}
	r.offsets.Handled(r.c.Kafka(), m) // only now: at least once
	return nil
}

// rebalanced follows the group's changes of this consumer's partitions. On
// revoke it commits what was handled, so that the next owner starts after
// it; a dead letter in flight is waited for, so that it is not written twice.
func (r *receiver) rebalanced(c *kafka.Consumer, e kafka.Event) error {
	switch e := e.(type) {
	case kafka.AssignedPartitions:
		r.n.Assigned.Store(true)
		r.n.BrokersDown.Store(false)
		r.n.Rebalances.WithLabelValues("assigned").Inc()
		r.log.Info("Partitions assigned", "partitions", logging.Partitions(e.Partitions))
	case kafka.RevokedPartitions:
		written := r.dlq.Revoked(c, e.Partitions, 2*time.Second)
		r.n.DeadLettered.Add(int64(len(written)))
		r.offsets.Handled(c, written...)
		switch {
		case r.c.Replacing(): // no commit that waits for an answer: the stalled client may get none
			r.offsets.Flush(c) // for the close's own commit, if the group takes it
		case !c.AssignmentLost():
			r.offsets.Commit(c)
		}
		r.offsets.Forget(e.Partitions)
		change := "revoked"
		if c.AssignmentLost() {
			change = "lost"
		}
		r.n.Rebalances.WithLabelValues(change).Inc()
		r.log.Info("Partitions revoked", "partitions", logging.Partitions(e.Partitions), "lost", c.AssignmentLost())
	}
	return nil
}
