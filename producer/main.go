// Command producer sends a timestamp event to Kafka every few seconds, like
// the tutorial's producer, and prints "Sending: HH:MM:SS" for each. It reads
// the delivery report of every event, and on a stop signal waits a little
// for the last ones. Exit codes: 0 all delivered; 1 runtime failure; 2 bad
// configuration; 128+signal after a second stop signal.
// "producer healthcheck" asks a running producer's /readyz (exit 0 when ready).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/trace"

	"github.com/event-driven-go/kafka-go/producer/internal/config"
	"github.com/event-driven-go/kafka-go/producer/internal/event"
	"github.com/event-driven-go/kafka-go/producer/internal/leaderstall"
	"github.com/event-driven-go/kafka-go/producer/internal/logging"
	"github.com/event-driven-go/kafka-go/producer/internal/schedule"
	"github.com/event-driven-go/kafka-go/producer/internal/shutdown"
	"github.com/event-driven-go/kafka-go/producer/internal/telemetry"
	"github.com/event-driven-go/kafka-go/producer/internal/topic"
)

const (
	startupTimeout = 30 * time.Second        // for the cluster at start
	flushTimeout   = 2500 * time.Millisecond // for the last delivery reports after a stop
	shutdownLimit  = 8 * time.Second         // after the first stop signal; docker stop kills after 10 s
)

func main() {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, signals, os.Exit))
}

// run is the whole program; it returns the exit code, unless a cut-short
// shutdown ends the process through exit first.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, signals <-chan os.Signal, exit func(int)) int {
	if len(args) > 0 && args[0] == "healthcheck" { // Docker's HEALTHCHECK: exit 0 once /readyz says ready
		cfg, err := config.Parse(args[1:], getenv, stdout)
		return telemetry.Healthcheck("producer", cfg.HTTPAddr, err, stdout, stderr)
	}
	cfg, err := config.Parse(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "producer:", err)
		return 2
	}
	log := logging.New(stdout, cfg.LogFormat, cfg.LogLevel)
	tracer, stopTracer, err := telemetry.Tracer(context.Background(), getenv)
	if err != nil {
		fmt.Fprintln(stderr, "producer: tracing:", err)
		return 2
	}
	defer stopTracer() // sends the spans still buffered, if exporting

	// The Kafka producer, the tutorial's KafkaProducer. The -X properties come
	// first; the settings after them carry the guarantees (-X may not set them).
	// Statistics every 5 s feed /metrics and the librdkafka#5430 guard.
	cm := kafka.ConfigMap{"statistics.interval.ms": 5000, "log.connection.close": false}
	maps.Copy(cm, cfg.Kafka)
	maps.Copy(cm, kafka.ConfigMap{
		"bootstrap.servers": cfg.BootstrapServers,
		// Each event is written once and in order, across retries and leader
		// changes (a client the #5430 guard re-creates may write its events in
		// flight again). It implies acks=all: every in-sync copy has the event.
		"enable.idempotence": true,
		// A missing topic is an error, never created by a typo.
		"allow.auto.create.topics": false,
		// A delivery report per event, naming it by its Opaque only.
		"go.delivery.report.fields": "none",
		"go.events.channel.size":    10000, // not a million entries for the GC to scan
		"go.produce.channel.size":   1,     // Produce is called directly: no channel of a million
		"go.logs.channel.enable":    true,  // librdkafka's lines join ours
	})
	// The client is re-created if it stalls without a leader (librdkafka#5430).
	p, err := leaderstall.NewProducer(cm, cfg.Topic, log)
	if err != nil {
		fmt.Fprintln(stderr, "producer: invalid Kafka client configuration:", err)
		return 2
	}
	host, _ := os.Hostname()
	// A random part names this process: a restarted producer counts its ids from 1 again.
	src := fmt.Sprintf("/producer/%s/%08x", host, rand.Uint32())
	_, lib := kafka.LibraryVersion()
	log.Info("Producer started", "bootstrap_servers", cfg.BootstrapServers, "topic", cfg.Topic,
		"interval", cfg.Interval, "key", cfg.Key, "librdkafka", lib, "source", src)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	n := telemetry.NewCounts(cm)
	if cfg.HTTPAddr != "" {
		healthy := n.Healthy(p.Healthy)
		closeHTTP, err := telemetry.Serve(cfg.HTTPAddr, log, healthy, n.Ready(ctx, healthy), n.Metrics(p.Recovered)...)
		if err != nil {
			p.Close()
			log.Error("Producer stopped", "err", err)
			return 1
		}
		defer closeHTTP()
	}
	done := make(chan struct{})
	defer close(done)
	w := shutdown.Watch{Signals: signals, Failed: n.Stopped(), Limit: shutdownLimit, Exit: exit, Log: log, Left: n.Left}
	go w.Run(done, stop)
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		reports(p.Events(), n, log)
	}()

	setup, cancel := context.WithTimeout(ctx, startupTimeout)
	err = topic.Wait(setup, p, cfg.Topic, cfg.BootstrapServers, flushTimeout)
	cancel()
	if err == nil {
		n.Started.Store(true)
		go p.Guard(ctx, n.Fatal) // should it give up, the run ends as on a fatal error
		err = produce(ctx, p, cfg, src, n, tracer, log)
		finish(ctx, p)
	} else if ctx.Err() != nil {
		err = nil // stopped while starting: a clean stop
	}
	p.Close() // closes Events: the reports end
	<-reported
	if err = errors.Join(err, n.Err()); err != nil {
		log.Error("Producer stopped", append(n.Summary(p.Recovered()), "err", err)...)
		return 1
	}
	log.Info("Producer stopped", n.Summary(p.Recovered())...)
	return 0
}

