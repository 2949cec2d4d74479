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
	"fmt"
	"time"
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

// Value sizes: a value is the bare JSON object, or that object padded with
// spaces to a chosen size.
const (
	// ValueLen is the length of the bare value {"timestamp":"15:04:05"}.
	ValueLen = len(`{"timestamp":"15:04:05"}`)
	// MaxValueSize is the largest padded value; consumers of this topic
	// dead-letter anything larger.
	MaxValueSize = 64 << 10
)

// Event is one timestamp event.
type Event struct {
	ID       ID        // unique per event
	Source   string    // which producer sent it
	Sequence uint64    // per-producer counter, starting at 1
	Time     time.Time // the send time: when the event was scheduled to go out
}

// New returns the event number seq of source, sent at t, with a fresh id.
func New(source string, seq uint64, t time.Time) Event {
	return Event{ID: NewID(), Source: source, Sequence: seq, Time: t}
}

// Timestamp is the event's time as the tutorial prints it.
func (e Event) Timestamp() string { return e.Time.Format(TimestampLayout) }

// AppendValue appends the JSON value {"timestamp":"15:04:05"} to dst.
func (e Event) AppendValue(dst []byte) []byte {
	return e.AppendPaddedValue(dst, 0)
}

// AppendPaddedValue appends the JSON value padded with spaces before its
// closing brace to size bytes, {"timestamp":"15:04:05"   }: still the same
// object to any JSON reader. A size below ValueLen appends the bare value.
func (e Event) AppendPaddedValue(dst []byte, size int) []byte {
	dst = append(dst, `{"timestamp":"`...)
	dst = e.Time.AppendFormat(dst, TimestampLayout)
	dst = append(dst, '"')
	for range size - ValueLen {
		dst = append(dst, ' ')
	}
	return append(dst, '}')
}

// ID is an event id, a random (version 4) UUID. Its text form is the
// canonical 36-character one.
type ID [16]byte

// idLen is the length of an ID's text form.
const idLen = 36

// NewID returns a random (version 4) UUID.
func NewID() ID {
	var u ID
	_, _ = rand.Read(u[:]) // never returns an error (crypto/rand, Go 1.24+)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// ParseID reads the canonical text form of a UUID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != idLen || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, fmt.Errorf("id %q: want a UUID such as 8f0c2f6e-1d7b-4c8a-9e3f-5a6b7c8d9e0f", s)
	}
	j := 0
	for _, part := range [...]string{s[0:8], s[9:13], s[14:18], s[19:23], s[24:36]} {
		n, err := hex.Decode(id[j:], []byte(part))
		if err != nil {
			return ID{}, fmt.Errorf("id %q: %w", s, err)
		}
		j += n
	}
	return id, nil
}

// String returns the canonical text form, 8f0c2f6e-1d7b-4c8a-9e3f-5a6b7c8d9e0f.
func (id ID) String() string {
	var s [idLen]byte
	id.put(&s)
	return string(s[:])
}

// MarshalText returns the canonical text form, so that JSON logs show it.
func (id ID) MarshalText() ([]byte, error) {
	var s [idLen]byte
	id.put(&s)
	return s[:], nil
}

// put writes the canonical text form into s.
func (id ID) put(s *[idLen]byte) {
	hex.Encode(s[0:8], id[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], id[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], id[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], id[8:10])
	s[23] = '-'
	hex.Encode(s[24:], id[10:])
}
