package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// syncBuffer is a bytes.Buffer safe for the server's goroutines and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// serve starts Serve on a port of the loopback's choosing and returns the
// address it logged.
func serve(t *testing.T, healthy, ready func() error) string {
	t.Helper()
	var out syncBuffer
	closeServer, err := Serve("127.0.0.1:0", slog.New(slog.NewJSONHandler(&out, nil)), healthy, ready)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeServer)
	var rec struct{ Msg, Addr string }
	if err := json.Unmarshal([]byte(out.String()), &rec); err != nil || rec.Addr == "" {
		t.Fatalf("Serve logged %q, want its address", out.String())
	}
	return rec.Addr
}

func TestServe_unhealthyAfterAFatalErrorReadyWhenAMember(t *testing.T) {
	fatal := errors.New("fatal consumer error: Broker: Fenced instance id")
	addr := serve(t, func() error { return fatal }, func() error { return nil })
	for path, want := range map[string]string{"/healthz": "503 Fenced instance id", "/readyz": "200 ok"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, text, _ := strings.Cut(want, " ")
		if got := resp.Status[:3]; got != code || !strings.Contains(string(body), text) {
			t.Errorf("%s: %s %q, want %s with %q", path, resp.Status, body, code, text)
		}
	}
	_, port, _ := net.SplitHostPort(addr)
	if err := Probe("0.0.0.0:" + port); err != nil {
		t.Errorf("Probe: %v, want ready, asked on the loopback", err)
	}
}

func TestServe_aPortTakenIsAnError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closeServer, err := Serve(ln.Addr().String(), slog.New(slog.DiscardHandler), nil, nil)
	closeServer() // does nothing, and must not fail
	if err == nil || !strings.HasPrefix(err.Error(), "HTTP endpoint: listen tcp "+ln.Addr().String()) {
		t.Errorf("Serve = %v, want the port taken", err)
	}
}

// Docker's HEALTHCHECK: 0 when ready, 1 when not, 2 for a bad configuration.
func TestHealthcheck(t *testing.T) {
	ready := serve(t, func() error { return nil }, func() error { return nil })
	notReady := serve(t, func() error { return nil }, func() error { return errors.New("starting: checking the topics") })
	tests := []struct {
		name           string
		addr           string
		cfgErr         error
		code           int
		stdout, stderr string
	}{
		{"ready", ready, nil, 0, "ready\n", ""},
		{"not ready", notReady, nil, 1, "", "consumer healthcheck: not ready: 503 Service Unavailable: starting: checking the topics\n"},
		{"no endpoint", "", nil, 2, "", "consumer healthcheck: no endpoint to ask: set --http-addr or HTTP_ADDR\n"},
		{"bad configuration", ready, errors.New(`invalid --http-addr "x"`), 2, "", "consumer healthcheck: invalid --http-addr \"x\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := Healthcheck("consumer", tt.addr, tt.cfgErr, &stdout, &stderr)
			if code != tt.code || stdout.String() != tt.stdout || stderr.String() != tt.stderr {
				t.Errorf("Healthcheck = %d, stdout %q, stderr %q; want %d, %q, %q", code, stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

func TestTracer_offSwitchLeavesNoTraceContext(t *testing.T) {
	for disabled, want := range map[string]bool{"": true, "false": true, "true": false, "TRUE": false} {
		tracer, stop, err := Tracer(context.Background(), func(k string) string {
			if k == "OTEL_SDK_DISABLED" {
				return disabled
			}
			return ""
		})
		if err != nil {
			t.Fatal(err)
		}
		_, span := tracer.Start(context.Background(), "process timestamp")
		if span.SpanContext().IsValid() != want {
			t.Errorf("OTEL_SDK_DISABLED=%q: span has a trace id: %t, want %t", disabled, span.SpanContext().IsValid(), want)
		}
		if span.IsRecording() {
			t.Errorf("OTEL_SDK_DISABLED=%q: span recorded with no exporter", disabled)
		}
		span.End()
		stop()
	}
}

// A process span continues the trace of the producer's publish span, given
// in the message's traceparent header, and carries the messaging attributes.
func TestProcess_continuesTheProducersTraceWithItsAttributes(t *testing.T) {
	src := "timestamp"
	tests := []struct {
		name    string
		headers []kafka.Header
		parent  string // the parent's trace id; "" for none
	}{
		{"with the producer's trace context", []kafka.Header{{Key: "ce_id", Value: []byte("7")},
			{Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}}, "0af7651916cd43dd8448eb211c80319c"},
		{"without", []kafka.Header{{Key: "ce_id", Value: []byte("7")}}, ""},
		{"with a broken one", []kafka.Header{{Key: "traceparent", Value: []byte("00-xyz-01")}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spans := tracetest.NewSpanRecorder()
			tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)).Tracer("test")
			m := &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &src, Partition: 3, Offset: 42}, Headers: tt.headers}
			ctx, span := Process(tracer, m, "timestamp-consumer")
			if trace.SpanFromContext(ctx) != span {
				t.Error("the context does not carry the span")
			}
			span.End()
			sp := spans.Ended()[0]
			if got := sp.Parent(); tt.parent != "" && (got.TraceID().String() != tt.parent || !got.IsRemote()) ||
				tt.parent == "" && got.IsValid() {
				t.Errorf("parent %v, want trace %q", got, tt.parent)
			}
			if tt.parent != "" && sp.SpanContext().TraceID().String() != tt.parent {
				t.Errorf("trace %s, want the producer's %s", sp.SpanContext().TraceID(), tt.parent)
			}
			if sp.Name() != "process timestamp" || sp.SpanKind() != trace.SpanKindConsumer {
				t.Errorf("span %q of kind %s, want \"process timestamp\", a consumer span", sp.Name(), sp.SpanKind())
			}
			want := []attribute.KeyValue{attribute.String("messaging.system", "kafka"), attribute.String("messaging.destination.name", "timestamp"),
				attribute.String("messaging.operation.type", "process"), attribute.String("messaging.operation.name", "process"),
				attribute.String("messaging.consumer.group.name", "timestamp-consumer"),
				attribute.String("messaging.destination.partition.id", "3"), attribute.Int64("messaging.kafka.offset", 42)}
			got := map[attribute.Key]attribute.Value{}
			for _, a := range sp.Attributes() {
				got[a.Key] = a.Value
			}
			for _, a := range want {
				if got[a.Key] != a.Value {
					t.Errorf("attribute %s = %v, want %v", a.Key, got[a.Key].String(), a.Value.String())
				}
			}
		})
	}
}
