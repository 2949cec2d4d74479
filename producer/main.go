// Command producer sends a timestamp event to a Kafka topic every few
// seconds, like the producer of the tutorial "Event-driven architectures
// with Kafka and Python", and prints "Sending: HH:MM:SS" for each.
//
// The first SIGINT or SIGTERM stops the sending and waits a little for the
// delivery reports of the events sent; a second signal, or a shutdown
// longer than 8s, ends the process at once.
//
// Exit codes: 0 when every event accepted was delivered; 1 on a runtime
// failure (undelivered events, fatal client error, a shutdown over 8s);
// 2 on bad configuration; 128+signal (130 for SIGINT, 143 for SIGTERM)
// when a second stop signal cut the shutdown short.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/producer/config"
	"github.com/event-driven-go/kafka-go/producer/logging"
	"github.com/event-driven-go/kafka-go/producer/sender"
)

func main() {
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM)
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr, signals, os.Exit))
}

// run is the whole program; it returns the exit code, unless a cut-short
// shutdown ends the process through exit first.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer, signals <-chan os.Signal, exit func(int)) int {
	cfg, err := config.Parse(args, getenv, stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "producer:", err)
		return 2
	}
	log := logging.New(stdout, cfg.LogFormat, cfg.LogLevel)

	props := kafka.ConfigMap{"bootstrap.servers": cfg.BootstrapServers}
	for k, v := range cfg.Kafka {
		props[k] = v
	}
	s, err := sender.New(sender.Options{
		Topic:     cfg.Topic,
		Source:    source(),
		Interval:  cfg.Interval,
		Count:     cfg.Count,
		ValueSize: cfg.ValueSize,
		LogEvents: cfg.LogEvents,
		Kafka:     props,
	}, log)
	if err != nil {
		fmt.Fprintln(stderr, "producer: invalid Kafka client configuration:", err)
		return 2
	}
	log.Info("Producer started", "bootstrap_servers", cfg.BootstrapServers, "topic", cfg.Topic,
		"interval", cfg.Interval, "librdkafka", libVersion())

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var watching sync.WaitGroup
	defer watching.Wait()
	done := make(chan struct{})
	defer close(done)
	w := stopWatch{signals: signals, limit: shutdownLimit, exit: exit, log: log, counts: s.Counts}
	watching.Go(func() { w.watch(done, stop) })

	setupCtx, cancel := context.WithTimeout(ctx, startupTimeout)
	err = s.EnsureTopic(setupCtx)
	cancel()
	if err != nil && ctx.Err() == nil {
		s.Close()
		log.Error("Producer stopped", "err", startupError(err, cfg.BootstrapServers, cfg.Topic))
		return 1
	}

	res, err := s.Run(ctx)
	attrs := []any{"attempted", res.Attempted, "delivered", res.Delivered, "failed", res.Failed, "unknown", res.Unknown, "recovered", res.Recovered}
	if res.Elapsed > 0 {
		attrs = append(attrs, "elapsed", res.Elapsed.Round(time.Microsecond), "events_per_s", math.Round(res.Rate()*10)/10)
	}
	if err != nil {
		log.Error("Producer stopped", append(attrs, "err", err)...)
		return 1
	}
	log.Info("Producer stopped", attrs...)
	return 0
}

// startupTimeout bounds the wait for the cluster when the producer starts.
const startupTimeout = 30 * time.Second

// startupError says what failed at start: the cluster did not answer, it
// refused, or the topic got no leader in time.
func startupError(err error, servers, topic string) error {
	var refused *sender.RefusedError
	switch {
	case errors.As(err, &refused):
		//lint:ignore ST1005 Kafka is a name
		return fmt.Errorf("Kafka at %s %w", servers, refused)
	case errors.Is(err, sender.ErrNoLeader):
		return fmt.Errorf("topic %q created but has no leader after %s", topic, startupTimeout)
	default:
		return fmt.Errorf("cannot reach Kafka at %s within %s: %w", servers, startupTimeout, err)
	}
}

// source names this producer instance in ce_source: the host, plus a random
// part so that a restarted producer starts a new sequence under a new name.
func source() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "/producer/" + host + "/" + hex.EncodeToString(b[:])
}

func libVersion() string {
	_, v := kafka.LibraryVersion()
	return v
}
