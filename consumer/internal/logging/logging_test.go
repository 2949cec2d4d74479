package logging

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestNewLogger_text(t *testing.T) {
	tests := []struct {
		name string
		log  func(*slog.Logger)
		want string
	}{
		{"info reads like the tutorial", func(l *slog.Logger) { l.Info("Received: 15:04:05") }, "Received: 15:04:05\n"},
		{"attributes follow", func(l *slog.Logger) { l.Info("Received: 15:04:05", "id", "3", "latency", 1500*time.Microsecond) },
			"Received: 15:04:05 id=3 latency=1.5ms\n"},
		{"other levels are named", func(l *slog.Logger) { l.Warn("retrying", "err", "broker down") }, "WARN retrying err=\"broker down\"\n"},
		{"debug is hidden at info", func(l *slog.Logger) { l.Debug("noise") }, ""},
		{"attributes given before come first", func(l *slog.Logger) { l.With("topic", "t").Info("x", "p", 0) }, "x topic=t p=0\n"},
		{"empty values are quoted", func(l *slog.Logger) { l.Info("x", "err", "") }, "x err=\"\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			tt.log(New(&b, "text", slog.LevelInfo))
			if b.String() != tt.want {
				t.Errorf("got %q, want %q", b.String(), tt.want)
			}
		})
	}
}

func TestNewLogger_json(t *testing.T) {
	var b strings.Builder
	New(&b, "json", slog.LevelInfo).Info("Received: 15:04:05", "id", "42")
	var rec map[string]any
	if err := json.Unmarshal([]byte(b.String()), &rec); err != nil {
		t.Fatalf("not JSON: %q", b.String())
	}
	if rec["msg"] != "Received: 15:04:05" || rec["id"] != "42" || rec["level"] != "INFO" {
		t.Errorf("record %v lacks the message, the id as a string or the level", rec)
	}
}
