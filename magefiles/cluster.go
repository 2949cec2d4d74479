package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/magefile/mage/mg"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Cluster runs three Kafka nodes (docker-compose.cluster.yml) beside the single one.
type Cluster mg.Namespace

// Up starts three Kafka nodes and creates the topics.
//
// Each node is a broker and a controller; host clients use
// localhost:29092,localhost:39092,localhost:49092 (KAFKA_CLUSTER_PORT_1..3).
// It returns once the three are healthy, the controller quorum has a leader,
// every broker is registered, and KAFKA_TOPIC (default timestamp) and its
// dead-letter topic exist with the cluster's defaults: 6 partitions, 3
// copies each, every copy in sync.
func (Cluster) Up(ctx context.Context) error {
	mg.Deps(needDocker)
	start := time.Now()
	s, err := newClusterStack()
	if err != nil {
		return err
	}
	image, _, err := kafkaImage()
	if err != nil {
		return err
	}
	if err := s.up(image); err != nil {
		return err
	}
	topic, err := repo.Setting("KAFKA_TOPIC", "timestamp")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if _, err := clusterReady(ctx, s.bootstrap(), len(s.nodes), ""); err != nil {
		return fmt.Errorf("cluster at %s: %w", s.bootstrap(), err)
	}
	if err := provision(ctx, s.bootstrap()); err != nil {
		return err
	}
	state, err := clusterReady(ctx, s.bootstrap(), len(s.nodes), topic)
	if err != nil {
		return fmt.Errorf("cluster at %s: %w", s.bootstrap(), err)
	}
	fmt.Printf("Cluster is up after %s: %s\n", time.Since(start).Round(time.Second), state)
	fmt.Printf("Run the services against it: KAFKA_BOOTSTRAP_SERVERS=%s go tool mage run:consumer (go tool mage cluster:down stops it).\n", s.bootstrap())
	return nil
}

// Down removes the cluster's containers; its data stays.
func (Cluster) Down() error {
	mg.Deps(needDocker)
	s, err := newClusterStack()
	if err != nil {
		return err
	}
	return s.down()
}

// clusterReady waits until the controller quorum has a leader, nodes
// brokers are registered and, unless topic is empty, every copy of topic
// is in sync. It says what it found.
func clusterReady(ctx context.Context, bootstrap string, nodes int, topic string) (string, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...))
	if err != nil {
		return "", err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for {
		state, err := clusterState(ctx, cl, adm, nodes, topic)
		if err == nil {
			return state, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("not ready: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// clusterState is one look at the cluster; an error says what is missing.
func clusterState(ctx context.Context, cl *kgo.Client, adm *kadm.Client, nodes int, topic string) (string, error) {
	req := kmsg.NewPtrDescribeQuorumRequest()
	rt := kmsg.NewDescribeQuorumRequestTopic()
	rt.Topic = "__cluster_metadata"
	rt.Partitions = []kmsg.DescribeQuorumRequestTopicPartition{kmsg.NewDescribeQuorumRequestTopicPartition()}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		return "", fmt.Errorf("describe the controller quorum: %w", err)
	}
	if len(resp.Topics) == 0 || len(resp.Topics[0].Partitions) == 0 || resp.Topics[0].Partitions[0].LeaderID < 0 {
		return "", errors.New("the controller quorum has no leader")
	}
	q := resp.Topics[0].Partitions[0]
	md, err := adm.Metadata(ctx)
	if err != nil {
		return "", err
	}
	if len(md.Brokers) < nodes {
		return "", fmt.Errorf("%d of %d brokers registered", len(md.Brokers), nodes)
	}
	if topic == "" {
		return fmt.Sprintf("brokers %v, controller quorum leader %d", md.Brokers.NodeIDs(), q.LeaderID), nil
	}
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return "", err
	}
	if !td.Has(topic) || td[topic].Err != nil {
		return "", fmt.Errorf("topic %s: %v", topic, td[topic].Err)
	}
	t := td[topic]
	for _, p := range t.Partitions {
		if p.Leader < 0 || len(p.ISR) < len(p.Replicas) {
			return "", fmt.Errorf("topic %s partition %d: leader %d, in sync %d of %d", topic, p.Partition, p.Leader, len(p.ISR), len(p.Replicas))
		}
	}
	return fmt.Sprintf("brokers %v, controller quorum leader %d (of %d voters), topic %s with %d partitions of %d copies",
		md.Brokers.NodeIDs(), q.LeaderID, len(q.CurrentVoters), topic, len(t.Partitions), t.Partitions.NumReplicas()), nil
}
