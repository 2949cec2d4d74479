// Command consumer reads timestamp events from Kafka in a consumer group,
// like the tutorial's consumer, and prints "Received: HH:MM:SS" for each.
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
	"math"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/trace"

	"github.com/event-driven-go/kafka-go/consumer/internal/config"
	"github.com/event-driven-go/kafka-go/consumer/internal/receiver"
	"github.com/event-driven-go/kafka-go/consumer/internal/telemetry"
)

const (
	startupTimeout = 30 * time.Second // for the cluster at start
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
	if len(e.args) > 0 && e.args[0] == "healthcheck" {
		return healthcheck(e)
	}
	cfg, err := config.Parse(e.args, e.getenv, e.stdout)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "consumer:", err)
		return 2
	}
	log := newLogger(e.stdout, cfg.LogFormat, cfg.LogLevel)
	tracer, shutdownTracer, err := telemetry.Tracer(ctx, e.getenv)
	if err != nil {
		fmt.Fprintln(e.stderr, "consumer: tracing:", err)
		return 2
	}
	defer func() { // sends the spans still buffered, if exporting
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = shutdownTracer(ctx)
	}()
	r, err := receiver.New(cfg, log, tracer)
	if err != nil {
		fmt.Fprintln(e.stderr, "consumer: invalid Kafka client configuration:", err)
		return 2
	}
	ctx, cancel := context.WithCancel(ctx)
	var started atomic.Bool // subscribed
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			r.Close()
			log.Error("Consumer stopped", "err", fmt.Errorf("HTTP endpoint: %w", err))
			cancel()
			return 1
		}
		defer telemetry.Serve(ln, r.Healthy, func() error {
			switch {
			case ctx.Err() != nil:
				return errors.New("stopping")
			case !started.Load():
				return errors.New("starting: checking the topics")
			}
			return r.Ready()
		}, r.Metrics()...)()
		log.Info("HTTP endpoint: /healthz, /readyz, /metrics", "addr", ln.Addr().String())
	}
	done := make(chan struct{})
	defer close(done)
	go watchdog(e.signals, r.Failed(), done, cancel, e.exit, shutdownGrace, r.Uncommitted, log)
	_, lib := kafka.LibraryVersion()
	log.Info("Consumer started", "bootstrap_servers", cfg.BootstrapServers, "topic", cfg.Topic,
		"group", cfg.Group, "group_protocol", cfg.GroupProtocol, "dlq", cfg.DLQTopic, "librdkafka", lib)

	var res receiver.Result
	setupCtx, setupDone := context.WithTimeout(ctx, startupTimeout)
	err = r.CheckTopics(setupCtx)
	setupDone()
	if errors.Is(err, receiver.ErrMissing) {
		err = fmt.Errorf("%w at %s: the consumer creates none; create %q and %q first (go tool mage up does; "+
			"docs/configuration.md says how elsewhere)", err, cfg.BootstrapServers, cfg.Topic, cfg.DLQTopic)
	}
	if err == nil {
		started.Store(true)
		res, err = r.Run(ctx)
	} else if r.Close(); ctx.Err() != nil {
		err = nil // stopped while starting: a clean stop
	}
	attrs := []any{"received", res.Received, "duplicates", res.Duplicates, "dead_lettered", res.DeadLettered, "recovered", res.Recovered}
	if res.Received > 0 {
		rate := 0.0
		if res.Elapsed > 0 { // the gaps between the events, one fewer than the events
			rate = math.Round(float64(res.Received-1)/res.Elapsed.Seconds()*10) / 10
		}
		attrs = append(attrs, "elapsed", res.Elapsed.Round(time.Microsecond), "events_per_s", rate)
	}
	if err != nil {
		log.Error("Consumer stopped", append(attrs, "err", err)...)
		return 1
	}
	log.Info("Consumer stopped", attrs...)
	return 0
}

// healthcheck asks the /readyz of the consumer configured by e's args and environment, for Docker's
// HEALTHCHECK: 0 when ready, 1 when not, 2 when the configuration names no endpoint.
func healthcheck(e env) int {
	cfg, err := config.Parse(e.args[1:], e.getenv, e.stdout)
	switch {
	case errors.Is(err, config.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintln(e.stderr, "consumer healthcheck:", err)
		return 2
	case cfg.HTTPAddr == "":
		fmt.Fprintln(e.stderr, "consumer healthcheck: no endpoint to ask: set --http-addr or HTTP_ADDR")
		return 2
	}
	if err := telemetry.Probe(cfg.HTTPAddr); err != nil {
		fmt.Fprintln(e.stderr, "consumer healthcheck: not ready:", err)
		return 1
	}
	fmt.Fprintln(e.stdout, "ready")
	return 0
}

// watchdog cancels the run at the first stop signal, and ends the process at a second
// one or when the shutdown outlasts grace; a closed failed (the client is beyond help and
// the run ends by itself) starts the same wait. done is closed when run returns.
func watchdog(signals <-chan os.Signal, failed, done <-chan struct{}, cancel func(), exit func(code int), grace time.Duration,
	uncommitted func() int64, log *slog.Logger) {
	select {
	case <-signals:
		cancel()
	case <-failed:
	case <-done:
		return
	}
	select {
	case sig := <-signals:
		log.Error("Second stop signal: exiting now", "signal", sig.String(), "uncommitted", uncommitted())
		code := 1
		if s, ok := sig.(syscall.Signal); ok {
			code = 128 + int(s)
		}
		exit(code)
	case <-time.After(grace):
		log.Error(fmt.Sprintf("Shutdown took longer than %s: exiting now", grace), "uncommitted", uncommitted())
		exit(1)
	case <-done:
	}
}

// newLogger writes JSON for machines, or the tutorial's lines: the message, then key=value
// attributes, the level only when it is not INFO, and no time.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	if format == "json" {
		return slog.New(withTrace{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})})
	}
	return slog.New(&textHandler{w: w, mu: &sync.Mutex{}, level: level})
}

// withTrace adds the trace_id of a record's context, if any: the line joins the producer's line of the event.
type withTrace struct{ slog.Handler }

func (h withTrace) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	return h.Handler.Handle(ctx, r)
}
func (h withTrace) WithAttrs(as []slog.Attr) slog.Handler { return withTrace{h.Handler.WithAttrs(as)} }
func (h withTrace) WithGroup(name string) slog.Handler    { return withTrace{h.Handler.WithGroup(name)} }

type textHandler struct {
	w     io.Writer
	mu    *sync.Mutex
	level slog.Level
	attrs string // from With
}

func (h *textHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *textHandler) WithGroup(string) slog.Handler                { return h } // no groups are used

func (h *textHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	for _, a := range as {
		h2.attrs += attr(a)
	}
	return &h2
}

func (h *textHandler) Handle(_ context.Context, r slog.Record) error {
	line := r.Message + h.attrs
	if r.Level != slog.LevelInfo {
		line = r.Level.String() + " " + line
	}
	r.Attrs(func(a slog.Attr) bool { line += attr(a); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, line+"\n")
	return err
}

func attr(a slog.Attr) string {
	s := a.Value.Resolve().String()
	if s == "" || strings.ContainsAny(s, " =\"\n\t") {
		s = strconv.Quote(s)
	}
	return " " + a.Key + "=" + s
}
