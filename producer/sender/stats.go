package sender

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"time"
)

// brokerStats is the part of librdkafka's statistics (enabled with
// -X statistics.interval.ms=N) that says where a message's time goes, per
// broker, over the last interval: waiting in the client's queue
// (int_latency), waiting in the socket send buffer (outbuf_latency) and the
// broker's round trip (rtt).
type brokerStats struct {
	Name          string `json:"name"`
	NodeID        int    `json:"nodeid"`
	IntLatency    window `json:"int_latency"`
	OutbufLatency window `json:"outbuf_latency"`
	RTT           window `json:"rtt"`
}

// window is a librdkafka latency window, in microseconds.
type window struct {
	Avg int64 `json:"avg"`
	P50 int64 `json:"p50"`
	P99 int64 `json:"p99"`
	Max int64 `json:"max"`
	Cnt int64 `json:"cnt"`
}

// parseStats returns the brokers of a statistics document that saw
// traffic, by name; bootstrap and internal entries are left out.
func parseStats(doc string) ([]brokerStats, error) {
	var s struct {
		Brokers map[string]brokerStats `json:"brokers"`
	}
	if err := json.Unmarshal([]byte(doc), &s); err != nil {
		return nil, fmt.Errorf("parse librdkafka statistics: %w", err)
	}
	var out []brokerStats
	for _, b := range s.Brokers {
		if b.NodeID >= 0 && (b.IntLatency.Cnt > 0 || b.RTT.Cnt > 0) {
			out = append(out, b)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// attrs are the log attributes of one broker's windows.
func (b brokerStats) attrs() []any {
	a := []any{"broker", b.Name}
	for _, w := range []struct {
		name string
		w    window
	}{{"int_latency", b.IntLatency}, {"outbuf_latency", b.OutbufLatency}, {"rtt", b.RTT}} {
		a = append(a, w.name+"_avg", us(w.w.Avg), w.name+"_p50", us(w.w.P50), w.name+"_p99", us(w.w.P99), w.name+"_max", us(w.w.Max))
	}
	return a
}

func us(n int64) time.Duration { return time.Duration(n) * time.Microsecond }

// logStats writes one line per broker of a statistics document.
func logStats(log *slog.Logger, doc string) {
	brokers, err := parseStats(doc)
	if err != nil {
		log.Warn("Kafka statistics unreadable", "err", err)
		return
	}
	for _, b := range brokers {
		log.Info("Kafka statistics", b.attrs()...)
	}
}
