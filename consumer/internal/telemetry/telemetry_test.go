package telemetry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestServe_unhealthyAfterAFatalErrorReadyWhenAMember(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fatal := errors.New("fatal consumer error: Broker: Fenced instance id")
	defer Serve(ln, func() error { return fatal }, func() error { return nil })()
	for path, want := range map[string]string{"/healthz": "503 Fenced instance id", "/readyz": "200 ok"} {
		resp, err := http.Get("http://" + ln.Addr().String() + path)
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
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if err := Probe("0.0.0.0:" + port); err != nil {
		t.Errorf("Probe: %v, want ready, asked on the loopback", err)
	}
}

func TestTracer_offSwitchLeavesNoTraceContext(t *testing.T) {
	for disabled, want := range map[string]bool{"": true, "false": true, "true": false, "TRUE": false} {
		tracer, shutdown, err := Tracer(context.Background(), func(k string) string {
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
		span.End()
		if err := shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
