package event

import (
	"encoding/json"
	"os"
	"regexp"
	"testing"
	"time"
)

// vectorsFile holds the wire-format vectors shared with the consumer's tests.
const vectorsFile = "../../testdata/wire/vectors.json"

type vectors struct {
	Valid []struct {
		Name     string      `json:"name"`
		Produced bool        `json:"produced"`
		Value    string      `json:"value"`
		Headers  [][2]string `json:"headers"`
		Event    struct {
			ID       string    `json:"id"`
			Source   string    `json:"source"`
			Sequence uint64    `json:"sequence"`
			Time     time.Time `json:"time"`
		} `json:"event"`
	} `json:"valid"`
}

func TestEvent_matchesWireVectors(t *testing.T) {
	b, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
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
			ev := Event{ID: tc.Event.ID, Source: tc.Event.Source, Sequence: tc.Event.Sequence, Time: tc.Event.Time}
			if got := string(ev.AppendValue(nil)); got != tc.Value {
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

func TestNewID(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := NewID()
		if !uuid.MatchString(id) {
			t.Fatalf("%q is not a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("%q generated twice", id)
		}
		seen[id] = true
	}
}

func BenchmarkEncode(b *testing.B) {
	now := time.Now()
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := New("/producer/bench", uint64(i), now)
		buf = ev.AppendValue(buf[:0])
		_ = ev.Headers()
	}
}
