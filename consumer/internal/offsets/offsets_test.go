package offsets

import (
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

const source = "timestamp"

// syncBuffer is a strings.Builder safe for the client's goroutines and the test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// assigned is a consumer of a mock cluster assigned both partitions of the
// topic, which commits only when asked.
func assigned(t *testing.T) *kafka.Consumer {
	t.Helper()
	mc, err := kafka.NewMockCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mc.Close)
	if err := mc.CreateTopic(source, 2, 1); err != nil {
		t.Fatal(err)
	}
	c, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": mc.BootstrapServers(), "group.id": "test-group",
		"enable.auto.commit": false, "enable.auto.offset.store": false})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	tp := source
	if err := c.Assign([]kafka.TopicPartition{{Topic: &tp, Partition: 0}, {Topic: &tp, Partition: 1}}); err != nil {
		t.Fatal(err)
	}
	return c
}

// at is the message at offset o of partition p.
func at(p int32, o kafka.Offset) *kafka.Message {
	tp := source
	return &kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &tp, Partition: p, Offset: o}}
}

// stored commits what c stored since the last commit and returns it by
// partition; empty when nothing new was stored.
func stored(t *testing.T, c *kafka.Consumer) map[int32]kafka.Offset {
	t.Helper()
	tps, err := c.Commit()
	if kerr, ok := err.(kafka.Error); ok && kerr.Code() == kafka.ErrNoOffset {
		return map[int32]kafka.Offset{}
	}
	if err != nil {
		t.Fatalf("commit: %v", err)
	}
	out := map[int32]kafka.Offset{}
	for _, tp := range tps {
		if tp.Offset >= 0 {
			out[tp.Partition] = tp.Offset
		}
	}
	return out
}

// Offsets are stored per Every events handled, the first at once.
func TestStore_storesEveryFiveHundredEvents(t *testing.T) {
	c := assigned(t)
	s := New(slog.New(slog.DiscardHandler))
	s.Handled(c, at(0, 0))
	if got := stored(t, c); got[0] != 1 {
		t.Fatalf("stored %v after the first event, want offset 1 of partition 0", got)
	}
	s.Flush(c) // stores nothing, and starts the second anew: the commit above may have taken one
	for o := kafka.Offset(1); o < Every; o++ {
		s.Handled(c, at(0, o))
	}
	if got := stored(t, c); len(got) != 0 {
		t.Errorf("stored %v after %d more events, want nothing until %d", got, Every-1, Every)
	}
	s.Handled(c, at(0, Every))
	if got := stored(t, c); got[0] != Every+1 {
		t.Errorf("stored %v after %d more events, want offset %d of partition 0", got, Every, Every+1)
	}
	if n := s.Uncommitted.Load(); n != Every+1 {
		t.Errorf("uncommitted %d, want the %d events handled", n, Every+1)
	}
}

// An event handled over a second after the last store is stored with those before it.
func TestStore_storesWhatWaitedOverASecond(t *testing.T) {
	c := assigned(t)
	s := New(slog.New(slog.DiscardHandler))
	s.Handled(c, at(0, 0))
	_ = stored(t, c)
	s.Flush(c) // stores nothing, and starts the second anew: the commit above may have taken one
	s.Handled(c, at(0, 1), at(1, 0))
	if got := stored(t, c); len(got) != 0 {
		t.Fatalf("stored %v at once, want the events batched", got)
	}
	time.Sleep(1100 * time.Millisecond)
	s.Handled(c, at(0, 2))
	if got := stored(t, c); got[0] != 3 || got[1] != 1 {
		t.Errorf("stored %v over a second later, want offset 3 of partition 0 and 1 of partition 1", got)
	}
}

// A commit stores what was handled first, and waits for the answer.
func TestStore_commitStoresFirst(t *testing.T) {
	c := assigned(t)
	s := New(slog.New(slog.DiscardHandler))
	s.Handled(c, at(0, 0), at(0, 1), at(1, 4), at(0, 2))
	s.Commit(c)
	tp := source
	got, err := c.Committed([]kafka.TopicPartition{{Topic: &tp, Partition: 0}, {Topic: &tp, Partition: 1}}, 5000)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Offset != 3 || got[1].Offset != 5 {
		t.Errorf("committed %v, want offsets 3 and 5: after the last event handled in each partition", got)
	}
	if n := s.Uncommitted.Load(); n != 0 {
		t.Errorf("uncommitted %d after the commit, want 0", n)
	}
}

// What was handled in partitions that went is not stored: their next owner
// reads it again. The partitions kept are still stored.
func TestStore_forgetsThePartitionsThatWent(t *testing.T) {
	c := assigned(t)
	s := New(slog.New(slog.DiscardHandler))
	s.Handled(c, at(0, 0))
	_ = stored(t, c)
	s.Flush(c) // stores nothing, and starts the second anew: the commit above may have taken one
	s.Handled(c, at(0, 1), at(1, 0))
	tp := source
	s.Forget([]kafka.TopicPartition{{Topic: &tp, Partition: 0}})
	s.Flush(c)
	if got := stored(t, c); len(got) != 1 || got[1] != 1 {
		t.Errorf("stored %v, want only offset 1 of partition 1", got)
	}
}

// A store that fails (the partition went meanwhile) is said, not fatal.
func TestStore_warnsOfOffsetsNotStored(t *testing.T) {
	c := assigned(t)
	var out syncBuffer
	s := New(slog.New(slog.NewJSONHandler(&out, nil)))
	s.Handled(c, at(7, 0)) // not assigned
	if !strings.Contains(out.String(), `"level":"WARN","msg":"Offsets not stored"`) {
		t.Errorf("logged %q, want a warning", out.String())
	}
}

func TestStore_committedReportsFailedCommits(t *testing.T) {
	tp := source
	tests := []struct {
		name   string
		err    error
		tps    []kafka.TopicPartition
		ok     bool
		want   string // "" when nothing may be logged
		unsent int64  // uncommitted after it
	}{
		{"success", nil, []kafka.TopicPartition{{Topic: &tp, Offset: 5}}, true, "", 2},
		{"nothing stored yet", kafka.NewError(kafka.ErrNoOffset, "no offset", false), nil, true, "", 2},
		{"request failed", kafka.NewError(kafka.ErrRequestTimedOut, "timed out", false), nil, false,
			`"level":"WARN","msg":"Commit failed; events handled since the last commit will be delivered again"`, 5},
		{"not a Kafka error", errors.New("boom"), nil, false, `"msg":"Commit failed; events handled since the last commit`, 5},
		{"partition failed", nil, []kafka.TopicPartition{
			{Topic: &tp, Offset: 5, Error: kafka.NewError(kafka.ErrNotCoordinator, "not coordinator", false)}}, true,
			`"level":"WARN","msg":"Commit failed for a partition","partition":0,"offset":5`, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out syncBuffer
			s := New(slog.New(slog.NewJSONHandler(&out, nil)))
			s.Uncommitted.Store(5)
			s.unstored = 2 // handled since the last store: not in this commit
			if ok := s.Committed(tt.err, tt.tps); ok != tt.ok {
				t.Errorf("Committed = %t, want %t", ok, tt.ok)
			}
			if got := out.String(); tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("logged %q, want %q", got, tt.want)
			}
			if n := s.Uncommitted.Load(); n != tt.unsent {
				t.Errorf("uncommitted %d, want %d", n, tt.unsent)
			}
		})
	}
}
