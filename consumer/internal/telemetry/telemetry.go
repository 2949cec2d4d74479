// Package telemetry is what the consumer shows to operators: /healthz, /readyz and /metrics over HTTP,
// and the OpenTelemetry tracer of its process spans.
package telemetry

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Serve answers on ln until the returned function closes it: /healthz and /readyz with 200 while healthy and
// ready return nil, else 503 and the reason; /metrics with the given metrics and the Go runtime's.
func Serve(ln net.Listener, healthy, ready func() error, metrics ...prometheus.Collector) (closeServer func()) {
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
	return func() { _ = srv.Close() }
}

// Probe asks /readyz of the endpoint at addr, as Docker's HEALTHCHECK does: nil on 200. An address with no
// host or an unspecified one (":9464", "0.0.0.0:9464") is asked on the loopback.
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
// Call shutdown to send what is buffered.
func Tracer(ctx context.Context, getenv func(string) string) (_ trace.Tracer, shutdown func(context.Context) error, _ error) {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return noop.Tracer{}, func(context.Context) error { return nil }, nil
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
		return tp.Tracer("consumer"), tp.Shutdown, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("OTLP exporter: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithResource(res), sdktrace.WithBatcher(exp))
	return tp.Tracer("consumer"), tp.Shutdown, nil
}
