// Package event defines the timestamp event and its wire format.
//
// The value is exactly what the tutorial's Python services exchange,
// {"timestamp":"15:04:05"}, so a consumer written for them keeps working.
// Everything else travels in Kafka headers named after the CloudEvents Kafka
// protocol binding (binary content mode).
package event

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Wire constants shared with every consumer of the topic.
const (
	// Type is the CloudEvents type: reverse-DNS, with a version.
	Type = "io.github.event-driven-go.timestamp.v1"
	// SpecVersion is the CloudEvents version the headers follow.
	SpecVersion = "1.0"
	// ContentType describes the value.
	ContentType = "application/json"
	// TimestampLayout formats the value's timestamp as the tutorial does (%H:%M:%S).
	TimestampLayout = "15:04:05"
)

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

// Event is one timestamp event.
type Event struct {
	ID       string    // unique per event
	Source   string    // which producer sent it
	Sequence uint64    // per-producer counter, starting at 1
	Time     time.Time // precise send time
}

// New returns the event number seq of source, sent at t, with a fresh id.
func New(source string, seq uint64, t time.Time) Event {
	return Event{ID: NewID(), Source: source, Sequence: seq, Time: t}
}

// Timestamp is the event's time as the tutorial prints it.
func (e Event) Timestamp() string { return e.Time.Format(TimestampLayout) }

// AppendValue appends the JSON value {"timestamp":"15:04:05"} to dst.
func (e Event) AppendValue(dst []byte) []byte {
	dst = append(dst, `{"timestamp":"`...)
	dst = e.Time.AppendFormat(dst, TimestampLayout)
	return append(dst, `"}`...)
}

// Headers returns the event's Kafka headers.
func (e Event) Headers() []kafka.Header {
	return []kafka.Header{
		{Key: HeaderSpecVersion, Value: []byte(SpecVersion)},
		{Key: HeaderID, Value: []byte(e.ID)},
		{Key: HeaderSource, Value: []byte(e.Source)},
		{Key: HeaderType, Value: []byte(Type)},
		{Key: HeaderTime, Value: e.Time.AppendFormat(nil, time.RFC3339Nano)},
		{Key: HeaderSequence, Value: strconv.AppendUint(nil, e.Sequence, 10)},
		{Key: HeaderContentType, Value: []byte(ContentType)},
	}
}

// NewID returns a random (version 4) UUID.
func NewID() string {
	var u [16]byte
	_, _ = rand.Read(u[:]) // never returns an error (crypto/rand, Go 1.24+)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}
