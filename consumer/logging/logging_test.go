package logging

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestText(t *testing.T) {
	tests := []struct {
		name string
		log  func(*slog.Logger)
		want string
	}{
		{"info reads like the tutorial", func(l *slog.Logger) { l.Info("Sending: 15:04:05") }, "Sending: 15:04:05\n"},
		{"attributes follow", func(l *slog.Logger) { l.Info("Sending: 15:04:05", "seq", 3, "latency", 1500*time.Microsecond) },
			"Sending: 15:04:05 seq=3 latency=1.5ms\n"},
		{"ids are for machines only", func(l *slog.Logger) { l.Info("x", "id", "abc", "seq", 1) }, "x seq=1\n"},
		{"other levels are named", func(l *slog.Logger) { l.Warn("retrying", "err", "broker down") }, "WARN retrying err=\"broker down\"\n"},
		{"debug is hidden at info", func(l *slog.Logger) { l.Debug("noise") }, ""},
		{"groups prefix keys", func(l *slog.Logger) { l.WithGroup("kafka").With("topic", "t").Info("x", "p", 0) }, "x kafka.topic=t kafka.p=0\n"},
		{"empty values are quoted", func(l *slog.Logger) { l.Info("x", "err", "") }, "x err=\"\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			tt.log(New(&b, Text, slog.LevelInfo))
			if b.String() != tt.want {
				t.Errorf("got %q, want %q", b.String(), tt.want)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	var b strings.Builder
	New(&b, JSON, slog.LevelInfo).Info("Sending: 15:04:05", "id", "abc", "seq", 3)
	var rec map[string]any
	if err := json.Unmarshal([]byte(b.String()), &rec); err != nil {
		t.Fatalf("not JSON: %q", b.String())
	}
	if rec["msg"] != "Sending: 15:04:05" || rec["id"] != "abc" || rec["seq"] != 3.0 {
		t.Errorf("record %v lacks the message, id or seq", rec)
	}
}
