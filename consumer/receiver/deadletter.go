package receiver

import (
	"errors"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// deadLetter is a write to the dead-letter topic in flight. Its partition
// is paused until the broker acknowledged the write, so that no later
// offset of that partition is stored before it; one write per partition,
// the others go on. Pausing drops what librdkafka fetched ahead, and
// resuming fetches from the message after the last one Poll returned: the
// dead letter's successor (TestReceiver_keepsPollingWhileTheDeadLetterTopicIsAway
// holds librdkafka to it). Polling goes on meanwhile, which keeps the
// group membership, the rebalances and the background commits alive.
type deadLetter struct {
	m       *kafka.Message
	reason  error
	report  chan kafka.Event
	backoff time.Duration
	retry   time.Time // when to try again; zero while an attempt is in flight
}

func (r *Receiver) deadLetter(m *kafka.Message, reason error) error {
	if err := r.c.Pause([]kafka.TopicPartition{m.TopicPartition}); err != nil {
		return fmt.Errorf("pause %s: %w", m.TopicPartition, err)
	}
	d := &deadLetter{m: m, reason: reason, report: make(chan kafka.Event, 1), backoff: 100 * time.Millisecond}
	r.pending[m.TopicPartition.Partition] = d
	return r.send(d)
}

func (r *Receiver) send(d *deadLetter) error {
	d.retry = time.Time{}
	if err := r.dlq.Send(d.m, d.reason, d.report); err != nil {
		return r.failed(d, err)
	}
	return nil
}

// deadLetters finishes the writes the broker acknowledged and retries the
// failed ones whose backoff passed; it returns an error for a write that
// only a person can make succeed.
func (r *Receiver) deadLetters() error {
	for _, d := range r.pending {
		if !d.retry.IsZero() {
			if time.Now().After(d.retry) {
				if err := r.send(d); err != nil {
					return err
				}
			}
			continue
		}
		select {
		case e := <-d.report:
			if err := e.(*kafka.Message).TopicPartition.Error; err != nil {
				if err := r.failed(d, err); err != nil {
					return err
				}
				continue
			}
			tp := d.m.TopicPartition
			delete(r.pending, tp.Partition)
			r.res.DeadLettered++
			r.log.Warn("Dead-lettered", "reason", d.reason, "partition", tp.Partition,
				"offset", int64(tp.Offset), "dlq", r.dlq.Topic())
			r.store(d.m)
			if err := r.c.Resume([]kafka.TopicPartition{tp}); err != nil {
				return fmt.Errorf("resume %s: %w", tp, err)
			}
		default:
		}
	}
	return nil
}

// failed stops the consumer for a permanent error, or schedules a retry
// with backoff (100 ms doubling to 5 s).
func (r *Receiver) failed(d *deadLetter, err error) error {
	tp := d.m.TopicPartition
	if permanent(err) {
		var kerr kafka.Error
		errors.As(err, &kerr)
		return fmt.Errorf("cannot dead-letter offset %d of %s[%d] to %q: %w (%s)",
			tp.Offset, *tp.Topic, tp.Partition, r.dlq.Topic(), err, codeName(kerr.Code()))
	}
	r.log.Warn("Dead-letter write failed, retrying", "dlq", r.dlq.Topic(), "partition", tp.Partition,
		"offset", int64(tp.Offset), "in", d.backoff, "err", err)
	d.retry = time.Now().Add(d.backoff)
	d.backoff = min(2*d.backoff, 5*time.Second)
	return nil
}
