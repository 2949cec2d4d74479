// Package logging writes the consumer's lines: JSON for machines, or for
// people the tutorial's "Received: 15:04:05" followed by key=value pairs.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"go.opentelemetry.io/otel/trace"
)

// New writes JSON for machines or, for people, the tutorial's lines:
// the message, then key=value, the level unless INFO.
func New(w io.Writer, format string, level slog.Level) *slog.Logger {
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

// Kafka returns a channel for librdkafka's lines (go.logs.channel), written
// to log: errors as warnings (the client recovers from them), the rest at
// debug level. stop closes it, once no client writes to it, and waits.
func Kafka(log *slog.Logger) (logs chan kafka.LogEvent, stop func()) {
	logs, done := make(chan kafka.LogEvent, 1000), make(chan struct{})
	go func() {
		defer close(done)
		for l := range logs {
			level := slog.LevelDebug
			if l.Level <= 3 {
				level = slog.LevelWarn
			}
			log.Log(context.Background(), level, "librdkafka: "+l.Message, "client", l.Name, "facility", l.Tag)
		}
	}()
	return logs, func() {
		close(logs)
		<-done
	}
}

// Received are the attributes of a "Received:" line: the event's id (if
// any), where it was, its latency (if its time is known) and whether it is
// a copy.
func Received(id string, tp kafka.TopicPartition, sent, now time.Time, dup bool) []any {
	var attrs []any
	if id != "" {
		attrs = []any{"id", id}
	}
	attrs = append(attrs, "partition", tp.Partition, "offset", int64(tp.Offset))
	if !sent.IsZero() {
		attrs = append(attrs, "latency", now.Sub(sent).Round(time.Microsecond))
	}
	if dup {
		attrs = append(attrs, "duplicate", true)
	}
	return attrs
}

// Partitions names partitions as topic[n],topic[m].
func Partitions(tps []kafka.TopicPartition) string {
	s := make([]string, len(tps))
	for i, tp := range tps {
		s[i] = fmt.Sprintf("%s[%d]", *tp.Topic, tp.Partition)
	}
	return strings.Join(s, ",")
}
