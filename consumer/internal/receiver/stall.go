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

// stallWatch remembers when each assigned partition last delivered a
// message, and since when it has been quiet while the cluster was well.
type stallWatch struct {
	after time.Duration
	last  map[int32]time.Time
	// quiet holds, per partition, the first of the checks in a row that
	// found something to read, nothing read, and a leader named.
	quiet map[int32]time.Time
	next  time.Time // of the next check
}

// checkStall looks, every third of StallAfter, for assigned partitions
// (not paused for a dead-letter write) that delivered nothing for
// StallAfter while, at every check, they had something to read and a fresh
// metadata request named their leader: then the client is stuck and the
// cluster is not, and checkStall re-creates the client. The time counts
// from the first such check, not from the last message: a consumer whose
// broker was away for longer than StallAfter gets StallAfter to resume.
func (r *Receiver) checkStall(ctx context.Context) error {
	w, now := &r.stall, time.Now()
	if now.Before(w.next) || ctx.Err() != nil {
		return nil
	}
	every := w.after / 3
	w.next = now.Add(every)
	var md *kafka.Metadata
	var parts, client, broker []string
	for p, last := range w.last {
		pos, high, behind := int64(0), int64(0), false
		if r.pending[p] == nil && now.Sub(last) >= every {
			pos, high, behind = r.behind(p)
		}
		leader := int32(-1)
		if behind {
			if md == nil {
				var err error
				if md, err = r.freshMetadata(); err != nil {
					clear(w.quiet) // the cluster does not answer either: an outage, not a stall
					return nil
				}
			}
			for _, pm := range md.Topics[r.opts.Topic].Partitions {
				if pm.ID == p {
					leader = pm.Leader
				}
			}
		}
		since, seen := w.quiet[p]
		switch {
		case leader < 0: // delivering, caught up, waiting for a dead letter, or no leader: not a stall
			delete(w.quiet, p)
		case !seen:
			w.quiet[p] = now
		case now.Sub(since) >= w.after:
			parts = append(parts, fmt.Sprint(p))
			client = append(client, fmt.Sprintf("partition %d: no message for %s at position %d", p, now.Sub(last).Round(time.Second), pos))
			broker = append(broker, fmt.Sprintf("partition %d: leader %d, high watermark %d", p, leader, high))
		}
	}
	if len(parts) == 0 || ctx.Err() != nil {
		return nil
	}
	r.log.Warn("Leader stall: re-creating the Kafka client", "topic", r.opts.Topic, "partitions", strings.Join(parts, ","),
		"client", strings.Join(client, "; "), "broker", strings.Join(broker, "; "))
	// Close commits what was handled; the new client resumes from there.
	// Should the stuck client hang in its commit or close, the shutdown
	// watchdog still ends the process in time.
	r.closeConsumer(time.Now().Add(shutdownBudget))
	clear(r.pending) // their offsets were never stored: the messages come again
	clear(w.last)
	clear(w.quiet)
	c, err := kafka.NewConsumer(&r.cm)
	if err != nil {
		return fmt.Errorf("re-create consumer: %w", err)
	}
	r.c = c
	r.res.Recovered++
	return r.subscribe()
}

// freshMetadata asks the cluster about the topic through a short-lived
// client of its own: the stuck one may no longer reach any broker although
// they are up.
func (r *Receiver) freshMetadata() (*kafka.Metadata, error) {
	cm := kafka.ConfigMap{"log_level": 0} // its failures show as the error it returns
	for k, v := range r.dlqProps {
		if !strings.HasPrefix(k, "go.") {
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
// nothing was read yet) and high watermark, and whether there is something
// to read.
func (r *Receiver) behind(p int32) (pos, high int64, ok bool) {
	tp := []kafka.TopicPartition{{Topic: &r.opts.Topic, Partition: p}}
	ps, err := r.c.Position(tp)
	if err != nil || ps[0].Offset < 0 {
		if ps, err = r.c.Committed(tp, 1000); err != nil || ps[0].Offset < 0 {
			return 0, 0, false
		}
	}
	_, high, err = r.c.QueryWatermarkOffsets(r.opts.Topic, p, 1000)
	if err != nil {
		// The leader did not answer. In the stall, it does (the client
		// looks it up afresh for this query); where the leader is really
		// away, the high watermark of the client's last fetch still shows
		// whether it fell behind.
		_, high, err = r.c.GetWatermarkOffsets(r.opts.Topic, p)
	}
	return int64(ps[0].Offset), high, err == nil && int64(ps[0].Offset) < high
}
