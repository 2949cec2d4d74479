package receiver

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// A client can stop receiving while its cluster is fine: librdkafka skips
// a metadata update that gives a partition no leader, and may then keep it
// without a usable leader for good (confluentinc/librdkafka#5430). The poll
// loop looks for that symptom and re-creates the client, which resumes from
// the committed offsets: events may come twice, none is lost.
type stallWatch struct {
	after time.Duration
	last  map[int32]time.Time // per assigned partition, its last message
	quiet map[int32]time.Time // per partition, the first of the checks in a row that found it stalled
	next  time.Time
}

// checkStall looks, every third of StallAfter, for partitions (not paused
// for a dead letter) that delivered nothing while they had something to
// read and a fresh metadata request named their leader, at every check for
// StallAfter: counted from the first such check, so that a broker back
// from a long outage gets StallAfter to resume.
func (r *Receiver) checkStall(ctx context.Context) error {
	w, now := &r.stall, time.Now()
	if now.Before(w.next) || ctx.Err() != nil {
		return nil
	}
	w.next = now.Add(w.after / 3)
	md, asked := &kafka.Metadata{}, false // one metadata request per check, when needed
	var parts, client, broker []string
	for p, last := range w.last {
		pos, high, behind := int64(0), int64(0), false
		if r.pending[p] == nil && now.Sub(last) >= w.after/3 {
			pos, high, behind = r.behind(p)
		}
		leader := int32(-1)
		if behind && !asked {
			var err error
			if md, err = r.freshMetadata(); err != nil {
				clear(w.quiet) // the cluster does not answer either: an outage, not a stall
				return nil
			}
			asked = true
		}
		for _, pm := range md.Topics[r.opts.Topic].Partitions {
			if pm.ID == p && behind {
				leader = pm.Leader
			}
		}
		since, seen := w.quiet[p]
		switch {
		case leader < 0: // delivering, caught up, waiting for a dead letter, or no leader: no stall
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
	// Should the stuck client hang in its commit or close, the watchdog ends the process.
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

// freshMetadata asks through a short-lived client: the stuck one may no
// longer reach any broker although they are up.
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

// behind reports partition p's position (the committed offset while nothing
// was read) and high watermark, and whether there is something to read.
func (r *Receiver) behind(p int32) (pos, high int64, ok bool) {
	tp := []kafka.TopicPartition{{Topic: &r.opts.Topic, Partition: p}}
	ps, err := r.c.Position(tp)
	if err != nil || ps[0].Offset < 0 {
		if ps, err = r.c.Committed(tp, 1000); err != nil || ps[0].Offset < 0 {
			return 0, 0, false
		}
	}
	// Where the leader does not answer, the high watermark of the last
	// fetch still shows whether the client fell behind.
	if _, high, err = r.c.QueryWatermarkOffsets(r.opts.Topic, p, 1000); err != nil {
		_, high, err = r.c.GetWatermarkOffsets(r.opts.Topic, p)
	}
	return int64(ps[0].Offset), high, err == nil && int64(ps[0].Offset) < high
}
