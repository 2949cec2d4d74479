package sender

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/producer/event"
)

// DefaultStallAfter is how long events wait without any delivery report
// before the sender checks for a leader stall.
//
// A leader stall is librdkafka keeping a partition with no usable leader
// after a broker restart, although the cluster has elected one
// (confluentinc/librdkafka#5430): events then time out while the brokers
// are fine. The sender recognises it by its symptom and re-creates the
// client, which starts with fresh metadata.
const DefaultStallAfter = 15 * time.Second

// metadataTimeout bounds the fresh metadata request of a stall check. It
// is shorter than FlushTimeout, so that a check under way when a stop
// comes does not make the shutdown longer.
const metadataTimeout = 2 * time.Second

// watchStall looks for a leader stall every third of StallAfter, until ctx
// ends: events have waited StallAfter with no delivery report at all, yet
// fresh metadata requests at two checks in a row name a leader for every
// partition. Then it re-creates the client. When a metadata request fails,
// the cluster is not well either: that is an outage, which the client
// rides out. The second check spares a client that reconnects right after
// an outage; should it still be waiting to reconnect, re-creating it costs
// nothing, since none of its events are in flight.
func (s *Sender) watchStall(ctx context.Context) {
	every := s.opts.StallAfter / 3
	tick := time.NewTicker(every)
	defer tick.Stop()
	var since time.Time     // since when events have waited with no report at all
	var recreated time.Time // when the client was last re-created
	answered := false       // the previous check found the cluster well, since then
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		c := s.Counts()
		waiting := c.Attempted - c.Delivered - c.Failed - c.Unknown
		switch {
		case waiting == 0:
			since, answered = time.Time{}, false
			continue
		case s.lastReport.Load() < recreated.UnixNano():
			// The new client has not reported yet. Re-creating it again
			// would start the events' message.timeout.ms over, and a
			// cluster that never acknowledges would hold them for ever.
			continue
		case since.IsZero() || time.Unix(0, s.lastReport.Load()).After(since):
			since, answered = now, false
			continue
		case now.Sub(since) < s.opts.StallAfter:
			continue
		}
		broker, ok := s.leaders()
		tick.Reset(every) // the next check comes a whole interval after this answer
		if answered, ok = ok, answered && ok; !ok || ctx.Err() != nil {
			continue
		}
		s.log.Warn("Leader stall: re-creating the Kafka client", "topic", s.opts.Topic,
			"client", fmt.Sprintf("no delivery report for %s", now.Sub(since).Round(time.Second)),
			"outstanding", waiting, "broker", broker)
		if err := s.recreate(); err != nil {
			s.log.Error("Cannot re-create the Kafka client", "err", err)
			continue
		}
		since, answered, recreated = time.Time{}, false, time.Now()
	}
}

// leaders asks the cluster for the topic's partitions and describes their
// leaders; ok is false unless the request succeeded and every partition
// has a leader.
func (s *Sender) leaders() (desc string, ok bool) {
	// A client of its own: the stuck one may no longer reach any broker
	// although they are up (it can stay "no usable brokers" for good).
	cm := kafka.ConfigMap{"log_level": 0} // its failures show as the error below
	for k, v := range s.opts.Kafka {
		cm[k] = v
	}
	a, err := kafka.NewAdminClient(&cm)
	if err != nil {
		return "", false
	}
	defer a.Close()
	md, err := a.GetMetadata(&s.opts.Topic, false, int(metadataTimeout/time.Millisecond))
	if err != nil {
		return "", false
	}
	t := md.Topics[s.opts.Topic]
	if t.Error.Code() != kafka.ErrNoError || len(t.Partitions) == 0 {
		return "", false
	}
	var parts []string
	for _, p := range t.Partitions {
		if p.Leader < 0 {
			return "", false
		}
		parts = append(parts, fmt.Sprintf("partition %d led by broker %d", p.ID, p.Leader))
	}
	return strings.Join(parts, ", "), true
}

// recreate replaces the client with a new one of the same configuration
// and sends again, with their ids, sequences and times, the events that the
// old one still held. Those purged in flight may have been written: they
// may now be written twice (consumers recognise duplicates by ce_id), but
// none is lost. Purged events are not counted; their new reports are.
func (s *Sender) recreate() error {
	enc, err := event.NewEncoder(s.opts.ValueSize) // the sender's own is busy sending
	if err != nil {
		return err
	}
	fresh, err := s.newClient()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.c
	old.retiring.Store(true)
	_ = old.p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight)
	// The purged events' reports are local: they come at once.
	if left := old.p.Flush(5000); left > 0 {
		s.log.Error("Events left without a report by the stalled client", "left", left)
	}
	old.close()
	s.c = fresh
	slices.SortFunc(old.purged, func(a, b *inflight) int { return cmp.Compare(a.seq, b.seq) })
	msg := kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &s.opts.Topic, Partition: kafka.PartitionAny}}
	for _, in := range old.purged {
		ev := event.Event{ID: in.id, Source: s.opts.Source, Sequence: in.seq, Time: in.time}
		enc.Encode(&ev, &msg)
		msg.Opaque = in
		if err := fresh.p.Produce(&msg, nil); err != nil {
			s.fail(in, err)
		}
	}
	s.recovered.Add(1)
	return nil
}
