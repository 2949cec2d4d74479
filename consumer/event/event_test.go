package event

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// vectorsFile holds the wire-format vectors shared with the producer's tests.
const vectorsFile = "../../testdata/wire/vectors.json"

type vector struct {
	Name    string      `json:"name"`
	Value   string      `json:"value"`
	Headers [][2]string `json:"headers"`
	Event   struct {
		Timestamp string    `json:"timestamp"`
		ID        string    `json:"id"`
		Source    string    `json:"source"`
		Type      string    `json:"type"`
		Sequence  uint64    `json:"sequence"`
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
				Type: tc.Event.Type, Sequence: tc.Event.Sequence, Time: tc.Event.Time}
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
		seq, tm := "", ""
		for _, h := range v.Headers {
			switch h[0] {
			case HeaderSequence:
				seq = h[1]
			case HeaderTime:
				tm = h[1]
			}
		}
		f.Add([]byte(v.Value), tm, seq)
	}
	f.Add([]byte(`{"timestamp":"15:04:05"   }`), "", "")
	f.Add([]byte(`{"timestamp":"15:04:05"\t\n}  `), "", "")
	f.Fuzz(func(t *testing.T, value []byte, tm, seq string) {
		var hs []kafka.Header
		if tm != "" {
			hs = append(hs, kafka.Header{Key: HeaderTime, Value: []byte(tm)})
		}
		if seq != "" {
			hs = append(hs, kafka.Header{Key: HeaderSequence, Value: []byte(seq)})
		}
		ev, err := Decode(value, hs)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
			return
		}
		if _, perr := time.Parse(TimestampLayout, ev.Timestamp); perr != nil || len(ev.Timestamp) != 8 {
			t.Fatalf("accepted timestamp %q", ev.Timestamp)
		}
		// The shortcut for the producer's form must read what the JSON decoder reads.
		if ts, ok := producerForm(value); ok {
			if want, err := decodeJSON(value); err != nil || string(want) != string(ts) {
				t.Fatalf("producerForm read %q, the JSON decoder %q, %v", ts, want, err)
			}
		}
	})
}

func TestProducerForm(t *testing.T) {
	tests := []struct {
		value string
		ok    bool // read without the JSON decoder
	}{
		{`{"timestamp":"15:04:05"}`, true},
		{`{"timestamp":"15:04:05"` + strings.Repeat(" ", 1000) + `}`, true},
		{`{"timestamp":"15:04:05" ` + "\t\r\n" + `}` + "\n", true},
		{`{"timestamp": "15:04:05"}`, false},
		{` {"timestamp":"15:04:05"}`, false},
		{`{"timestamp":"15:04:05","zone":"UTC"}`, false},
		{`{"timestamp":"15:04:05"  x}`, false},
		{`{"timestamp":"15:04:05"`, false},
		{`{"timestamp":"15\u003a04:0"}`, false},
		{`{"timestamp":"15:04:05}`, false},
		{`"15:04:05"`, false},
	}
	for _, tt := range tests {
		ts, ok := producerForm([]byte(tt.value))
		if ok != tt.ok || (ok && string(ts) != "15:04:05") {
			t.Errorf("producerForm(%.40q) = %q, %v; want ok=%v", tt.value, ts, ok, tt.ok)
		}
		// Either way, Decode reads it as the JSON decoder does.
		ev, err := Decode([]byte(tt.value), nil)
		want, jerr := decodeJSON([]byte(tt.value))
		if jerr == nil {
			if _, perr := time.Parse(TimestampLayout, string(want)); perr != nil || len(want) != len(TimestampLayout) {
				jerr = perr
			}
		}
		if (err == nil) != (jerr == nil) || (err == nil && ev.Timestamp != string(want)) {
			t.Errorf("Decode(%.40q) = %q, %v; the JSON decoder reads %q, %v", tt.value, ev.Timestamp, err, want, jerr)
		}
	}
}

func TestDecoder_reusesStringsAcrossEvents(t *testing.T) {
	var d Decoder
	hs := []kafka.Header{{Key: HeaderSource, Value: []byte("/p/1")}, {Key: HeaderType, Value: []byte("t.v1")}}
	a, err := d.Decode([]byte(`{"timestamp":"15:04:05"}`), hs)
	if err != nil {
		t.Fatal(err)
	}
	b, err := d.Decode([]byte(`{"timestamp":"15:04:06"}`), []kafka.Header{{Key: HeaderSource, Value: []byte("/p/2")}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Timestamp != "15:04:05" || a.Source != "/p/1" || a.Type != "t.v1" || b.Timestamp != "15:04:06" || b.Source != "/p/2" || b.Type != "" {
		t.Fatalf("events %+v and %+v do not keep their own values", a, b)
	}
	again := []byte(`{"timestamp":"15:04:06"}`)
	if n := testing.AllocsPerRun(100, func() { _, _ = d.Decode(again, hs[:1]) }); n > 0 {
		t.Errorf("decoding a repeated timestamp and source allocates %v times", n)
	}
}

// BenchmarkDecode measures what the consumer does for each event of our
// producer: a value padded to 100 bytes and the seven headers, decoded by
// the consumer's long-lived Decoder.
func BenchmarkDecode(b *testing.B) {
	value := []byte(`{"timestamp":"15:04:05"` + strings.Repeat(" ", 100-25) + `}`)
	headers := []kafka.Header{
		{Key: HeaderSpecVersion, Value: []byte("1.0")},
		{Key: HeaderID, Value: []byte("8f0c2f6e-1d7b-4c8a-9e3f-5a6b7c8d9e0f")},
		{Key: HeaderSource, Value: []byte("/producer/host-1/1a2b3c4d")},
		{Key: HeaderType, Value: []byte("io.github.event-driven-go.timestamp.v1")},
		{Key: HeaderTime, Value: []byte("2026-11-25T15:04:05.123456789Z")},
		{Key: HeaderSequence, Value: []byte("42")},
		{Key: HeaderContentType, Value: []byte("application/json")},
	}
	var d Decoder
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Decode(value, headers); err != nil {
			b.Fatal(err)
		}
	}
}
