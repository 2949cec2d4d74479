// Package event decodes timestamp events: the value {"timestamp":"15:04:05"}
// or the bare JSON string "15:04:05", and the optional CloudEvents headers
// (Kafka binding, binary mode). Events without headers, as the tutorial's
// Python producer sends them, are valid.
package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TimestampLayout is the value's time format, the tutorial's %H:%M:%S.
const TimestampLayout = "15:04:05"

// MaxValueBytes is the largest value accepted; a timestamp event is a few dozen bytes (or --value-size).
const MaxValueBytes = 64 << 10

// Event is a decoded timestamp event; header fields are zero when absent.
type Event struct {
	Timestamp string    // "15:04:05", from the value
	ID        string    // ce_id: our producer's per-source sequence number, or any string
	Source    string    // ce_source
	Type      string    // ce_type
	Time      time.Time // ce_time, the send time
}

// ErrInvalid is wrapped by every decoding error.
var ErrInvalid = errors.New("invalid event")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Decode reads an event from a message value and its headers; its error says what is wrong, fit for a dlq.error header.
func Decode(value []byte, headers []kafka.Header) (ev Event, err error) {
	if ev.Timestamp, err = timestamp(value); err != nil {
		return Event{}, err
	}
	for _, h := range headers {
		switch h.Key {
		case "ce_specversion":
			if string(h.Value) != "1.0" {
				return Event{}, invalid("header %s %q: only 1.0 is understood", h.Key, preview(h.Value))
			}
		case "content-type":
			if mt, _, _ := bytes.Cut(h.Value, []byte(";")); string(bytes.TrimSpace(mt)) != "application/json" {
				return Event{}, invalid("header %s %q: want application/json", h.Key, preview(h.Value))
			}
		case "ce_id":
			ev.ID = string(h.Value)
		case "ce_source":
			ev.Source = string(h.Value)
		case "ce_type":
			ev.Type = string(h.Value)
		case "ce_time":
			if ev.Time, err = time.Parse(time.RFC3339Nano, string(h.Value)); err != nil {
				return Event{}, invalid("header %s %q: want an RFC 3339 time", h.Key, preview(h.Value))
			}
		}
	}
	return ev, nil
}

// timestamp reads the HH:MM:SS of a value of either of the tutorial's forms.
func timestamp(value []byte) (ts string, err error) {
	v := bytes.TrimSpace(value)
	switch {
	case len(value) > MaxValueBytes:
		return "", invalid("value is %d bytes; at most %d allowed", len(value), MaxValueBytes)
	case len(v) == 0:
		return "", invalid("empty value")
	case padded(v):
		ts = string(v[len(valueHead) : len(valueHead)+len(TimestampLayout)])
	case v[0] == '{':
		var obj struct {
			Timestamp *string `json:"timestamp"`
		}
		if err := json.Unmarshal(value, &obj); err != nil {
			return "", invalid("value is not a JSON object with a string timestamp: %v", err)
		} else if obj.Timestamp == nil {
			return "", invalid(`value has no "timestamp" field`)
		}
		ts = *obj.Timestamp
	case v[0] == '"':
		if err := json.Unmarshal(value, &ts); err != nil {
			return "", invalid("value is not a JSON string: %v", err)
		}
	default:
		return "", invalid(`value is not {"timestamp":"HH:MM:SS"} or "HH:MM:SS" (starts with %q)`, preview(v))
	}
	if _, err := time.Parse(TimestampLayout, ts); err != nil || len(ts) != len(TimestampLayout) {
		return "", invalid("timestamp %q is not HH:MM:SS", preview([]byte(ts)))
	}
	return ts, nil
}

const valueHead = `{"timestamp":"`

// padded reports whether v is our producer's value: {"timestamp":"HH:MM:SS" then only spaces up to the closing
// brace. Read by hand, because encoding/json scans every byte of the padding twice: at 1 KiB that was 8 µs of
// the consumer's 15 µs per event. Any other form takes the JSON path.
func padded(v []byte) bool {
	end := len(valueHead) + len(TimestampLayout) // where the closing quote must be
	return len(v) > end+1 && string(v[:len(valueHead)]) == valueHead && v[end] == '"' &&
		v[len(v)-1] == '}' && len(bytes.TrimLeft(v[end+1:len(v)-1], " ")) == 0
}

// preview shortens b for an error message.
func preview(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "..."
	}
	return string(b)
}
