package event

import (
	"fmt"
	"strconv"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Encoder turns events into Kafka messages without allocating: the headers
// whose values never change are built once, the source header is rebuilt
// only when the source changes, and the value and the other header values
// are written into buffers the Encoder reuses.
//
// A message filled by Encode points into those buffers, so it is valid until
// the next Encode. That is enough for Producer.Produce, which copies the
// value and the headers before it returns. An Encoder is not safe for
// concurrent use.
type Encoder struct {
	value   []byte // the padded value; Encode rewrites only its timestamp
	second  int64  // the Unix second whose timestamp value holds
	zone    *time.Location
	headers []kafka.Header
	id      [idLen]byte
	time    []byte
	seq     []byte
}

// tsAt is where the timestamp starts in a value: after {"timestamp":".
const tsAt = len(`{"timestamp":"`)

// Positions of the headers that change from event to event.
const (
	hID = 1 + iota
	hSource
	_ // type
	hTime
	hSequence
)

// NewEncoder returns an Encoder whose values are padded to valueSize bytes;
// 0 keeps the bare value. Sizes from 1 to ValueLen-1 and above MaxValueSize
// are refused.
func NewEncoder(valueSize int) (*Encoder, error) {
	if valueSize != 0 && (valueSize < ValueLen || valueSize > MaxValueSize) {
		return nil, fmt.Errorf("value size %d: want 0 (no padding) or %d to %d bytes", valueSize, ValueLen, MaxValueSize)
	}
	e := &Encoder{
		value:  Event{}.AppendPaddedValue(nil, valueSize),
		second: time.Time{}.Unix(),
		zone:   time.UTC,
		time:   make([]byte, 0, len(time.RFC3339Nano)+6), // room for a zone offset
		seq:    make([]byte, 0, 20),                      // the digits of the largest uint64
	}
	// The order is the one of the wire vectors: specversion, id, source,
	// type, time, sequence, content type.
	e.headers = []kafka.Header{
		{Key: HeaderSpecVersion, Value: []byte(SpecVersion)},
		{Key: HeaderID},
		{Key: HeaderSource, Value: []byte{}},
		{Key: HeaderType, Value: []byte(Type)},
		{Key: HeaderTime},
		{Key: HeaderSequence},
		{Key: HeaderContentType, Value: []byte(ContentType)},
	}
	return e, nil
}

// Encode sets msg's Value and Headers to those of ev. It leaves the topic,
// key and opaque of msg alone.
func (e *Encoder) Encode(ev *Event, msg *kafka.Message) {
	if string(e.headers[hSource].Value) != ev.Source {
		e.headers[hSource].Value = []byte(ev.Source)
	}
	if sec := ev.Time.Unix(); sec != e.second || ev.Time.Location() != e.zone {
		// Padding and braces stay; only HH:MM:SS changes, once a second.
		ev.Time.AppendFormat(e.value[tsAt:tsAt], TimestampLayout)
		e.second, e.zone = sec, ev.Time.Location()
	}
	ev.ID.put(&e.id)
	e.time = ev.Time.AppendFormat(e.time[:0], time.RFC3339Nano)
	e.seq = strconv.AppendUint(e.seq[:0], ev.Sequence, 10)
	e.headers[hID].Value = e.id[:]
	e.headers[hTime].Value = e.time
	e.headers[hSequence].Value = e.seq
	msg.Value = e.value
	msg.Headers = e.headers
}
