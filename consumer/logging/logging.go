// Package logging builds the consumer's logger: lines that read like the
// tutorial's output for people, or one JSON object per line for machines.
package logging

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
)

// Log formats accepted by New.
const (
	Text = "text"
	JSON = "json"
)

// hiddenInText are attributes only machines need; text lines leave them out.
var hiddenInText = map[string]bool{"id": true, "source": true}

// New returns a logger that writes records at or above level to w, as
// tutorial-style text ("Received: 15:04:05 latency=1.2ms") or as JSON.
func New(w io.Writer, format string, level slog.Level) *slog.Logger {
	if format == JSON {
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
	}
	return slog.New(&textHandler{mu: &sync.Mutex{}, w: w, level: level})
}

// textHandler prints the message as is, then key=value attributes; the
// level is shown only when it is not INFO, and no time is printed.
type textHandler struct {
	mu     *sync.Mutex
	w      io.Writer
	level  slog.Level
	attrs  []byte // preformatted attributes from WithAttrs
	prefix string // group prefix from WithGroup
}

func (h *textHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *textHandler) Handle(_ context.Context, r slog.Record) error {
	buf := make([]byte, 0, 128)
	if r.Level != slog.LevelInfo {
		buf = append(buf, r.Level.String()...)
		buf = append(buf, ' ')
	}
	buf = append(buf, r.Message...)
	buf = append(buf, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		buf = appendAttr(buf, h.prefix, a)
		return true
	})
	buf = append(buf, '\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := h.w.Write(buf)
	return err
}

func (h *textHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append([]byte(nil), h.attrs...)
	for _, a := range as {
		h2.attrs = appendAttr(h2.attrs, h.prefix, a)
	}
	return &h2
}

func (h *textHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.prefix = h.prefix + name + "."
	return &h2
}

func appendAttr(buf []byte, prefix string, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) || hiddenInText[a.Key] {
		return buf
	}
	if a.Value.Kind() == slog.KindGroup {
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, ga := range a.Value.Group() {
			buf = appendAttr(buf, prefix, ga)
		}
		return buf
	}
	buf = append(buf, ' ')
	buf = append(buf, prefix...)
	buf = append(buf, a.Key...)
	buf = append(buf, '=')
	s := a.Value.String()
	if s == "" || strings.ContainsAny(s, " =\"\n\t") {
		return strconv.AppendQuote(buf, s)
	}
	return append(buf, s...)
}
