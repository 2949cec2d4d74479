// Package telemetry is what the consumer shows to operators: /healthz,
// /readyz and /metrics over HTTP, the counts behind them, and the
// OpenTelemetry tracer of its process spans.
package telemetry

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Serve listens on addr and answers until the returned function closes it:
// /healthz and /readyz with 200 while healthy and ready return nil, else 503
// and the reason; /metrics with the given metrics and the Go runtime's. On
// an error the returned function does nothing.
func Serve(addr string, log *slog.Logger, healthy, ready func() error, metrics ...prometheus.Collector) (closeServer func(), _ error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return func() {}, fmt.Errorf("HTTP endpoint: %w", err)
	}
	log.Info("HTTP endpoint: /healthz, /readyz, /metrics", "addr", ln.Addr().String())
	reg := prometheus.NewRegistry()
	reg.MustRegister(append(metrics, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))...)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	for path, check := range map[string]func() error{"/healthz": healthy, "/readyz": ready} {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, _ *http.Request) {
			if err := check(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, "ok\n")
		})
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }() // ends with ErrServerClosed
	return func() { _ = srv.Close() }, nil
}

// Healthcheck is the healthcheck subcommand of service, for Docker's
// HEALTHCHECK: it asks /readyz at addr and returns the exit code, 0 when
// ready, 1 when not, 2 for a bad configuration (cfgErr) or no addr.
func Healthcheck(service, addr string, cfgErr error, stdout, stderr io.Writer) int {
	switch {
	case errors.Is(cfgErr, flag.ErrHelp):
		return 0
	case cfgErr != nil:
		fmt.Fprintf(stderr, "%s healthcheck: %v\n", service, cfgErr)
		return 2
	case addr == "":
		fmt.Fprintf(stderr, "%s healthcheck: no endpoint to ask: set --http-addr or HTTP_ADDR\n", service)
		return 2
	}
	if err := Probe(addr); err != nil {
		fmt.Fprintf(stderr, "%s healthcheck: not ready: %v\n", service, err)
		return 1
	}
	fmt.Fprintln(stdout, "ready")
	return 0
}

// Probe asks /readyz of the endpoint at addr, as Docker's HEALTHCHECK does:
// nil on 200. An address with no host or an unspecified one (":9464",
// "0.0.0.0:9464") is asked on the loopback.
func Probe(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(host, port) + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if body, _ := io.ReadAll(io.LimitReader(resp.Body, 512)); resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// Tracer starts the process spans, named for the service. It exports them
// over OTLP/HTTP only when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; the SDK reads the other OTEL_*
// variables itself (OTEL_SERVICE_NAME wins over "consumer"). OTEL_SDK_DISABLED=true,
// OpenTelemetry's off switch, leaves no span and no trace context on the wire.
// Call stop to send what is buffered, within 2 s.
func Tracer(ctx context.Context, getenv func(string) string) (_ trace.Tracer, stop func(), _ error) {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return noop.Tracer{}, func() {}, nil
	}
	res, err := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", "consumer")),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	if err != nil {
		return nil, nil, err
	}
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		// Nothing would see the spans: they get ids, so that the context
		// flows, but are not recorded (traceparent flags 00), which halves
		// tracing's cost per event.
		tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithSampler(sdktrace.NeverSample()))
		return tp.Tracer("consumer"), func() {}, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("OTLP exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(exp))
	return tp.Tracer("consumer"), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = tp.Shutdown(ctx)
	}, nil
}

// Counter is a Prometheus counter that reads n.
func Counter(name, help string, n *atomic.Int64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(n.Load()) })
}

// Process starts the process span of m, a child of the producer's publish
// span when m's headers carry its trace context (traceparent, tracestate).
// Attributes follow OpenTelemetry's messaging conventions, and cost only
// where spans are exported.
func Process(tracer trace.Tracer, m *kafka.Message, group string) (context.Context, trace.Span) {
	ctx := propagation.TraceContext{}.Extract(context.Background(), headerCarrier(m.Headers))
	ctx, span := tracer.Start(ctx, "process "+*m.TopicPartition.Topic, trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", *m.TopicPartition.Topic),
			attribute.String("messaging.operation.type", "process"), attribute.String("messaging.operation.name", "process"),
			attribute.String("messaging.consumer.group.name", group),
			attribute.String("messaging.destination.partition.id", strconv.Itoa(int(m.TopicPartition.Partition))),
			attribute.Int64("messaging.kafka.offset", int64(m.TopicPartition.Offset)))
	}
	return ctx, span
}

// headerCarrier hands a message's trace context to the propagator; it is only read.
type headerCarrier []kafka.Header

func (h headerCarrier) Get(key string) string {
	for _, x := range h {
		if x.Key == key {
			return string(x.Value)
		}
	}
	return ""
}
func (h headerCarrier) Keys() []string {
	keys := make([]string, len(h))
	for i, x := range h {
		keys[i] = x.Key
	}
	return keys
}
func (h headerCarrier) Set(string, string) {}
