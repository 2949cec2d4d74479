package topics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func TestEnsure(t *testing.T) {
	small, source := "1024", "1048588"
	for _, tc := range []struct {
		name     string
		existing map[string]map[string]*string // topics there before, with their configs
		spec     Spec
		did      []string // prefixes of the lines Ensure returns
		dlqMax   int
	}{
		{name: "creates both, the dead-letter topic sized to the source",
			spec: Spec{Topic: "events"}, dlqMax: 1048588 + Headroom,
			did: []string{"created topic events", "created topic events.dlq (max.message.bytes 1050636"}},
		{name: "follows a source topic's own limit",
			existing: map[string]map[string]*string{"events": {"max.message.bytes": &small}},
			spec:     Spec{Topic: "events", DLQ: "letters"}, dlqMax: 1024 + Headroom,
			did: []string{"created topic letters (max.message.bytes 3072"}},
		{name: "raises a dead-letter topic too small for the source",
			existing: map[string]map[string]*string{"events": nil, "events.dlq": {"max.message.bytes": &small}},
			spec:     Spec{Topic: "events"}, dlqMax: 1048588 + Headroom,
			did: []string{"raised max.message.bytes of topic events.dlq from 1024 to 1050636"}},
		{name: "raises one that takes the source's limit but not the dlq headers",
			existing: map[string]map[string]*string{"events": nil, "events.dlq": {"max.message.bytes": &source}},
			spec:     Spec{Topic: "events"}, dlqMax: 1048588 + Headroom,
			did: []string{"raised max.message.bytes of topic events.dlq from 1048588 to 1050636"}},
		{name: "changes nothing where both are right",
			existing: map[string]map[string]*string{"events": {"max.message.bytes": &small}, "events.dlq": nil},
			spec:     Spec{Topic: "events"}, dlqMax: 1048588},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			fake, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.DefaultNumPartitions(2))
			if err != nil {
				t.Fatal(err)
			}
			defer fake.Close()
			cl, err := kgo.NewClient(kgo.SeedBrokers(fake.ListenAddrs()...))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			adm := kadm.NewClient(cl)
			for topic, configs := range tc.existing {
				if _, err := adm.CreateTopic(ctx, 1, 1, configs, topic); err != nil {
					t.Fatalf("create %s: %v", topic, err)
				}
			}
			did, err := Ensure(ctx, cl, tc.spec)
			if err != nil {
				t.Fatalf("Ensure: %v", err)
			}
			if len(did) != len(tc.did) {
				t.Fatalf("Ensure did %q; want %d lines starting %q", did, len(tc.did), tc.did)
			}
			for i, want := range tc.did {
				if !strings.HasPrefix(did[i], want) {
					t.Errorf("line %d: %q; want it to start %q", i, did[i], want)
				}
			}
			dlq := tc.spec.DLQ
			if dlq == "" {
				dlq = tc.spec.Topic + ".dlq"
			}
			if got, err := maxMessageBytes(ctx, adm, dlq); err != nil || got != tc.dlqMax {
				t.Errorf("max.message.bytes of %s = %d (%v); want %d", dlq, got, err, tc.dlqMax)
			}
			again, err := Ensure(ctx, cl, tc.spec)
			if err != nil || len(again) != 0 {
				t.Errorf("Ensure again did %q (%v); want nothing", again, err)
			}
		})
	}
}

func TestEnsure_saysWhatFailed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fake, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(fake.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// Three copies on one broker: the cluster refuses.
	_, err = Ensure(ctx, cl, Spec{Topic: "events", Replication: 3})
	if err == nil || !strings.Contains(err.Error(), "create topic events") {
		t.Errorf("Ensure = %v; want an error naming the topic it could not create", err)
	}
}
