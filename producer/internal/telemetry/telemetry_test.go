package telemetry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestServe_answersHealthReadinessAndMetrics(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	notReady := errors.New("topic timestamp partition 0: leader 1 is DOWN")
	var ready atomic.Pointer[error]
	ready.Store(&notReady)
	defer Serve(ln, func() error { return nil }, func() error { return *ready.Load() })()
	base := "http://" + ln.Addr().String()

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
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "leader 1 is DOWN") {
		t.Errorf("/readyz: %d %q, want 503 and the reason", code, body)
	}
	if err := Probe(ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "503 Service Unavailable: topic timestamp") {
		t.Errorf("Probe of a service not ready: %v, want the status and the reason", err)
	}
	var none error
	ready.Store(&none)
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("/readyz: %d, want 200 once ready", code)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if err := Probe(":" + port); err != nil { // as in a container: HTTP_ADDR=:9464
		t.Errorf("Probe of :%s: %v, want it asked on the loopback", port, err)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics: %d, want 200 with the Go runtime's metrics:\n%.300s", code, body)
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
			tracer, shutdown, err := Tracer(context.Background(), func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			_, span := tracer.Start(context.Background(), "publish timestamp")
			if span.SpanContext().IsValid() != tt.context {
				t.Errorf("span has a trace id: %t, want %t", span.SpanContext().IsValid(), tt.context)
			}
			span.End()
			if err := shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			if posts.Load() != tt.exports {
				t.Errorf("%d exports, want %d", posts.Load(), tt.exports)
			}
		})
	}
}
