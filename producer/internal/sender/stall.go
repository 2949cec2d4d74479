package sender

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// DefaultStallAfter is how long events wait with no delivery report before
// the sender checks for a leader stall: librdkafka keeping a partition with
// no usable leader after a broker restart although the cluster elected one
// (confluentinc/librdkafka#5430). A new client starts with fresh metadata.
const DefaultStallAfter = 15 * time.Second

// watchStall re-creates the client when events waited StallAfter with no
// report at all while fresh metadata names a leader for every partition at
// two checks in a row (the second spares a client reconnecting after an
// outage). A failed metadata request is an outage, which the client rides out.
func (s *Sender) watchStall(ctx context.Context) {
	every := s.opts.StallAfter / 3
	tick := time.NewTicker(every)
	defer tick.Stop()
	var since, recreated time.Time // since when events have waited; the last re-creation
	answered := false              // by the previous check: the cluster is well
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now, last := time.Now(), time.Unix(0, s.lastReport.Load())
		c := s.Counts()
		waiting := c.Attempted - c.Delivered - c.Failed - c.Unknown
		switch {
		case waiting == 0:
			since, answered = time.Time{}, false
			continue
		case last.Before(recreated): // again would start message.timeout.ms over, for ever
			continue
		case since.IsZero() || last.After(since):
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

// leaders describes the topic's leaders if every partition has one and all
// its copies in sync. A partition short of copies may refuse writes
// (NOT_ENOUGH_REPLICAS: two of three nodes down): the client is right to
// wait, and a new one would only send its events twice.
func (s *Sender) leaders() (desc string, ok bool) {
	// A client of its own: the stuck one may no longer reach any broker.
	cm := kafka.ConfigMap{"log_level": 0} // its failures show as a failed request
	maps.Copy(cm, s.opts.Kafka)
	a, err := kafka.NewAdminClient(&cm)
	if err != nil {
		return "", false
	}
	defer a.Close()
	md, err := a.GetMetadata(&s.opts.Topic, false, 2000) // shorter than FlushTimeout: a stop is not delayed
	if err != nil {
		return "", false
	} else if n, err := topicState(md, s.opts.Topic); err != nil || n == 0 {
		return "", false
	}
	var parts []string
	for _, p := range md.Topics[s.opts.Topic].Partitions {
		if len(p.Isrs) < len(p.Replicas) {
			return "", false
		}
		parts = append(parts, fmt.Sprintf("partition %d led by broker %d", p.ID, p.Leader))
	}
	return strings.Join(parts, ", "), true
}

// recreate replaces the client with a new one and sends again, with their
// ids and times, the events the old one still held. Those purged in flight
// may have been written: they may now be written twice (consumers see the
// duplicate ce_id), but none is lost. Only the new reports are counted.
func (s *Sender) recreate() error {
	fresh, err := s.newClient()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.qmu.Lock()
	s.retiring = true
	s.qmu.Unlock()
	_ = s.c.p.Purge(kafka.PurgeQueue | kafka.PurgeInFlight)
	if left := s.c.p.Flush(5000); left > 0 { // the purged events' reports are local: they come at once
		s.log.Error("Events left without a report by the stalled client", "left", left)
	}
	s.c.close()
	s.c = fresh
	s.qmu.Lock()
	old := s.pending
	s.pending, s.retiring = map[uint64]pending{}, false
	s.qmu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(old)) { // in the order they were first sent
		if err := s.produceLocked(fresh.p, old[id]); err != nil {
			s.settle(old[id], kafka.TopicPartition{Error: err})
		}
	}
	s.recovered.Add(1)
	return nil
}
