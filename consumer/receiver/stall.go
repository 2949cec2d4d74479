package receiver

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// A client can stop receiving while its cluster is fine: librdkafka skips
// a metadata update that gives a partition no leader, and may then keep
// the partition without a usable leader for good, even after the broker
// is back (confluentinc/librdkafka#5430). The poll loop looks for that
// symptom and re-creates the client; the group then resumes from the
// committed offsets, so events may come twice but none is lost.

// defaultStallAfter is StallAfter when Options leave it 0.
const defaultStallAfter = 15 * time.Second

// stallWatch remembers when each assigned partition last delivered a
// message, and since when the cluster has been well while it delivered
// nothing it could have.
type stallWatch struct {
	after time.Duration
	last  map[int32]time.Time
	// quiet holds, per partition, the first of the checks in a row that
	// found something to read, nothing read, and a leader named.
	quiet map[int32]time.Time
	next  time.Time // of the next check
}

func newStallWatch(after time.Duration) stallWatch {
	if after <= 0 {
		after = defaultStallAfter
	}
	return stallWatch{after: after, last: map[int32]time.Time{}, quiet: map[int32]time.Time{}}
}

func (w *stallWatch) seen(p int32) { w.last[p] = time.Now() }

func (w *stallWatch) assigned(tps []kafka.TopicPartition) {
	for _, tp := range tps {
		w.last[tp.Partition] = time.Now()
	}
}

func (w *stallWatch) revoked(tps []kafka.TopicPartition) {
	for _, tp := range tps {
		delete(w.last, tp.Partition)
		delete(w.quiet, tp.Partition)
	}
}

// checkStall looks, every third of StallAfter, for assigned partitions
// (not paused for a dead-letter write) that delivered nothing for
// StallAfter while, at every check, they had something to read and a fresh
// metadata request named their leader. Then the client is stuck and the
// cluster is not: checkStall re-creates the client. The time counts from
// the first such check, not from the last message: a consumer whose
// broker was away for longer than StallAfter gets StallAfter to resume.
func (r *Receiver) checkStall(ctx context.Context) error {
	now := time.Now()
	if now.Before(r.stall.next) || ctx.Err() != nil {
		return nil
	}
	every := r.stall.after / 3
	r.stall.next = now.Add(every)
	var md *kafka.Metadata
	var parts, client, broker []string
	for p, last := range r.stall.last {
		if r.pending[p] != nil || now.Sub(last) < every {
			delete(r.stall.quiet, p) // it delivered lately, or waits for a dead letter
			continue
		}
		pos, high, ok := r.behind(p)
		if !ok {
			delete(r.stall.quiet, p) // caught up, or nothing known
			continue
		}
		if md == nil {
			var err error
			if md, err = r.freshMetadata(); err != nil {
				clear(r.stall.quiet) // the cluster does not answer either: an outage, not a stall
				return nil
			}
		}
		leader := int32(-1)
		for _, pm := range md.Topics[r.opts.Topic].Partitions {
			if pm.ID == p {
				leader = pm.Leader
			}
		}
		if leader < 0 {
			delete(r.stall.quiet, p) // the broker knows no leader either: an outage, not a stall
			continue
		}
		since, ok := r.stall.quiet[p]
		if !ok {
			r.stall.quiet[p] = now
			continue
		}
		if now.Sub(since) < r.stall.after {
			continue
		}
		parts = append(parts, fmt.Sprint(p))
		client = append(client, fmt.Sprintf("partition %d: no message for %s at position %d", p, now.Sub(last).Round(time.Second), pos))
		broker = append(broker, fmt.Sprintf("partition %d: leader %d, high watermark %d", p, leader, high))
	}
	if len(parts) == 0 || ctx.Err() != nil {
		return nil
	}
	r.log.Warn("Leader stall: re-creating the Kafka client", "topic", r.opts.Topic, "partitions", strings.Join(parts, ","),
		"client", strings.Join(client, "; "), "broker", strings.Join(broker, "; "))
	return r.recreate()
}

// freshMetadata asks the cluster about the topic through a client of its
// own: the stuck one may no longer reach any broker although they are up.
func (r *Receiver) freshMetadata() (*kafka.Metadata, error) {
	cm := kafka.ConfigMap{"log_level": 0} // its failures show as the error it returns
	for k, v := range r.opts.Kafka {
		if !consumerOnly(k) {
			cm[k] = v
		}
	}
	a, err := kafka.NewAdminClient(&cm)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	return a.GetMetadata(&r.opts.Topic, false, 1000)
}

// behind reports partition p's position (its committed offset while
// nothing was read yet) and high watermark, and whether the position is
// below it: whether there is something to read.
func (r *Receiver) behind(p int32) (pos, high int64, ok bool) {
	tp := []kafka.TopicPartition{{Topic: &r.opts.Topic, Partition: p}}
	ps, err := r.c.Position(tp)
	if err != nil || ps[0].Offset < 0 {
		if ps, err = r.c.Committed(tp, 1000); err != nil || ps[0].Offset < 0 {
			return 0, 0, false
		}
	}
	pos = int64(ps[0].Offset)
	_, high, err = r.c.QueryWatermarkOffsets(r.opts.Topic, p, 1000)
	if err != nil {
		// The leader did not answer. In the stall, it does (the client
		// looks it up afresh for this query); where the leader is really
		// away, the high watermark of the client's last fetch still shows
		// whether it fell behind.
		_, high, err = r.c.GetWatermarkOffsets(r.opts.Topic, p)
	}
	return pos, high, err == nil && pos < high
}

// recreate commits what is stored, closes the client and subscribes with a
// new one, which resumes from the committed offsets. Closing is bounded
// where librdkafka takes a timeout; should the stuck client hang in its
// commit or close, the shutdown watchdog still ends the process in time.
func (r *Receiver) recreate() error {
	r.closeConsumer(time.Now().Add(shutdownBudget))
	clear(r.pending) // their offsets were never stored: the message comes again
	clear(r.stall.last)
	clear(r.stall.quiet)
	c, err := kafka.NewConsumer(&r.cm)
	if err != nil {
		return fmt.Errorf("re-create consumer: %w", err)
	}
	r.c = c
	r.res.Recovered++
	return r.subscribe()
}
