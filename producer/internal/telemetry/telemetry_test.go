package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// serve starts Serve on a free port of the loopback and returns its
// address, read from the line Serve logs.
func serve(t *testing.T, healthy, ready func() error, metrics ...prometheus.Collector) string {
	t.Helper()
	var out bytes.Buffer
	closeServer, err := Serve("127.0.0.1:0", slog.New(slog.NewJSONHandler(&out, nil)), healthy, ready, metrics...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeServer)
	var line struct{ Msg, Addr string }
	if err := json.Unmarshal(out.Bytes(), &line); err != nil || line.Msg != "HTTP endpoint: /healthz, /readyz, /metrics" || line.Addr == "" {
		t.Fatalf("Serve logged %q, want the endpoint and its address", out.String())
	}
	return line.Addr
}

func TestServe_answersHealthReadinessAndMetrics(t *testing.T) {
	notReady := errors.New("every broker is down, by the Kafka client; nothing delivered since")
	var ready atomic.Pointer[error]
	ready.Store(&notReady)
	var sent atomic.Int64
	sent.Store(42)
	addr := serve(t, func() error { return nil }, func() error { return *ready.Load() }, Counter("producer_events_sent_total", "Events.", &sent))
	base := "http://" + addr

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q, want 200 ok", code, body)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "every broker is down") {
		t.Errorf("/readyz: %d %q, want 503 and the reason", code, body)
	}
	if err := Probe(addr); err == nil || !strings.Contains(err.Error(), "503 Service Unavailable: every broker is down") {
		t.Errorf("Probe of a service not ready: %v, want the status and the reason", err)
	}
	var none error
	ready.Store(&none)
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz: %d, want 200 once ready", code)
	}
	_, port, _ := net.SplitHostPort(addr)
	if err := Probe(":" + port); err != nil { // as in a container: HTTP_ADDR=:9464
		t.Errorf("Probe of :%s: %v, want it asked on the loopback", port, err)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "producer_events_sent_total 42") {
		t.Errorf("/metrics: %d, want 200 with the given metrics and the Go runtime's:\n%.300s", code, body)
	}
	if code, _ := get("/nothing"); code != 404 {
		t.Errorf("/nothing: %d, want 404", code)
	}
}

func TestServe_failsOnATakenAddressAndStopsWhenClosed(t *testing.T) {
	ok := func() error { return nil }
	addr := serve(t, ok, ok)
	if closeServer, err := Serve(addr, slog.New(slog.DiscardHandler), ok, ok); err == nil || !strings.HasPrefix(err.Error(), "HTTP endpoint: listen tcp "+addr) {
		if closeServer != nil {
			closeServer()
		}
		t.Fatalf("Serve on a taken address = %v, want the listener's error", err)
	}
	var out bytes.Buffer
	closeServer, err := Serve("127.0.0.1:0", slog.New(slog.NewTextHandler(&out, nil)), ok, ok)
	if err != nil {
		t.Fatal(err)
	}
	_, other, _ := strings.Cut(strings.TrimSpace(out.String()), "addr=")
	if err := Probe(other); err != nil {
		t.Fatalf("Probe of %s: %v", other, err)
	}
	closeServer()
	if err := Probe(other); err == nil {
		t.Errorf("%s still answers once closed", other)
	}
}

func TestHealthcheck(t *testing.T) {
	down := errors.New("stopping")
	notReady := serve(t, func() error { return nil }, func() error { return down })
	ready := serve(t, func() error { return nil }, func() error { return nil })
	tests := []struct {
		name           string
		addr           string
		cfgErr         error
		code           int
		stdout, stderr string // stderr: its start
	}{
		{"help", "", flag.ErrHelp, 0, "", ""},
		{"bad configuration", ready, errors.New(`invalid --count "x"`), 2, "", `service healthcheck: invalid --count "x"` + "\n"},
		{"no endpoint", "", nil, 2, "", "service healthcheck: no endpoint to ask: set --http-addr or HTTP_ADDR\n"},
		{"not ready", notReady, nil, 1, "", "service healthcheck: not ready: 503 Service Unavailable: stopping\n"},
		{"ready", ready, nil, 0, "ready\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			if code := Healthcheck("service", tt.addr, tt.cfgErr, &stdout, &stderr); code != tt.code || stdout.String() != tt.stdout || stderr.String() != tt.stderr {
				t.Errorf("Healthcheck = %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

func TestTracer_exportsOnlyWhenAnEndpointIsSet(t *testing.T) {
	var posts atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" {
			posts.Add(1)
		}
	}))
	defer collector.Close()
	tests := []struct {
		name    string
		env     map[string]string
		context bool  // spans have ids, so that a traceparent goes out
		exports int32 // posts to the collector
	}{
		{"no endpoint", nil, true, 0},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL}, true, 1},
		{"SDK disabled", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL, "OTEL_SDK_DISABLED": "true"}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			posts.Store(0)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tt.env["OTEL_EXPORTER_OTLP_ENDPOINT"]) // the exporter reads it itself
			tracer, stop, err := Tracer(context.Background(), func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			_, span := tracer.Start(context.Background(), "publish timestamp")
			if span.SpanContext().IsValid() != tt.context {
				t.Errorf("span has a trace id: %t, want %t", span.SpanContext().IsValid(), tt.context)
			}
			span.End()
			stop()
			if posts.Load() != tt.exports {
				t.Errorf("%d exports, want %d", posts.Load(), tt.exports)
			}
		})
	}
}

