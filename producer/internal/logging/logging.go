// Package logging writes the producer's lines: JSON for machines, or for
// people the tutorial's "Sending: 15:04:05" followed by key=value pairs.
package logging

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"

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
