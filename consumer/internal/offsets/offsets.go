// Package offsets stores the offsets of the events the consumer handled, for
// the background commit (enable.auto.offset.store=false): an offset is
// stored only once its event was handled, so a crash never skips one. They
// are stored in batches, per 500 events or each second, and always before a
// commit: one StoreOffsets call per event was a cgo call per event.
package offsets

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Every is how many handled events a StoreOffsets call takes at most.
const Every = 500

// Store keeps the offset after the last event handled, per partition, until
// it is stored; use it from the goroutine that polls.
type Store struct {
	log         *slog.Logger
	toStore     map[int32]kafka.TopicPartition
	unstored    int
	storedAt    time.Time
	Uncommitted atomic.Int64 // events handled since the last commit: what a crash would deliver again
}

// New returns an empty store.
func New(log *slog.Logger) *Store { return &Store{log: log, toStore: map[int32]kafka.TopicPartition{}} }

// Handled marks the offsets of ms for storing in c, now that their events were handled.
func (s *Store) Handled(c *kafka.Consumer, ms ...*kafka.Message) {
	for _, m := range ms {
		tp := m.TopicPartition
		tp.Offset++ // the next to read
		s.toStore[tp.Partition] = tp
		s.Uncommitted.Add(1)
		if s.unstored++; s.unstored >= Every || time.Since(s.storedAt) > time.Second {
			s.Flush(c)
		}
	}
}

// Flush stores in c what was handled, for the next commit.
func (s *Store) Flush(c *kafka.Consumer) {
	s.storedAt, s.unstored = time.Now(), 0
	if tps := slices.Collect(maps.Values(s.toStore)); len(tps) > 0 {
		clear(s.toStore)
		if _, err := c.StoreOffsets(tps); err != nil { // a partition went meanwhile: its next owner reads them again
			s.log.Warn("Offsets not stored", "offsets", fmt.Sprint(tps), "err", err)
		}
	}
}

// Commit stores and commits what was handled, and waits for the answer.
func (s *Store) Commit(c *kafka.Consumer) {
	s.Flush(c)
	offsets, err := c.Commit()
	s.Committed(err, offsets)
}

// Forget drops what was handled in partitions that went: their next owner reads it again.
func (s *Store) Forget(tps []kafka.TopicPartition) {
	for _, tp := range tps {
		delete(s.toStore, tp.Partition)
	}
}

// Committed takes a commit's answer and warns of a failure: a restart
// would deliver the events since the last commit again. It reports whether
// the commit went through.
func (s *Store) Committed(err error, offsets []kafka.TopicPartition) bool {
	if kerr, ok := err.(kafka.Error); err != nil && !(ok && kerr.Code() == kafka.ErrNoOffset) {
		s.log.Warn("Commit failed; events handled since the last commit will be delivered again", "err", err)
		return false
	}
	s.Uncommitted.Store(int64(s.unstored))
	for _, tp := range offsets {
		if tp.Error != nil {
			s.log.Warn("Commit failed for a partition", "partition", tp.Partition, "offset", int64(tp.Offset), "err", tp.Error)
		}
	}
	return true
}
