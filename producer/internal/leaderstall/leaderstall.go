// Package leaderstall works around librdkafka#5430: after a broker restart
// the client may keep, for good, no leader for a partition while the
// cluster has one. Events for that partition then wait until
// message.timeout.ms and fail, and nothing says why. The Guard recognises
// that state and has the client re-created. A new client has a new producer
// id: events the old one had in flight may have been written, and are
// written again (consumers see the same ce_id twice), but none is lost.
//
// Delete this package once a librdkafka release carries the fix
// (confluentinc/librdkafka#5431).
package leaderstall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Guard watches a producer for the stall. Observe is called where the
// client's statistics arrive; Run checks in a goroutine of its own.
type Guard struct {
	// After is how long the stall must last, with the cluster answering
	// every check, before the client is re-created: never less than the
	// time a slow but healthy broker may take to answer (librdkafka's
	// request.timeout.ms, 30 s by default).
	After time.Duration
	// Every is the time between checks; statistics older than three of
	// these no longer count.
	Every time.Duration
	// Bound is the longest a re-creation may take before the Guard gives up.
	Bound time.Duration

	topic  string
	log    *slog.Logger
	ask    func(context.Context) (map[int32]int32, error) // the cluster's leaders
	client atomic.Pointer[observed]                       // the client's view, from its latest statistics
	failed atomic.Pointer[error]
	gaveUp chan struct{}
}

// observed is the client's leader of each partition with events waiting
// (-1: none), and when its statistics came.
type observed struct {
	leaders map[int32]int32
	at      time.Time
}

// short tells whether the client lacks a leader it needs.
func (o *observed) short() bool {
	for _, l := range o.leaders {
		if l < 0 {
			return true
		}
	}
	return false
}

// New returns a guard for a producer to topic. ask gets the cluster's
// leader of each partition from a client that was not part of the stall.
func New(topic string, log *slog.Logger, ask func(context.Context) (map[int32]int32, error)) *Guard {
	return &Guard{After: 30 * time.Second, Every: 5 * time.Second, Bound: 10 * time.Second, topic: topic, log: log, ask: ask,
		gaveUp: make(chan struct{})}
}

// statistics is the part of librdkafka's statistics (STATISTICS.md) that
// holds the client's view.
type statistics struct {
	Topics map[string]struct {
		Partitions map[string]struct {
			Partition int32 `json:"partition"` // -1: the client's "unassigned" entry
			Leader    int32 `json:"leader"`
			Broker    int32 `json:"broker"`   // the broker it sends to; -1: none
			Queued    int64 `json:"msgq_cnt"` // waiting to be sent
		} `json:"partitions"`
	} `json:"topics"`
}

// Observe takes the client's view from a statistics event's JSON: the
// leader of each partition with events waiting. A partition nothing waits
// for may go without a leader: the client looks for one when it needs it.
func (g *Guard) Observe(js string) {
	var s statistics
	if json.Unmarshal([]byte(js), &s) != nil {
		return // the statistics' own reader says so
	}
	o := observed{leaders: map[int32]int32{}, at: time.Now()}
	for _, p := range s.Topics[g.topic].Partitions {
		if p.Partition >= 0 && p.Queued > 0 {
			// A partition stuck in #5430 may keep its old leader id while the client sends to no broker.
			o.leaders[p.Partition] = min(p.Leader, p.Broker)
		}
	}
	g.client.Store(&o)
}

// Healthy returns why the guard gave up, if it did: a re-creation failed or
// did not end within Bound.
func (g *Guard) Healthy() error {
	if err := g.failed.Load(); err != nil {
		return *err
	}
	return nil
}

// Failed is closed when the guard gives up: the client may hang in whatever
// it does, so the process must end.
func (g *Guard) Failed() <-chan struct{} { return g.gaveUp }

