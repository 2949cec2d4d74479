package telemetry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

func TestServe_unhealthyAfterAFatalErrorReadyWhenAMember(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fatal := errors.New("fatal consumer error: Broker: Fenced instance id")
	defer Serve(ln, NewRegistry(), func() error { return fatal }, func() error { return nil })()
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

func TestHeaders_giveTheProducersTraceContext(t *testing.T) {
	hs := []kafka.Header{{Key: "ce_id", Value: []byte("7")},
		{Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}}
	tp, err := Tracer(context.Background(), func(string) string { return "" }, "consumer")
	if err != nil {
		t.Fatal(err)
	}
	ctx := propagation.TraceContext{}.Extract(context.Background(), Headers{&hs})
	_, span := tp.Tracer("test").Start(ctx, "process timestamp")
	defer span.End()
	if got := span.SpanContext().TraceID().String(); got != "0af7651916cd43dd8448eb211c80319c" {
		t.Errorf("trace id %s, want the producer's", got)
	}
	if !trace.SpanContextFromContext(ctx).IsRemote() {
		t.Error("the extracted context is not marked remote")
	}
}
