// Command producer sends a timestamp event to Kafka every few seconds, like
// the tutorial's producer, and prints "Sending: HH:MM:SS" for each. A stop
// signal waits a little for delivery reports; a second, or a shutdown over
// 8 s, ends the process at once. Exit codes: 0 all delivered; 1 runtime
// failure; 2 bad configuration; 128+signal after a second stop signal.
// "producer healthcheck" asks a running producer's /readyz (exit 0 when ready).
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

	"github.com/event-driven-go/kafka-go/producer/internal/config"
	"github.com/event-driven-go/kafka-go/producer/internal/sender"
	"github.com/event-driven-go/kafka-go/producer/internal/telemetry"
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
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(args[1:], getenv, stdout, stderr)
	}
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
	tracer, shutdownTracer, err := telemetry.Tracer(context.Background(), getenv)
	if err != nil {
		fmt.Fprintln(stderr, "producer: tracing:", err)
		return 2
	}
	defer func() { // sends the spans still buffered, if exporting
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = shutdownTracer(ctx)
	}()
	host, _ := os.Hostname()
	// A random part names this process: a restarted producer counts its ids from 1 again.
	src := fmt.Sprintf("/producer/%s/%08x", host, rand.Uint32())
	s, err := sender.New(sender.Options{Topic: cfg.Topic, Source: src, Interval: cfg.Interval, Count: cfg.Count,
		ValueSize: cfg.ValueSize, LogEvents: cfg.LogEvents, KeyBySource: cfg.Key == "source", Tracer: tracer, Kafka: props}, log)
	if err != nil {
		fmt.Fprintln(stderr, "producer: invalid Kafka client configuration:", err)
		return 2
	}
	_, lib := kafka.LibraryVersion()
	log.Info("Producer started", "bootstrap_servers", cfg.BootstrapServers, "topic", cfg.Topic,
		"interval", cfg.Interval, "key", cfg.Key, "librdkafka", lib, "source", src)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var started atomic.Bool // the topic has its leaders
	if cfg.HTTPAddr != "" {
		ln, err := net.Listen("tcp", cfg.HTTPAddr)
		if err != nil {
			s.Close()
			log.Error("Producer stopped", "err", fmt.Errorf("HTTP endpoint: %w", err))
			return 1
		}
		defer telemetry.Serve(ln, s.Healthy, func() error {
			switch {
			case ctx.Err() != nil:
				return errors.New("stopping")
			case !started.Load():
				return errors.New("starting: waiting for the topic's leaders")
			}
			return s.Ready()
		}, s.Metrics()...)()
		log.Info("HTTP endpoint: /healthz, /readyz, /metrics", "addr", ln.Addr().String())
	}
	done := make(chan struct{})
	var watching sync.WaitGroup
	defer watching.Wait()
	defer close(done)
	w := stopWatch{signals: signals, failed: s.Failed(), limit: shutdownLimit, exit: exit, log: log, counts: s.Counts}
	watching.Go(func() { w.watch(done, stop) })

	setupCtx, cancel := context.WithTimeout(ctx, startupTimeout)
	err = s.CheckTopic(setupCtx)
	cancel()
	if err != nil && ctx.Err() == nil {
		s.Close()
		log.Error("Producer stopped", "err", startupError(err, cfg.BootstrapServers, cfg.Topic))
		return 1
	}
	started.Store(true)
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

// healthcheck asks the /readyz of the producer configured by args and
// getenv, for Docker's HEALTHCHECK: 0 when ready, 1 when not, 2 when the
// configuration names no endpoint.
func healthcheck(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := config.Parse(args, getenv, stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintln(stderr, "producer healthcheck:", err)
		return 2
	case cfg.HTTPAddr == "":
		fmt.Fprintln(stderr, "producer healthcheck: no endpoint to ask: set --http-addr or HTTP_ADDR")
		return 2
	}
	if err := telemetry.Probe(cfg.HTTPAddr); err != nil {
		fmt.Fprintln(stderr, "producer healthcheck: not ready:", err)
		return 1
	}
	fmt.Fprintln(stdout, "ready")
	return 0
}

// startupError says what failed at start: the topic is missing, the cluster
// did not answer, it refused, or the topic got no leader in time.
func startupError(err error, servers, topic string) error {
	switch {
	case errors.Is(err, sender.ErrMissing):
		return fmt.Errorf("topic %q does not exist at %s: the producer creates none; create it first "+
			"(go tool mage up does; docs/configuration.md says how elsewhere)", topic, servers)
	case errors.Is(err, sender.ErrRefused):
		//lint:ignore ST1005 Kafka is a name
		return fmt.Errorf("Kafka at %s %w", servers, err)
	case errors.Is(err, sender.ErrNoLeader):
		return fmt.Errorf("topic %q has a partition with no leader after %s", topic, startupTimeout)
	default:
		return fmt.Errorf("cannot reach Kafka at %s within %s: %w", servers, startupTimeout, err)
	}
}

// stopWatch turns stop signals into the program's shutdown.
type stopWatch struct {
	signals <-chan os.Signal
	failed  <-chan struct{} // closed by a fatal error, which ends the run as a signal does
	limit   time.Duration   // the longest shutdown after the first signal
	exit    func(code int)
	log     *slog.Logger
	counts  func() sender.Result // the events at stake, for the last line
}

// watch calls stop on the first signal, or waits as after one when a fatal
// error ends the run. Then, unless done is closed first, a second signal
// exits with 128+its number and a shutdown over limit with 1, each after a
// line with the counts (unconfirmed: accepted, no report).
func (w stopWatch) watch(done <-chan struct{}, stop func()) {
	select {
	case <-done:
		return
	case <-w.signals:
	case <-w.failed:
	}
	stop()
	limit := time.NewTimer(w.limit)
	defer limit.Stop()
	counts := func() []any {
		c := w.counts()
		return []any{"attempted", c.Attempted, "delivered", c.Delivered, "failed", c.Failed, "unknown", c.Unknown,
			"unconfirmed", c.Attempted - c.Delivered - c.Failed - c.Unknown}
	}
	select {
	case <-done:
	case sig := <-w.signals:
		w.log.Error("Second stop signal: exiting now", append(counts(), "signal", sig.String())...)
		w.exit(128 + int(sig.(syscall.Signal)))
	case <-limit.C:
		w.log.Error(fmt.Sprintf("Shutdown took longer than %s: exiting now", w.limit), counts()...)
		w.exit(1)
	}
}

// newLogger writes JSON for machines or, for people, the tutorial's lines:
// the message, then key=value, the level unless INFO.
func newLogger(w io.Writer, format string, level slog.Level) *slog.Logger {
	if format == "json" {
		return slog.New(traced{slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})})
	}
	return slog.New(&lineHandler{w: w, mu: new(sync.Mutex), level: level})
}

// traced adds the trace_id of a record's context, if it has one.
type traced struct{ slog.Handler }

func (h traced) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	return h.Handler.Handle(ctx, r)
}
func (h traced) WithAttrs(as []slog.Attr) slog.Handler { return traced{h.Handler.WithAttrs(as)} }
func (h traced) WithGroup(name string) slog.Handler    { return traced{h.Handler.WithGroup(name)} }

type lineHandler struct {
	w     io.Writer
	mu    *sync.Mutex
	level slog.Level
	with  string // attributes from With, formatted
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }
func (h *lineHandler) WithGroup(string) slog.Handler                { return h } // no groups are used
func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	for _, a := range as {
		h2.with += text(a)
	}
	return &h2
}

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	line := r.Message + h.with
	if r.Level != slog.LevelInfo {
		line = r.Level.String() + " " + line
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
