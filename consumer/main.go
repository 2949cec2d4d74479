// Command consumer reads timestamp events from a Kafka topic in a consumer
// group, like the consumer of the tutorial "Event-driven architectures with
// Kafka and Python", and prints "Received: HH:MM:SS" for each, with the
// end-to-end latency when the sender recorded its send time.
//
// Delivery is at least once; messages that cannot be decoded go to a
// dead-letter topic and never stop the consumer.
//
// Exit codes: 0 on a clean stop, 1 on a runtime failure (fatal client
// error), 2 on bad configuration.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program; it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := config.Parse(args, getenv, stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "consumer:", err)
		return 2
	}
	log := logging.New(stdout, cfg.LogFormat, cfg.LogLevel)

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
		Kafka:       props,
	}, log)
	if err != nil {
		fmt.Fprintln(stderr, "consumer: invalid Kafka client configuration:", err)
		return 2
	}
	_, lib := kafka.LibraryVersion()
	log.Info("Consumer started", "bootstrap_servers", cfg.BootstrapServers, "topic", cfg.Topic,
		"group", cfg.Group, "dlq", cfg.DLQTopic, "librdkafka", lib)

	setupCtx, cancel := context.WithTimeout(ctx, startupTimeout)
	err = r.EnsureTopics(setupCtx)
	cancel()
	if err != nil && ctx.Err() == nil {
		r.Close()
		log.Error("Consumer stopped", "err", fmt.Errorf("cannot reach Kafka at %s within %s (is it running?): %w", cfg.BootstrapServers, startupTimeout, err))
		return 1
	}

	res, err := r.Run(ctx)
	attrs := append([]any{"received", res.Received, "duplicates", res.Duplicates, "dead_lettered", res.DeadLettered}, summary(res)...)
	if err != nil {
		log.Error("Consumer stopped", append(attrs, "err", err)...)
		return 1
	}
	log.Info("Consumer stopped", attrs...)
	return 0
}
