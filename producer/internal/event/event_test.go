package event

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// vectorsFile holds the wire-format vectors shared with the consumer's tests.
const vectorsFile = "../../../testdata/wire/vectors.json"

func TestEvent_matchesWireVectors(t *testing.T) {
	b, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Valid []struct {
			Name     string      `json:"name"`
			Produced bool        `json:"produced"`
			Value    string      `json:"value"`
			Headers  [][2]string `json:"headers"`
			Event    struct {
				ID     string    `json:"id"`
				Source string    `json:"source"`
				Time   time.Time `json:"time"`
			} `json:"event"`
		} `json:"valid"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	produced := 0
	for _, tc := range v.Valid {
		if !tc.Produced {
			continue
		}
		produced++
		t.Run(tc.Name, func(t *testing.T) {
			var id uint64
			if _, err := fmt.Sscan(tc.Event.ID, &id); err != nil {
				t.Fatal(err)
			}
			ev := Event{ID: id, Source: tc.Event.Source, Time: tc.Event.Time}
			if got := string(ev.Value(0)); got != tc.Value {
				t.Errorf("value %s, want %s", got, tc.Value)
			}
			hs := ev.Headers()
			if len(hs) != len(tc.Headers) {
				t.Fatalf("%d headers, want %d", len(hs), len(tc.Headers))
			}
			for i, h := range hs {
				if h.Key != tc.Headers[i][0] || string(h.Value) != tc.Headers[i][1] {
					t.Errorf("header %d: %s=%q, want %s=%q", i, h.Key, h.Value, tc.Headers[i][0], tc.Headers[i][1])
				}
			}
		})
	}
	if produced == 0 {
		t.Fatal("no vector is marked produced")
	}
}

func TestValue_padded(t *testing.T) {
	at := time.Date(2026, 11, 25, 15, 4, 5, 0, time.UTC)
	tests := []struct {
		size, wantLen int
	}{
		{size: 0, wantLen: ValueLen},
		{size: 1, wantLen: ValueLen},
		{size: ValueLen, wantLen: ValueLen},
		{size: ValueLen + 1, wantLen: ValueLen + 1},
		{size: 100, wantLen: 100},
		{size: 1024, wantLen: 1024},
		{size: MaxValueSize, wantLen: MaxValueSize},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.size), func(t *testing.T) {
			v := string(Event{Time: at}.Value(tt.size))
			if len(v) != tt.wantLen {
				t.Fatalf("value is %d bytes, want %d", len(v), tt.wantLen)
			}
			if !strings.HasPrefix(v, `{"timestamp":"15:04:05"`) || !strings.HasSuffix(v, "}") || strings.Trim(v[ValueLen-1:len(v)-1], " ") != "" {
				t.Fatalf("value %q is not the object padded with spaces before its closing brace", v)
			}
			var obj map[string]any
			if err := json.Unmarshal([]byte(v), &obj); err != nil {
				t.Fatalf("value is not JSON: %v", err)
			}
			if len(obj) != 1 || obj["timestamp"] != "15:04:05" {
				t.Fatalf("value decodes to %v, want only timestamp 15:04:05", obj)
			}
		})
	}
}

func TestHeaders_followTheEvent(t *testing.T) {
	at := time.Date(2026, 11, 25, 15, 4, 6, 123, time.FixedZone("X", 3600))
	got := map[string]string{}
	for _, h := range (Event{ID: 22, Source: "/b", Time: at}).Headers() {
		got[h.Key] = string(h.Value)
	}
	if got["ce_source"] != "/b" || got["ce_id"] != "22" || got["ce_time"] != "2026-11-25T15:04:06.000000123+01:00" {
		t.Errorf("headers %v", got)
	}
}

// BenchmarkEncode measures what the producer does for each event before
// the client takes it: a value padded to 100 bytes and the six headers.
func BenchmarkEncode(b *testing.B) {
	e := Event{ID: 42, Source: "/producer/host-1/1a2b3c4d", Time: time.Date(2026, 11, 25, 15, 4, 5, 123456789, time.UTC)}
	b.ReportAllocs()
	for b.Loop() {
		if v, h := e.Value(100), e.Headers(); len(v) != 100 || len(h) != 6 {
			b.Fatalf("value of %d bytes, %d headers", len(v), len(h))
		}
	}
}
