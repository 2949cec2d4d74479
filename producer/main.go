// Command producer sends a timestamp event to a Kafka topic every few
// seconds, like the producer of the tutorial "Event-driven architectures
// with Kafka and Python", and prints "Sending: HH:MM:SS" for each.
//
// The first SIGINT or SIGTERM stops the sending and waits a little for the
// delivery reports; a second signal, or a shutdown over 8 s, ends the
// process at once. Exit codes: 0 when every event accepted was delivered;
// 1 on a runtime failure (undelivered events, fatal client error, a
// shutdown over 8 s); 2 on bad configuration; 128+signal when a second
// stop signal cut the shutdown short.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/producer/internal/config"
	"github.com/event-driven-go/kafka-go/producer/internal/sender"
)

const (
	startupTimeout = 30 * time.Second // for the cluster at start
	shutdownLimit  = 8 * time.Second  // after the first stop signal; docker stop kills after 10 s
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
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "producer:", err)
		return 2
	}
	log := newLogger(stdout, cfg.LogFormat, cfg.LogLevel)
	props := kafka.ConfigMap{"bootstrap.servers": cfg.BootstrapServers}
	for k, v := range cfg.Kafka {
		props[k] = v
	}
	src := source()
	s, err := sender.New(sender.Options{Topic: cfg.Topic, Source: src, Interval: cfg.Interval, Count: cfg.Count,
		ValueSize: cfg.ValueSize, LogEvents: cfg.LogEvents, Kafka: props}, log)
	if err != nil {
		fmt.Fprintln(stderr, "producer: invalid Kafka client configuration:", err)
		return 2
	}
	_, lib := kafka.LibraryVersion()
	log.Info("Producer started", "bootstrap_servers", cfg.BootstrapServers, "topic", cfg.Topic,
		"interval", cfg.Interval, "librdkafka", lib, "source", src)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan struct{})
	var watching sync.WaitGroup
	defer watching.Wait()
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

// startupError says what failed at start: the cluster did not answer, it
// refused, or the topic got no leader in time.
func startupError(err error, servers, topic string) error {
	switch {
	case errors.Is(err, sender.ErrRefused):
		//lint:ignore ST1005 Kafka is a name
		return fmt.Errorf("Kafka at %s %w", servers, err)
	case errors.Is(err, sender.ErrNoLeader):
		return fmt.Errorf("topic %q created but has no leader after %s", topic, startupTimeout)
	default:
		return fmt.Errorf("cannot reach Kafka at %s within %s: %w", servers, startupTimeout, err)
	}
}

// source names this producer process in ce_source: the host, plus a random
// part, so that a restarted producer starts its ids at 1 under a new name.
func source() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return fmt.Sprintf("/producer/%s/%08x", host, rand.Uint32())
}

// stopWatch turns stop signals into the program's shutdown.
type stopWatch struct {
	signals <-chan os.Signal
	limit   time.Duration // the longest shutdown after the first signal
	exit    func(code int)
	log     *slog.Logger
	counts  func() sender.Result // the events at stake, for the last line
}

// watch calls stop on the first signal. Then, unless done is closed first,
// a second signal exits with 128+its number, and a shutdown longer than
// limit exits with 1, each after one line that says what was abandoned.
func (w stopWatch) watch(done <-chan struct{}, stop func()) {
	select {
	case <-done:
		return
	case <-w.signals:
	}
	stop()
	limit := time.NewTimer(w.limit)
	defer limit.Stop()
	c := func() []any {
		c := w.counts() // unconfirmed events were accepted and have no report yet
		return []any{"attempted", c.Attempted, "delivered", c.Delivered, "failed", c.Failed, "unknown", c.Unknown,
			"unconfirmed", c.Attempted - c.Delivered - c.Failed - c.Unknown}
	}
	select {
	case <-done:
	case sig := <-w.signals:
		w.log.Error("Second stop signal: exiting now", append(c(), "signal", sig.String())...)
		code := 1
		if n, ok := sig.(syscall.Signal); ok {
			code = 128 + int(n)
		}
		w.exit(code)
	case <-limit.C:
		w.log.Error(fmt.Sprintf("Shutdown took longer than %s: exiting now", w.limit), c()...)
		w.exit(1)
	}
}

// newLogger writes one JSON object per line for machines, or for people the
// tutorial's lines: the message, then key=value, the level unless INFO.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
	}
	return slog.New(&lineHandler{w: w, mu: new(sync.Mutex), level: level})
}

type lineHandler struct {
	w      io.Writer
	mu     *sync.Mutex
	level  slog.Level
	preset []slog.Attr // from With
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *lineHandler) WithGroup(string) slog.Handler                { return h } // the producer uses no groups
func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &lineHandler{w: h.w, mu: h.mu, level: h.level, preset: append(h.preset[:len(h.preset):len(h.preset)], as...)}
}

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	if r.Level != slog.LevelInfo {
		line = r.Level.String() + " " + line
	}
	for _, a := range h.preset {
		line += text(a)
	}
	r.Attrs(func(a slog.Attr) bool { line += text(a); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, line+"\n")
	return err
}

func text(a slog.Attr) string {
	v := a.Value.Resolve().String()
	if v == "" || strings.ContainsAny(v, " =\"\n\t") {
		v = strconv.Quote(v)
	}
	return " " + a.Key + "=" + v
}