// produce is the tutorial's loop: an event every Interval, on a fixed grid,
// until Count is reached or ctx ends.
func produce(ctx context.Context, p *leaderstall.Producer, cfg config.Config, src string, n *telemetry.Counts,
	tracer trace.Tracer, log *slog.Logger) error {
	var key []byte // by source: one producer's events share a partition, in order; nil spreads them
	if cfg.Key == "source" {
		key = []byte(src)
	}
	grid := schedule.New(cfg.Interval)
	for id := uint64(1); cfg.Count == 0 || id <= uint64(cfg.Count); id++ {
		at, late, skipped, ok := grid.Wait(ctx)
		if !ok {
			return nil
		} else if late > 0 {
			log.Warn("Behind schedule: sending now, skipping the missed events", "late", late.Round(time.Millisecond), "skipped", skipped)
		}
		ev := event.Event{ID: id, Source: src, Time: at}
		sctx, span, headers := telemetry.Publish(ctx, tracer, cfg.Topic, id, ev.Headers())
		m := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &cfg.Topic, Partition: kafka.PartitionAny},
			Key: key, Value: ev.Value(cfg.ValueSize), Headers: headers, Opaque: &sent{ev: ev, span: span}}
		if n.Attempted.Add(1) == 1 { // before its report can come
			n.First.Store(time.Now().UnixNano())
		}
		err := p.Produce(m)
		for code(err) == kafka.ErrQueueFull && schedule.Sleep(ctx, 10*time.Millisecond) {
			err = p.Produce(m) // back-pressure: the client's queue is full until the broker takes some
		}
		if err != nil {
			n.Attempted.Add(-1) // not accepted
			span.End()
			if code(err) == kafka.ErrFatal {
				n.Fatal(fmt.Errorf("fatal producer error: %w", p.GetFatalError()))
			} else if ctx.Err() == nil {
				return fmt.Errorf("send event %d: %w", id, err)
			}
			return nil
		}
		if cfg.LogEvents {
			log.InfoContext(sctx, "Sending: "+ev.Timestamp(), "id", strconv.FormatUint(id, 10))
		}
	}
	return nil
}

// sent is an event the client accepted: its delivery report names it.
type sent struct {
	ev   event.Event
	span trace.Span // publish, ended by the delivery report
}

// reports reads the client's events until they end: a delivery report per
// event, which it counts and, unless delivered, says why.
func reports(events <-chan kafka.Event, n *telemetry.Counts, log *slog.Logger) {
	for e := range events {
		m, ok := e.(*kafka.Message)
		if !ok {
			n.Observe(e, log) // client errors and statistics
			continue
		}
		s, ok := m.Opaque.(*sent)
		if !ok {
			continue // not ours
		}
		telemetry.Delivered(s.span, m.TopicPartition)
		id, err := strconv.FormatUint(s.ev.ID, 10), m.TopicPartition.Error
		switch c := code(err); {
		case err == nil:
			n.Delivered(time.Since(s.ev.Time))
			log.Debug("Delivered: "+s.ev.Timestamp(), "id", id, "partition", m.TopicPartition.Partition, "offset", int64(m.TopicPartition.Offset))
		case c == kafka.ErrPurgeInflight || c == kafka.ErrMsgTimedOut || errors.Is(err, leaderstall.ErrResent):
			n.Unknown.Add(1) // maybe written
			log.Error("Unconfirmed: "+s.ev.Timestamp(), "id", id, "err", err)
		default:
			n.Failed.Add(1) // surely not written
			log.Error("Not delivered: "+s.ev.Timestamp(), "id", id, "err", err)
		}
	}
}

// finish waits for every delivery report: after Count as long as
// message.timeout.ms allows, so that an outage at the end loses nothing;
// after a stop at most flushTimeout. Then it purges: events still queued
// fail, those in flight are unknown.
func finish(ctx context.Context, p *leaderstall.Producer) {
	for ctx.Err() == nil {
		if p.Flush(100*time.Millisecond) == 0 {
			return
		}
	}
	if p.Flush(flushTimeout) > 0 {
		_ = p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight)
		p.Flush(500 * time.Millisecond)
	}
}

func code(err error) kafka.ErrorCode {
	var kerr kafka.Error
	errors.As(err, &kerr)
	return kerr.Code()
}
