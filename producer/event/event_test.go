package event

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
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
			id, err := ParseID(tc.Event.ID)
			if err != nil {
				t.Fatal(err)
			}
			ev := Event{ID: id, Source: tc.Event.Source, Sequence: tc.Event.Sequence, Time: tc.Event.Time}
			if got := string(ev.AppendValue(nil)); got != tc.Value {
				t.Errorf("value %s, want %s", got, tc.Value)
			}
			enc, err := NewEncoder(0)
			if err != nil {
				t.Fatal(err)
			}
			var msg kafka.Message
			enc.Encode(&ev, &msg)
			if string(msg.Value) != tc.Value {
				t.Errorf("encoded value %s, want %s", msg.Value, tc.Value)
			}
			hs := msg.Headers
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
	seen := map[ID]bool{}
	for range 1000 {
		id := NewID()
		if !uuid.MatchString(id.String()) {
			t.Fatalf("%q is not a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("%q generated twice", id)
		}
		seen[id] = true
		back, err := ParseID(id.String())
		if err != nil || back != id {
			t.Fatalf("ParseID(%q) = %v, %v; want the same id back", id, back, err)
		}
		text, _ := id.MarshalText()
		if string(text) != id.String() {
			t.Fatalf("MarshalText %q, String %q", text, id)
		}
	}
}

func TestParseID_rejectsNonUUIDs(t *testing.T) {
	for _, s := range []string{"", "8f0c2f6e", "8f0c2f6e-1d7b-4c8a-9e3f-5a6b7c8d9e0", "8f0c2f6e-1d7b-4c8a-9e3f-5a6b7c8d9e0g",
		"8f0c2f6e11d7b-4c8a-9e3f-5a6b7c8d9e0f", "8f0c2f6e-1d7b-4c8a-9e3f-5a6b7c8d9e0f0"} {
		if id, err := ParseID(s); err == nil {
			t.Errorf("ParseID(%q) = %v, want an error", s, id)
		}
	}
}

func TestAppendPaddedValue(t *testing.T) {
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
			b := Event{Time: at}.AppendPaddedValue([]byte("keep:"), tt.size)
			v, ok := strings.CutPrefix(string(b), "keep:")
			if !ok {
				t.Fatalf("the bytes already in dst were not kept")
			}
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

func TestNewEncoder_refusesSizesThatCannotHoldTheValue(t *testing.T) {
	tests := []struct {
		size int
		ok   bool
	}{
		{0, true}, {1, false}, {ValueLen - 1, false}, {ValueLen, true}, {1024, true},
		{MaxValueSize, true}, {MaxValueSize + 1, false}, {-1, false},
	}
	for _, tt := range tests {
		_, err := NewEncoder(tt.size)
		if (err == nil) != tt.ok {
			t.Errorf("NewEncoder(%d): error %v, want ok=%v", tt.size, err, tt.ok)
		}
	}
}

func TestEncoder_reusesBuffersAndFollowsTheSource(t *testing.T) {
	enc, err := NewEncoder(100)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 25, 15, 4, 5, 123, time.UTC)
	var first, second kafka.Message
	enc.Encode(&Event{ID: NewID(), Source: "/a", Sequence: 1, Time: at}, &first)
	firstValue := string(first.Value)
	enc.Encode(&Event{ID: NewID(), Source: "/b", Sequence: 22, Time: at.Add(time.Second)}, &second)
	if len(second.Value) != 100 || !strings.HasPrefix(string(second.Value), `{"timestamp":"15:04:06"`) {
		t.Errorf("second value %q", second.Value)
	}
	if firstValue == string(second.Value) {
		t.Errorf("both values read %q", firstValue)
	}
	got := map[string]string{}
	for _, h := range second.Headers {
		got[h.Key] = string(h.Value)
	}
	if got[HeaderSource] != "/b" || got[HeaderSequence] != "22" || got[HeaderTime] != "2026-11-25T15:04:06.000000123Z" {
		t.Errorf("second headers %v", got)
	}
	var third kafka.Message
	enc.Encode(&Event{Source: "/b", Time: at.Add(time.Second).In(time.FixedZone("X", 3600))}, &third)
	if !strings.HasPrefix(string(third.Value), `{"timestamp":"16:04:06"`) {
		t.Errorf("the same second in another zone encodes as %q", third.Value)
	}
}

// BenchmarkEncode measures what the producer does for each event: a new
// event with a fresh id, encoded into a message padded to 100 bytes.
func BenchmarkEncode(b *testing.B) {
	now := time.Now()
	enc, err := NewEncoder(100)
	if err != nil {
		b.Fatal(err)
	}
	var msg kafka.Message
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev := New("/producer/bench", uint64(i), now)
		enc.Encode(&ev, &msg)
	}
}
