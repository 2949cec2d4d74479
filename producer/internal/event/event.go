// Package event is the timestamp event and its wire format: the value is
// exactly the tutorial's {"timestamp":"15:04:05"}, so its Python consumer
// keeps working; the rest travels in headers of the CloudEvents Kafka
// binding (binary mode).
package event

import (
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

const (
	// Type is the CloudEvents type: reverse-DNS, with a version.
	Type = "io.github.event-driven-go.timestamp.v1"
	// Layout formats the timestamp as the tutorial does (%H:%M:%S).
	Layout = "15:04:05"
	// ValueLen is the length of the bare value {"timestamp":"15:04:05"}.
	ValueLen = len(`{"timestamp":"15:04:05"}`)
	// MaxValueSize is the largest padded value; consumers dead-letter larger ones.
	MaxValueSize = 64 << 10
)

// Event is one timestamp event.
type Event struct {
	ID     uint64    // ce_id: the producer's sequence number, from 1
	Source string    // ce_source: which producer process sent it
	Time   time.Time // ce_time: when the event was due to go out
}

// Timestamp is the event's time as the tutorial prints it.
func (e Event) Timestamp() string { return e.Time.Format(Layout) }

// Value is the JSON value, padded with spaces before its closing brace to
// size bytes: still the same object to any JSON reader.
func (e Event) Value(size int) []byte {
	v := append(make([]byte, 0, max(size, ValueLen)), `{"timestamp":"`...)
	v = append(e.Time.AppendFormat(v, Layout), '"')
	for len(v) < size-1 {
		v = append(v, ' ')
	}
	return append(v, '}')
}

// Header values every event shares; the client copies what it sends.
var (
	specVersion = []byte("1.0")
	eventType   = []byte(Type)
	contentType = []byte("application/json")
)

// Headers are the CloudEvents headers, in the order of the wire vectors,
// with room for the trace context's two.
func (e Event) Headers() []kafka.Header {
	return append(make([]kafka.Header, 0, 8),
		kafka.Header{Key: "ce_specversion", Value: specVersion},
		kafka.Header{Key: "ce_id", Value: strconv.AppendUint(nil, e.ID, 10)},
		kafka.Header{Key: "ce_source", Value: []byte(e.Source)},
		kafka.Header{Key: "ce_type", Value: eventType},
		kafka.Header{Key: "ce_time", Value: e.Time.AppendFormat(nil, time.RFC3339Nano)},
		kafka.Header{Key: "content-type", Value: contentType})
}
