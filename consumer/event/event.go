// Package event decodes timestamp events from Kafka messages.
//
// It accepts the value forms of the tutorial, the object
// {"timestamp":"15:04:05"} and the bare JSON string "15:04:05", and reads
// the optional CloudEvents headers (Kafka binding, binary mode) that carry
// the id, source, sequence and precise send time. Events without headers,
// as the tutorial's Python producer sends them, are valid.
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TimestampLayout is the value's time format, the tutorial's %H:%M:%S.
const TimestampLayout = "15:04:05"

// MaxValueBytes is the largest value accepted; a timestamp event is a few
// dozen bytes, so anything this large is not one.
const MaxValueBytes = 64 << 10

// Header names of the CloudEvents Kafka binding, plus the sequence extension.
const (
	HeaderSpecVersion = "ce_specversion"
	HeaderID          = "ce_id"
	HeaderSource      = "ce_source"
	HeaderType        = "ce_type"
	HeaderTime        = "ce_time"
	HeaderSequence    = "ce_sequence"
	HeaderContentType = "content-type"
)

// Event is a decoded timestamp event. Header fields are zero when the
// sender did not set them.
type Event struct {
	Timestamp string    // "15:04:05", from the value
	ID        string    // ce_id
	Source    string    // ce_source
	Type      string    // ce_type
	Sequence  uint64    // ce_sequence; 0 when absent
	Time      time.Time // ce_time, the precise send time
}

// ErrInvalid is wrapped by every decoding error.
var ErrInvalid = errors.New("invalid event")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Decode reads an event from a message value and its headers. The error
// says what is wrong in words fit for a dead-letter header.
func Decode(value []byte, headers []kafka.Header) (Event, error) {
	var d Decoder
	return d.Decode(value, headers)
}

// Decoder decodes a stream of events. It keeps the strings of the previous
// event, so that a timestamp, source or type equal to the last one costs no
// allocation: in a stream they change once a second, or never. The zero
// value is ready to use; a Decoder is not safe for concurrent use.
type Decoder struct {
	timestamp, source, typ string
}

// Decode reads an event from a message value and its headers, as the
// package's Decode does.
func (d *Decoder) Decode(value []byte, headers []kafka.Header) (Event, error) {
	ts, err := decodeValue(value)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Timestamp: reuse(&d.timestamp, ts)}
	for _, h := range headers {
		if err := d.setHeader(&ev, h.Key, h.Value); err != nil {
			return Event{}, err
		}
	}
	return ev, nil
}

// reuse returns *last when it reads b, else remembers and returns a new string.
func reuse(last *string, b []byte) string {
	if *last != string(b) {
		*last = string(b)
	}
	return *last
}

// decodeValue returns the timestamp of a value, checked to be HH:MM:SS.
func decodeValue(value []byte) ([]byte, error) {
	if len(value) > MaxValueBytes {
		return nil, invalid("value is %d bytes; at most %d allowed", len(value), MaxValueBytes)
	}
	ts, ok := producerForm(value)
	if !ok {
		var err error
		if ts, err = decodeJSON(value); err != nil {
			return nil, err
		}
	}
	if len(ts) != len(TimestampLayout) {
		return nil, invalid("timestamp %q is not HH:MM:SS", preview(ts))
	}
	if _, err := time.Parse(TimestampLayout, string(ts)); err != nil {
		return nil, invalid("timestamp %q is not HH:MM:SS", ts)
	}
	return ts, nil
}

// producerForm reads the value our producer sends, {"timestamp":"15:04:05"}
// with optional spaces before the closing brace, without the JSON decoder.
// ok is false for any other form; the JSON decoder then reads it.
func producerForm(v []byte) (ts []byte, ok bool) {
	const head = `{"timestamp":"`
	if len(v) < len(head)+len(TimestampLayout)+2 || string(v[:len(head)]) != head {
		return nil, false
	}
	ts = v[len(head) : len(head)+len(TimestampLayout)]
	for _, c := range ts {
		if (c < '0' || c > '9') && c != ':' {
			return nil, false // escapes and the like: leave them to the decoder
		}
	}
	rest := bytes.TrimRight(v[len(head)+len(TimestampLayout):], " \t\r\n")
	if len(rest) < 2 || rest[0] != '"' || rest[len(rest)-1] != '}' {
		return nil, false
	}
	for _, c := range rest[1 : len(rest)-1] {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			return nil, false
		}
	}
	return ts, true
}

// decodeJSON reads the timestamp of any value of the tutorial's two forms.
func decodeJSON(value []byte) ([]byte, error) {
	v := bytes.TrimLeft(value, " \t\r\n")
	if len(v) == 0 {
		return nil, invalid("empty value")
	}
	var ts string
	switch v[0] {
	case '{':
		var obj struct {
			Timestamp *string `json:"timestamp"`
		}
		if err := json.Unmarshal(value, &obj); err != nil {
			return nil, invalid("value is not a JSON object with a string timestamp: %v", err)
		}
		if obj.Timestamp == nil {
			return nil, invalid(`value has no "timestamp" field`)
		}
		ts = *obj.Timestamp
	case '"':
		if err := json.Unmarshal(value, &ts); err != nil {
			return nil, invalid("value is not a JSON string: %v", err)
		}
	default:
		return nil, invalid(`value is not {"timestamp":"HH:MM:SS"} or "HH:MM:SS" (starts with %q)`, preview(v))
	}
	return []byte(ts), nil
}

func (d *Decoder) setHeader(e *Event, key string, value []byte) error {
	switch key {
	case HeaderSpecVersion:
		if string(value) != "1.0" {
			return invalid("header %s %q: only 1.0 is understood", key, preview(value))
		}
	case HeaderContentType:
		mt, _, _ := strings.Cut(string(value), ";")
		if strings.TrimSpace(mt) != "application/json" {
			return invalid("header %s %q: want application/json", key, preview(value))
		}
	case HeaderID:
		e.ID = string(value)
	case HeaderSource:
		e.Source = reuse(&d.source, value)
	case HeaderType:
		e.Type = reuse(&d.typ, value)
	case HeaderTime:
		t, err := time.Parse(time.RFC3339Nano, string(value))
		if err != nil {
			return invalid("header %s %q: want an RFC 3339 time", key, preview(value))
		}
		e.Time = t
	case HeaderSequence:
		n, err := strconv.ParseUint(string(value), 10, 64)
		if err != nil {
			return invalid("header %s %q: want a whole number", key, preview(value))
		}
		e.Sequence = n
	}
	return nil
}

// preview shortens b for an error message.
func preview(b []byte) string {
	const max = 32
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