// Run checks every Every until ctx ends. Once the stall lasted After it
// calls recreate, which must replace the client; it returns the error of a
// re-creation that failed or outlasted Bound, and then the client is
// beyond help.
func (g *Guard) Run(ctx context.Context, recreate func(context.Context) error) error {
	tick := time.NewTicker(g.Every)
	defer tick.Stop()
	var since time.Time // the first check that saw the stall
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		stall := g.check(ctx)
		if stall == "" {
			since = time.Time{}
			continue
		}
		if since.IsZero() {
			since = time.Now()
		}
		if time.Since(since) < g.After {
			continue
		}
		g.log.Warn("Leader stall (librdkafka#5430): re-creating the Kafka client", "topic", g.topic, "stall", stall,
			"for", time.Since(since).Round(time.Second))
		err := g.recreate(ctx, recreate)
		if ctx.Err() != nil {
			return nil // stopped meanwhile: the run closes the client
		}
		if err != nil {
			g.log.Error("The Kafka client could not be re-created: stopping", "err", err)
			g.failed.Store(&err)
			close(g.gaveUp)
			return err
		}
		since = time.Time{}
		g.client.Store(nil) // the new client's statistics tell from now on
	}
}

// check describes the stall, or returns "": the client holds no leader for
// a partition with events waiting, and the cluster answered that it has
// one. The cluster is asked only when the client holds no leader.
func (g *Guard) check(ctx context.Context) string {
	c := g.client.Load()
	if c == nil || time.Since(c.at) > 3*g.Every || !c.short() {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, g.Every)
	defer cancel()
	cluster, err := g.ask(ctx)
	if err != nil { // the cluster does not answer either: an outage, which the client rides out
		g.log.Debug("Leader-stall check: the cluster did not answer", "err", err)
		return ""
	}
	return stalled(c.leaders, cluster)
}

// stalled describes the partitions whose leader the client lacks and the cluster has.
func stalled(client, cluster map[int32]int32) string {
	var s []string
	for _, p := range slices.Sorted(maps.Keys(client)) {
		if l, ok := cluster[p]; client[p] < 0 && ok && l >= 0 {
			s = append(s, fmt.Sprintf("partition %d: the client holds no leader, the cluster's is broker %d", p, l))
		}
	}
	return strings.Join(s, "; ")
}

// errBound says that a re-creation outlasted Bound.
var errBound = errors.New("took longer than its bound")

// recreate runs f within Bound.
func (g *Guard) recreate(ctx context.Context, f func(context.Context) error) error {
	bounded, cancel := context.WithTimeout(ctx, g.Bound)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f(bounded) }()
	select {
	case err := <-done:
		if err == nil {
			return nil
		}
		if bounded.Err() == nil || ctx.Err() != nil { // its own error, not the bound's
			return fmt.Errorf("re-create the Kafka client after a leader stall: %w", err)
		}
	case <-bounded.Done():
	}
	return fmt.Errorf("re-creating the Kafka client after a leader stall %w (%s)", errBound, g.Bound)
}

// Ask returns a function that gets the cluster's leader of each partition
// of topic from a client of its own, made from cm for each question: the
// stalled client may reach no broker although they are up, and a
// long-lived client would carry a broker fault of its own from one
// question to the next.
func Ask(cm kafka.ConfigMap, topic string) func(context.Context) (map[int32]int32, error) {
	return func(ctx context.Context) (map[int32]int32, error) {
		own := maps.Clone(cm)
		for k := range own {
			if k == "debug" || strings.HasPrefix(k, "go.") {
				delete(own, k) // debug would raise log_level; go.* are the producer's, unknown to an admin client
			}
		}
		own["log_level"] = 0 // its failures show as the error it returns
		a, err := kafka.NewAdminClient(&own)
		if err != nil {
			return nil, err
		}
		defer a.Close()
		timeout := 5000
		if d, ok := ctx.Deadline(); ok {
			timeout = max(int(time.Until(d).Milliseconds()), 1)
		}
		md, err := a.GetMetadata(&topic, false, timeout)
		if err != nil {
			return nil, err
		}
		leaders := map[int32]int32{}
		for _, p := range md.Topics[topic].Partitions {
			leaders[p.ID] = p.Leader
		}
		return leaders, nil
	}
}
