// Package topics creates the tutorial's topics, as whoever runs a Kafka
// cluster does in production: the services need no administrator rights and
// only check at start that their topics exist. `go tool mage up`,
// `cluster:up`, the compose app profile's topics service, the e2e suite,
// the bench and the demo all provision through Ensure.
package topics

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Headroom is what a dead letter adds to the event it copies: the dlq.*
// headers (at most 1,361 bytes, with dlq.error cut at 1 KiB) and a record's
// length fields. The dead-letter topic takes the source topic's limit plus this.
const Headroom = 2048

// Spec names the topics to create and their layout.
type Spec struct {
	Topic       string // the events
	DLQ         string // their dead-letter topic; empty is Topic + ".dlq"
	Partitions  int32  // of each topic created; -1 or 0 is the cluster's num.partitions
	Replication int16  // copies of each partition; -1 or 0 is the cluster's default.replication.factor
}

// Ensure creates the topic and its dead-letter topic unless they exist, gives
// the dead-letter topic room for anything the topic accepts plus Headroom,
// and returns once every broker knows both and every partition has a leader.
// It returns one line for each change it made.
func Ensure(ctx context.Context, cl *kgo.Client, s Spec) ([]string, error) {
	adm := kadm.NewClient(cl)
	s.DLQ = DeadLetterTopic(s)
	var did []string
	created, err := create(ctx, adm, s, s.Topic, nil)
	if err != nil {
		return did, err
	}
	if created {
		did = append(did, "created topic "+s.Topic)
	}
	limit, err := maxMessageBytes(ctx, adm, s.Topic)
	if err != nil {
		return did, err
	}
	want := strconv.Itoa(limit + Headroom)
	created, err = create(ctx, adm, s, s.DLQ, map[string]*string{"max.message.bytes": &want})
	if err != nil {
		return did, err
	}
	if created {
		did = append(did, fmt.Sprintf("created topic %s (max.message.bytes %s: %s's %d plus %d for the dlq headers)", s.DLQ, want, s.Topic, limit, Headroom))
	} else if have, err := maxMessageBytes(ctx, adm, s.DLQ); err != nil {
		return did, err
	} else if have < limit+Headroom {
		res, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.message.bytes", Value: &want}}, s.DLQ)
		if err == nil {
			var r kadm.AlterConfigsResponse
			if r, err = res.On(s.DLQ, nil); err == nil {
				err = r.Err
			}
		}
		if err != nil {
			return did, fmt.Errorf("raise max.message.bytes of topic %s to %s: %w", s.DLQ, want, err)
		}
		did = append(did, fmt.Sprintf("raised max.message.bytes of topic %s from %d to %s", s.DLQ, have, want))
	}
	return did, waitKnown(ctx, cl, s.Topic, s.DLQ)
}

// DeadLetterTopic is the spec's dead-letter topic: DLQ, or Topic + ".dlq".
func DeadLetterTopic(s Spec) string {
	if s.DLQ != "" {
		return s.DLQ
	}
	return s.Topic + ".dlq"
}

// create creates topic unless it exists, and reports whether it did.
func create(ctx context.Context, adm *kadm.Client, s Spec, topic string, configs map[string]*string) (bool, error) {
	partitions, copies := s.Partitions, s.Replication
	if partitions <= 0 {
		partitions = -1 // the cluster's num.partitions
	}
	if copies <= 0 {
		copies = -1 // the cluster's default.replication.factor
	}
	res, err := adm.CreateTopic(ctx, partitions, copies, configs, topic)
	if err == nil {
		err = res.Err
	}
	switch {
	case errors.Is(err, kerr.TopicAlreadyExists):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("create topic %s: %w", topic, err)
	}
	return true, nil
}

// maxMessageBytes is the topic's max.message.bytes: its own, or the broker's
// default. A broker that does not know yet of a topic created a moment ago is
// asked again.
func maxMessageBytes(ctx context.Context, adm *kadm.Client, topic string) (int, error) {
	for {
		rcs, err := adm.DescribeTopicConfigs(ctx, topic)
		var rc kadm.ResourceConfig
		if err == nil {
			rc, err = rcs.On(topic, nil)
		}
		if err == nil {
			err = rc.Err
		}
		if err == nil {
			for _, c := range rc.Configs {
				if c.Key == "max.message.bytes" && c.Value != nil {
					if n, err := strconv.Atoi(*c.Value); err == nil && n > 0 {
						return n, nil
					}
				}
			}
			return 0, fmt.Errorf("describe topic %s: no max.message.bytes in the answer", topic)
		}
		if !errors.Is(err, kerr.UnknownTopicOrPartition) {
			return 0, fmt.Errorf("describe topic %s: %w", topic, err)
		}
		if err := sleep(ctx); err != nil {
			return 0, fmt.Errorf("describe topic %s: %w", topic, err)
		}
	}
}

// waitKnown returns once every broker answers metadata for the topics with a
// leader for each partition: a client that starts next may ask any of them.
func waitKnown(ctx context.Context, cl *kgo.Client, topics ...string) error {
	for {
		err := known(ctx, cl, topics)
		if err == nil {
			return nil
		}
		if serr := sleep(ctx); serr != nil {
			return fmt.Errorf("%w (%w)", err, serr)
		}
	}
}

// known is one look at every broker's metadata of the topics.
func known(ctx context.Context, cl *kgo.Client, topics []string) error {
	brokers, err := kadm.NewClient(cl).ListBrokers(ctx)
	if err != nil {
		return fmt.Errorf("list brokers: %w", err)
	}
	req := kmsg.NewPtrMetadataRequest()
	for _, t := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(t)
		req.Topics = append(req.Topics, rt)
	}
	for _, b := range brokers {
		resp, err := req.RequestWith(ctx, cl.Broker(int(b.NodeID)))
		if err != nil {
			return fmt.Errorf("metadata from broker %d: %w", b.NodeID, err)
		}
		for _, t := range resp.Topics {
			name := ""
			if t.Topic != nil {
				name = *t.Topic
			}
			if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
				return fmt.Errorf("broker %d: topic %s: %w", b.NodeID, name, err)
			}
			if len(t.Partitions) == 0 {
				return fmt.Errorf("broker %d knows no partitions of topic %s yet", b.NodeID, name)
			}
			for _, p := range t.Partitions {
				if p.Leader < 0 {
					return fmt.Errorf("broker %d: topic %s partition %d has no leader yet", b.NodeID, name, p.Partition)
				}
			}
		}
	}
	return nil
}

func sleep(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(100 * time.Millisecond):
		return nil
	}
}
