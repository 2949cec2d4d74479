// Command consumer reads timestamp events from a Kafka topic in a consumer
// group, like the consumer of the tutorial "Event-driven architectures with
// Kafka and Python", and prints "Received: HH:MM:SS" for each, with the
// end-to-end latency when the sender recorded its send time.
//
// Delivery is at least once. Messages that cannot be decoded go to a
// dead-letter topic and never stop the consumer; a dead-letter topic that
// refuses one does, since only a person can fix it.
//
// Exit codes:
//
//	0        clean stop: every event received was handled or dead-lettered
//	1        runtime failure: Kafka unreachable or refusing at start, a
//	         fatal client error, a message the dead-letter topic refused, or
//	         a shutdown that took longer than 8 s
//	2        bad configuration
//	128+sig  a second stop signal cut the shutdown short (130 for SIGINT,
//	         143 for SIGTERM)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/consumer/config"
	"github.com/event-driven-go/kafka-go/consumer/logging"
	"github.com/event-driven-go/kafka-go/consumer/receiver"
)

// dedupWindow is how many recent event ids are remembered to detect
// duplicates: about 10 MiB, and hours of events at the tutorial's rate.
const dedupWindow = 100_000

// summary is the rate and the latency percentiles of the final line, for
// what was measured.
func summary(res receiver.Result) []any {
	var a []any
	if res.Elapsed > 0 {
		a = append(a, "elapsed", res.Elapsed.Round(time.Microsecond), "events_per_s", math.Round(res.Rate()*10)/10)
	}
	if h := res.Latency; h != nil && h.Count() > 0 {
		us := func(d time.Duration) time.Duration { return d.Round(time.Microsecond) }
		a = append(a, "latency_events", h.Count(),
			"latency_p50", us(h.Quantile(0.50)), "latency_p99", us(h.Quantile(0.99)),
			"latency_p999", us(h.Quantile(0.999)), "latency_max", us(h.Max()), "latency_mean", us(h.Mean()))
	}
	return a
}

// startupTimeout bounds the wait for the cluster when the consumer starts.
const startupTimeout = 30 * time.Second

// shutdownGrace bounds the shutdown after the first stop signal; docker
// stop kills after 10 s.
const shutdownGrace = 8 * time.Second

func main() {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	os.Exit(run(context.Background(), env{
		args: os.Args[1:], getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr,
		signals: signals, exit: os.Exit,
	}))
}

// env is what run takes from the process, so that a test can provide it.
type env struct {
	args           []string
	getenv         func(string) string
	stdout, stderr io.Writer
	signals        <-chan os.Signal // stop signals
	exit           func(code int)   // ends the process when the shutdown is cut short
	admin          receiver.Admin   // nil: the cluster's admin API
}

// run is the whole program; it returns the exit code.
func run(ctx context.Context, e env) int {
	cfg, err := config.Parse(e.args, e.getenv, e.stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "consumer:", err)
		return 2
	}
	log := logging.New(e.stdout, cfg.LogFormat, cfg.LogLevel)

	props := kafka.ConfigMap{"bootstrap.servers": cfg.BootstrapServers}
	for k, v := range cfg.Kafka {
		props[k] = v
	}
	r, err := receiver.New(receiver.Options{
		Topic:       cfg.Topic,
		DLQTopic:    cfg.DLQTopic,
		Group:       cfg.Group,
		Count:       cfg.Count,
		DedupWindow: dedupWindow,
		Warmup:      cfg.Warmup,
		LogEvents:   cfg.LogEvents,
		Admin:       e.admin,
		Kafka:       props,
	}, log)
	if err != nil {
		fmt.Fprintln(e.stderr, "consumer: invalid Kafka client configuration:", err)
		return 2
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	defer close(done)
	go watchdog{signals: e.signals, done: done, cancel: cancel, exit: e.exit,
		grace: shutdownGrace, uncommitted: r.Uncommitted, log: log}.run()
	_, lib := kafka.LibraryVersion()
	log.Info("Consumer started", "bootstrap_servers", cfg.BootstrapServers, "topic", cfg.Topic,
		"group", cfg.Group, "dlq", cfg.DLQTopic, "librdkafka", lib)

	var res receiver.Result
	err = r.EnsureTopics(ctx, startupTimeout)
	switch {
	case err == nil:
		res, err = r.Run(ctx)
	case ctx.Err() != nil:
		r.Close()
		err = nil // stopped while starting
	default:
		r.Close()
	}
	attrs := append([]any{"received", res.Received, "duplicates", res.Duplicates, "dead_lettered", res.DeadLettered,
		"recovered", res.Recovered}, summary(res)...)
	if err != nil {
		log.Error("Consumer stopped", append(attrs, "err", err)...)
		return 1
	}
	log.Info("Consumer stopped", attrs...)
	return 0
}

// watchdog turns the first stop signal into a cancelled run, and ends the
// process itself when a second signal comes or the shutdown outlasts grace.
type watchdog struct {
	signals     <-chan os.Signal
	done        <-chan struct{} // closed when run returns
	cancel      func()
	exit        func(code int)
	grace       time.Duration
	uncommitted func() int64 // what a cut-short shutdown gives up
	log         *slog.Logger
}

func (w watchdog) run() {
	select {
	case <-w.signals:
		w.cancel()
	case <-w.done:
		return
	}
	timer := time.NewTimer(w.grace)
	defer timer.Stop()
	select {
	case sig := <-w.signals:
		w.log.Error("Second stop signal: exiting now", "signal", sig.String(), "uncommitted", w.uncommitted())
		code := 1
		if s, ok := sig.(syscall.Signal); ok {
			code = 128 + int(s)
		}
		w.exit(code)
	case <-timer.C:
		w.log.Error(fmt.Sprintf("Shutdown took longer than %s: exiting now", w.grace), "uncommitted", w.uncommitted())
		w.exit(1)
	case <-w.done:
	}
}