// headers are an event's CloudEvents headers, as the producer makes them.
func headers() []kafka.Header {
	return []kafka.Header{{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte("7")}}
}

// The publish span is a producer span named for the topic; its trace
// context goes out in the headers, and the delivery report ends it with
// where the event was written or why it was not.
func TestPublish_spanCarriedInTheHeadersAndEndedByTheDeliveryReport(t *testing.T) {
	topic := "timestamp"
	tests := []struct {
		name   string
		report kafka.TopicPartition
		status codes.Code
		attrs  map[string]string // besides the span's own
	}{
		{"delivered", kafka.TopicPartition{Topic: &topic, Partition: 3, Offset: 42}, codes.Unset,
			map[string]string{"messaging.destination.partition.id": "3", "messaging.kafka.offset": "42"}},
		{"failed", kafka.TopicPartition{Topic: &topic, Error: kafka.NewError(kafka.ErrMsgTimedOut, "Local: Message timed out", false)}, codes.Error,
			map[string]string{"messaging.destination.partition.id": "", "messaging.kafka.offset": ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spans := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
			ctx, span, hs := Publish(context.Background(), tp.Tracer("test"), topic, 7, headers())
			sc := span.SpanContext()
			if !trace.SpanContextFromContext(ctx).Equal(sc) {
				t.Error("the returned context does not carry the publish span: its lines would not name the trace")
			}
			if len(hs) != 3 || hs[0].Key != "ce_specversion" || hs[1].Key != "ce_id" || hs[2].Key != "traceparent" {
				t.Fatalf("headers %v, want the event's two and traceparent", hs)
			}
			if want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"; string(hs[2].Value) != want {
				t.Errorf("traceparent %q, want %q", hs[2].Value, want)
			}
			if n := len(spans.Ended()); n != 0 {
				t.Fatalf("%d spans ended before the delivery report", n)
			}
			Delivered(span, tt.report)
			ended := spans.Ended()
			if len(ended) != 1 {
				t.Fatalf("%d spans ended, want the publish span", len(ended))
			}
			sp := ended[0]
			if sp.Name() != "publish timestamp" || sp.SpanKind() != trace.SpanKindProducer {
				t.Errorf("span %q of kind %s, want \"publish timestamp\" of kind producer", sp.Name(), sp.SpanKind())
			}
			attrs := map[string]string{}
			for _, a := range sp.Attributes() {
				attrs[string(a.Key)] = a.Value.String()
			}
			want := map[string]string{"messaging.system": "kafka", "messaging.destination.name": "timestamp",
				"messaging.operation.type": "send", "messaging.operation.name": "publish", "messaging.message.id": "7"}
			for k, v := range tt.attrs {
				want[k] = v
			}
			for k, v := range want {
				if attrs[k] != v {
					t.Errorf("attribute %s = %q, want %q (all: %v)", k, attrs[k], v, attrs)
				}
			}
			if sp.Status().Code != tt.status || tt.status == codes.Error && sp.Status().Description != "Local: Message timed out" {
				t.Errorf("status %v, want %v with the report's error", sp.Status(), tt.status)
			}
		})
	}
}

// With OpenTelemetry off, nothing is added to the headers, and a delivery
// report ends the span that is none without a fault.
func TestPublish_noTraceContextWithoutATracer(t *testing.T) {
	ctx, span, hs := Publish(context.Background(), noop.Tracer{}, "timestamp", 7, headers())
	if len(hs) != 2 || trace.SpanContextFromContext(ctx).IsValid() {
		t.Errorf("headers %v, context %v; want the event's two headers and no trace", hs, trace.SpanContextFromContext(ctx))
	}
	Delivered(span, kafka.TopicPartition{Error: errors.New("purged")}) // no panic
}
