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
	ts, err := decodeValue(value)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Timestamp: ts}
	for _, h := range headers {
		if err := ev.setHeader(h.Key, h.Value); err != nil {
			return Event{}, err
		}
	}
	return ev, nil
}

func decodeValue(value []byte) (string, error) {
	if len(value) > MaxValueBytes {
		return "", invalid("value is %d bytes; at most %d allowed", len(value), MaxValueBytes)
	}
	v := bytes.TrimLeft(value, " \t\r\n")
	if len(v) == 0 {
		return "", invalid("empty value")
	}
	var ts string
	switch v[0] {
	case '{':
		var obj struct {
			Timestamp *string `json:"timestamp"`
		}
		if err := json.Unmarshal(value, &obj); err != nil {
			return "", invalid("value is not a JSON object with a string timestamp: %v", err)
		}
		if obj.Timestamp == nil {
			return "", invalid(`value has no "timestamp" field`)
		}
		ts = *obj.Timestamp
	case '"':
		if err := json.Unmarshal(value, &ts); err != nil {
			return "", invalid("value is not a JSON string: %v", err)
		}
	default:
		return "", invalid(`value is not {"timestamp":"HH:MM:SS"} or "HH:MM:SS" (starts with %q)`, preview(v))
	}
	if len(ts) != len(TimestampLayout) {
		return "", invalid("timestamp %q is not HH:MM:SS", preview([]byte(ts)))
	}
	if _, err := time.Parse(TimestampLayout, ts); err != nil {
		return "", invalid("timestamp %q is not HH:MM:SS", ts)
	}
	return ts, nil
}

func (e *Event) setHeader(key string, value []byte) error {
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
		e.Source = string(value)
	case HeaderType:
		e.Type = string(value)
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
