package event

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// vectorsFile holds the wire-format vectors shared with the producer's tests.
const vectorsFile = "../../../testdata/wire/vectors.json"

type vector struct {
	Name    string      `json:"name"`
	Value   string      `json:"value"`
	Headers [][2]string `json:"headers"`
	Event   struct {
		Timestamp string    `json:"timestamp"`
		ID        string    `json:"id"`
		Source    string    `json:"source"`
		Type      string    `json:"type"`
		Time      time.Time `json:"time"`
	} `json:"event"`
	Error string `json:"error"`
}

func loadVectors(t testing.TB) (valid, invalid []vector) {
	t.Helper()
	b, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var v struct{ Valid, Invalid []vector }
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v.Valid, v.Invalid
}

func (v vector) headers() []kafka.Header {
	hs := make([]kafka.Header, len(v.Headers))
	for i, h := range v.Headers {
		hs[i] = kafka.Header{Key: h[0], Value: []byte(h[1])}
	}
	return hs
}

func TestDecode_validVectors(t *testing.T) {
	valid, _ := loadVectors(t)
	for _, tc := range valid {
		t.Run(tc.Name, func(t *testing.T) {
			got, err := Decode([]byte(tc.Value), tc.headers())
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := Event{Timestamp: tc.Event.Timestamp, ID: tc.Event.ID, Source: tc.Event.Source,
				Type: tc.Event.Type, Time: tc.Event.Time}
			if !got.Time.Equal(want.Time) {
				t.Errorf("time %v, want %v", got.Time, want.Time)
			}
			got.Time, want.Time = time.Time{}, time.Time{}
			if got != want {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
}

func TestDecode_invalidVectors(t *testing.T) {
	_, invalid := loadVectors(t)
	for _, tc := range invalid {
		t.Run(tc.Name, func(t *testing.T) {
			_, err := Decode([]byte(tc.Value), tc.headers())
			if err == nil {
				t.Fatal("Decode accepted it")
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.Error) {
				t.Errorf("error %q, want ErrInvalid containing %q", err, tc.Error)
			}
		})
	}
}

func TestDecode_hugeValue(t *testing.T) {
	v := []byte(`{"timestamp":"15:04:05","pad":"` + strings.Repeat("x", MaxValueBytes) + `"}`)
	if _, err := Decode(v, nil); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("Decode of %d bytes: %v, want a size error", len(v), err)
	}
}

// FuzzDecode checks that no input makes Decode panic, and that what it
// accepts is a well-formed timestamp.
func FuzzDecode(f *testing.F) {
	valid, invalid := loadVectors(f)
	for _, v := range append(valid, invalid...) {
		tm, id := "", ""
		for _, h := range v.Headers {
			switch h[0] {
			case "ce_time":
				tm = h[1]
			case "ce_id":
				id = h[1]
			}
		}
		f.Add([]byte(v.Value), tm, id)
	}
	f.Add([]byte(`{"timestamp":"15:04:05"   }`), "", "")
	f.Add([]byte(`{"timestamp":"15:04:05"\t\n}  `), "", "")
	f.Add([]byte(`{"timestamp":"15:04:05" x}`), "", "")
	f.Add([]byte(`{"timestamp":"15:04:05" ,"timestamp":"16:04:05"}`), "", "")
	f.Fuzz(func(t *testing.T, value []byte, tm, id string) {
		var hs []kafka.Header
		if tm != "" {
			hs = append(hs, kafka.Header{Key: "ce_time", Value: []byte(tm)})
		}
		if id != "" {
			hs = append(hs, kafka.Header{Key: "ce_id", Value: []byte(id)})
		}
		ev, err := Decode(value, hs)
		// Read by hand or not, a JSON object means what encoding/json says it means.
		var obj struct{ Timestamp *string }
		if v := bytes.TrimSpace(value); len(v) > 0 && v[0] == '{' && tm == "" && len(value) <= MaxValueBytes {
			jerr := json.Unmarshal(value, &obj)
			ok := jerr == nil && obj.Timestamp != nil && len(*obj.Timestamp) == 8 && validTime(*obj.Timestamp)
			if (err == nil) != ok || (ok && *obj.Timestamp != ev.Timestamp) {
				t.Fatalf("Decode = %q, %v; encoding/json reads %q, %v", ev.Timestamp, err, *cmp.Or(obj.Timestamp, new(string)), jerr)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if _, perr := time.Parse(TimestampLayout, ev.Timestamp); perr != nil || len(ev.Timestamp) != 8 || ev.ID != id {
			t.Fatalf("accepted timestamp %q id %q", ev.Timestamp, ev.ID)
		}
	})
}

func validTime(s string) bool {
	_, err := time.Parse(TimestampLayout, s)
	return err == nil
}

// BenchmarkDecode measures what the consumer does for each event of our
// producer: a value padded to the bench's sizes, and the six headers.
func BenchmarkDecode(b *testing.B) {
	headers := []kafka.Header{
		{Key: "ce_specversion", Value: []byte("1.0")},
		{Key: "ce_id", Value: []byte("42")},
		{Key: "ce_source", Value: []byte("/producer/host-1/1a2b3c4d")},
		{Key: "ce_type", Value: []byte("io.github.event-driven-go.timestamp.v1")},
		{Key: "ce_time", Value: []byte("2026-11-25T15:04:05.123456789Z")},
		{Key: "content-type", Value: []byte("application/json")},
	}
	for _, size := range []int{100, 1024} {
		value := []byte(`{"timestamp":"15:04:05"` + strings.Repeat(" ", size-25) + `}`)
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(value, headers); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
