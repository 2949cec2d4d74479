// Package leaderstall works around librdkafka#5430: after a broker restart
// the client may keep, for good, no leader for a partition or no group
// coordinator, while the cluster serves both. The client then neither
// fetches nor commits, and says nothing. The Guard recognises that state and
// has the client re-created; a re-created consumer resumes from the
// committed offsets, so the events handled since the last commit come again.
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

// View is who leads each partition of the topic (-1: nobody), and whether
// the group has a coordinator: the client's view, from its statistics, or
// the cluster's, from a client of its own.
type View struct {
	Leaders        map[int32]int32
	HasCoordinator bool
}

// short tells whether the view lacks a leader or the coordinator.
func (v View) short() bool {
	for _, l := range v.Leaders {
		if l < 0 {
			return true
		}
	}
	return !v.HasCoordinator
}

// Guard watches a consumer for the stall. Observe is called where the
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
	ask    func(context.Context) (View, error) // the cluster's view
	client atomic.Pointer[observed]            // the client's view, from its latest statistics
	failed atomic.Pointer[error]
	gaveUp chan struct{}
}

// observed is the client's view and when its statistics came.
type observed struct {
	View
	at time.Time
}

// New returns a guard for a consumer of topic. ask gets the cluster's view
// from a client that was not part of the stall.
func New(topic string, log *slog.Logger, ask func(context.Context) (View, error)) *Guard {
	return &Guard{After: 30 * time.Second, Every: 5 * time.Second, Bound: 15 * time.Second, topic: topic, log: log, ask: ask,
		gaveUp: make(chan struct{})}
}

// statistics is the part of librdkafka's statistics (STATISTICS.md) that
// holds the client's view.
type statistics struct {
	Cgrp struct {
		State string `json:"state"` // up: the coordinator is known and reached
	} `json:"cgrp"`
	Topics map[string]struct {
		Partitions map[string]struct {
			Partition int32 `json:"partition"` // -1: the client's "unassigned" entry
			Leader    int32 `json:"leader"`
			Broker    int32 `json:"broker"`  // the broker it fetches from; -1: none
			Desired   bool  `json:"desired"` // assigned to this consumer
		} `json:"partitions"`
	} `json:"topics"`
}

// Observe takes the client's view from a statistics event's JSON.
func (g *Guard) Observe(js string) {
	var s statistics
	if json.Unmarshal([]byte(js), &s) != nil {
		return // the statistics' own reader says so
	}
	o := observed{View{Leaders: map[int32]int32{}}, time.Now()}
	switch s.Cgrp.State {
	case "up", "", "init", "term": // reached, or not subscribed (yet, or any more): nothing to hold
		o.HasCoordinator = true
	}
	for _, p := range s.Topics[g.topic].Partitions {
		if p.Desired && p.Partition >= 0 {
			// A partition stuck in #5430 may keep its old leader id while the client fetches from no broker.
			o.Leaders[p.Partition] = min(p.Leader, p.Broker)
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
// an assigned partition, or no coordinator, and the cluster answered that
// it has them. The cluster is asked only when the client's view is short.
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
	return stalled(c.View, cluster)
}

// stalled describes where the client holds none of what the cluster has.
func stalled(client, cluster View) string {
	var s []string
	for _, p := range slices.Sorted(maps.Keys(client.Leaders)) {
		if l, ok := cluster.Leaders[p]; client.Leaders[p] < 0 && ok && l >= 0 {
			s = append(s, fmt.Sprintf("partition %d: the client holds no leader, the cluster's is broker %d", p, l))
		}
	}
	if !client.HasCoordinator && cluster.HasCoordinator {
		s = append(s, "the client holds no group coordinator, the cluster's answers")
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

// Ask returns a function that gets the cluster's view of topic and group
// from a client of its own, made from cm for each question: the stalled
// client may reach no broker although they are up, and a long-lived client
// would carry a broker fault of its own from one question to the next. It
// is a consumer that never joins the group; the admin API's requests have
// crashed librdkafka 2.15 when they timed out or lost their connection
// (librdkafka#4605), which is what they do while a broker restarts.
func Ask(cm kafka.ConfigMap, topic, group string) func(context.Context) (View, error) {
	return func(ctx context.Context) (View, error) {
		own := maps.Clone(cm)
		for k := range own {
			if k == "debug" || strings.HasPrefix(k, "go.") {
				delete(own, k) // debug would raise log_level; go.* (its logs channel) are the consumer's
			}
		}
		maps.Copy(own, kafka.ConfigMap{"log_level": 0, // its failures show as the errors it returns
			"group.id": group, "enable.auto.commit": false})
		c, err := kafka.NewConsumer(&own)
		if err != nil {
			return View{}, err
		}
		defer c.Close() // never subscribed: nothing to leave or commit
		remaining := func() int {
			if d, ok := ctx.Deadline(); ok {
				return max(int(time.Until(d).Milliseconds()), 1)
			}
			return 5000
		}
		md, err := c.GetMetadata(&topic, false, remaining())
		if err != nil {
			return View{}, err
		}
		v := View{Leaders: map[int32]int32{}}
		var tps []kafka.TopicPartition
		for _, p := range md.Topics[topic].Partitions {
			v.Leaders[p.ID] = p.Leader
			tps = append(tps, kafka.TopicPartition{Topic: &topic, Partition: p.ID})
		}
		// Only the group's coordinator answers for its committed offsets.
		_, err = c.Committed(tps, remaining())
		v.HasCoordinator = err == nil
		return v, nil
	}
}
