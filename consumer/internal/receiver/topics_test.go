package receiver

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/consumer/internal/config"
)

// fakeAdmin answers the admin requests of EnsureTopics, which the mock
// cluster does not serve: it keeps each topic's max.message.bytes and
// creates topics in the mock cluster.
type fakeAdmin struct {
	mc      *kafka.MockCluster
	mu      sync.Mutex
	limits  map[string]int
	refuse  map[string]kafka.Error // by request: "create", "describe", "alter"
	created map[string]map[string]string
	specs   []kafka.TopicSpecification // every topic asked for
	offered string                     // the brokers' group.coordinator.rebalance.protocols
	notYet  int                        // topic descriptions answered UNKNOWN_TOPIC_OR_PART first, as by a broker new topics have not reached yet
}

func (a *fakeAdmin) CreateTopics(_ context.Context, ts []kafka.TopicSpecification, _ ...kafka.CreateTopicsAdminOption) ([]kafka.TopicResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []kafka.TopicResult
	for _, ts := range ts {
		a.specs = append(a.specs, ts)
		res := kafka.TopicResult{Topic: ts.Topic, Error: a.refuse["create"]}
		if res.Error.Code() == kafka.ErrNoError {
			if a.created == nil {
				a.created = map[string]map[string]string{}
			}
			a.created[ts.Topic] = ts.Config
			if a.mc != nil { // else the topic never gets a leader
				n := ts.NumPartitions
				if n < 0 {
					n = 1 // the broker's num.partitions; the mock cluster takes no -1
				}
				if err := a.mc.CreateTopic(ts.Topic, n, 1); err != nil {
					return nil, err
				}
			}
		}
		out = append(out, res)
	}
	return out, nil
}

func (a *fakeAdmin) DescribeConfigs(_ context.Context, rs []kafka.ConfigResource, _ ...kafka.DescribeConfigsAdminOption) ([]kafka.ConfigResourceResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []kafka.ConfigResourceResult
	for _, r := range rs {
		if r.Type == kafka.ResourceBroker {
			out = append(out, kafka.ConfigResourceResult{Type: r.Type, Name: r.Name, Error: a.refuse["describe"],
				Config: map[string]kafka.ConfigEntryResult{"group.coordinator.rebalance.protocols": {Value: a.offered}}})
			continue
		}
		limit, ok := a.limits[r.Name]
		if !ok {
			limit = 1048588 // the broker's default
		}
		if a.notYet > 0 {
			a.notYet--
			out = append(out, kafka.ConfigResourceResult{Type: r.Type, Name: r.Name,
				Error: kafka.NewError(kafka.ErrUnknownTopicOrPart, "Broker: Unknown topic or partition", false)})
			continue
		}
		out = append(out, kafka.ConfigResourceResult{Type: r.Type, Name: r.Name, Error: a.refuse["describe"],
			Config: map[string]kafka.ConfigEntryResult{"max.message.bytes": {Name: "max.message.bytes", Value: strconv.Itoa(limit)}}})
	}
	return out, nil
}

func (a *fakeAdmin) IncrementalAlterConfigs(_ context.Context, rs []kafka.ConfigResource, _ ...kafka.AlterConfigsAdminOption) ([]kafka.ConfigResourceResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []kafka.ConfigResourceResult
	for _, r := range rs {
		res := kafka.ConfigResourceResult{Type: r.Type, Name: r.Name, Error: a.refuse["alter"]}
		if res.Error.Code() == kafka.ErrNoError {
			for _, c := range r.Config {
				if c.Name == "max.message.bytes" {
					a.limits[r.Name], _ = strconv.Atoi(c.Value)
				}
			}
		}
		out = append(out, res)
	}
	return out, nil
}

func TestEnsureTopics_sizesTheDeadLetterTopic(t *testing.T) {
	tests := []struct {
		name     string
		exists   bool // the dead-letter topic exists before the start
		limits   map[string]int
		notYet   int    // descriptions of a topic the broker does not know yet
		want     int    // the dead-letter topic's max.message.bytes afterwards
		wantLine string // "" when nothing may be logged about it
	}{
		{name: "created with room for the headers", want: 1048588 + 2048},
		{name: "described once the broker knows the topic", notYet: 3, want: 1048588 + 2048},
		{name: "raised when too small", exists: true, limits: map[string]int{topic + ".dlq": 1048588}, want: 1048588 + 2048,
			wantLine: `"msg":"Raised max.message.bytes of the dead-letter topic","topic":"timestamp.dlq","from":1048588,"to":1050636,"source_limit":1048588}`},
		{name: "left alone when large enough", exists: true, limits: map[string]int{topic: 2000, topic + ".dlq": 9000}, want: 9000},
		{name: "follows a source topic's own limit", exists: true, limits: map[string]int{topic: 5_000_000, topic + ".dlq": 1048588}, want: 5_002_048,
			wantLine: `"msg":"Raised max.message.bytes of the dead-letter topic","topic":"timestamp.dlq","from":1048588,"to":5002048,"source_limit":5000000}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topics := map[string]int{topic: 1}
			if tt.exists {
				topics[topic+".dlq"] = 1
			}
			mc := newMockCluster(t, 1, topics)
			limits := map[string]int{}
			for k, v := range tt.limits {
				limits[k] = v
			}
			admin := &fakeAdmin{mc: mc, limits: limits, notYet: tt.notYet}
			var out syncBuffer
			r := newReceiver(t, mc, &out, config.Config{}, nil)
			t.Cleanup(r.Close)
			if err := r.EnsureTopics(context.Background(), admin, 10*time.Second); err != nil {
				t.Fatalf("EnsureTopics: %v", err)
			}
			got := admin.limits[topic+".dlq"]
			if !tt.exists {
				got, _ = strconv.Atoi(admin.created[topic+".dlq"]["max.message.bytes"])
			}
			if got != tt.want {
				t.Errorf("dead-letter topic's max.message.bytes %d, want %d", got, tt.want)
			}
			line := strings.Contains(out.String(), "Raised ")
			if tt.wantLine == "" && line || tt.wantLine != "" && !strings.Contains(out.String(), tt.wantLine+"\n") {
				t.Errorf("log:\n%s\nwant line %q", out.String(), tt.wantLine)
			}
		})
	}
}

func TestEnsureTopics_saysWhatFailed(t *testing.T) {
	tests := []struct {
		name    string
		servers string // "" for the mock cluster
		missing bool   // the topics do not exist
		refuse  map[string]kafka.Error
		want    string
	}{
		{name: "unreachable", servers: "127.0.0.1:1",
			want: `cannot reach Kafka at 127.0.0.1:1 within 2s: looking up topic "timestamp": `},
		{name: "describing refused", refuse: map[string]kafka.Error{"describe": kafka.NewError(kafka.ErrTopicAuthorizationFailed, "Topic authorization failed", false)},
			want: `Kafka at MOCK refused describing topic "timestamp": TOPIC_AUTHORIZATION_FAILED: Topic authorization failed`},
		{name: "raising refused", refuse: map[string]kafka.Error{"alter": kafka.NewError(kafka.ErrPolicyViolation, "Altering max.message.bytes is not allowed", false)},
			want: `Kafka at MOCK refused raising max.message.bytes of topic "timestamp.dlq" from 1048588 to 1050636: POLICY_VIOLATION: Altering max.message.bytes is not allowed`},
		{name: "creating refused", missing: true, refuse: map[string]kafka.Error{"create": kafka.NewError(kafka.ErrClusterAuthorizationFailed, "Cluster authorization failed", false)},
			want: `Kafka at MOCK refused creating topic "timestamp": CLUSTER_AUTHORIZATION_FAILED: Cluster authorization failed`},
		{name: "created without a leader", missing: true,
			want: `topic "timestamp" has a partition with no leader after 2s`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			topics := map[string]int{topic: 1, topic + ".dlq": 1}
			if tt.missing {
				topics = nil
			}
			mc := newMockCluster(t, 1, topics)
			props := kafka.ConfigMap{}
			if tt.servers != "" {
				props["bootstrap.servers"] = tt.servers
			}
			r := newReceiver(t, mc, &syncBuffer{}, config.Config{}, props)
			t.Cleanup(r.Close)
			err := r.EnsureTopics(context.Background(), &fakeAdmin{limits: map[string]int{}, refuse: tt.refuse}, 2*time.Second)
			want := strings.ReplaceAll(tt.want, "MOCK", mc.BootstrapServers())
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("EnsureTopics: %v\nwant %s", err, want)
			}
		})
	}
}

func TestReceiver_failTellsRefusalFromSilence(t *testing.T) {
	s := &Receiver{cfg: config.Config{BootstrapServers: "kafka:9092"}, timeout: 30 * time.Second}
	tests := []struct {
		err  error
		want string
	}{
		{kafka.NewError(kafka.ErrTopicAuthorizationFailed, "Broker: Topic authorization failed", false),
			`Kafka at kafka:9092 refused the metadata of topic "t": TOPIC_AUTHORIZATION_FAILED: Broker: Topic authorization failed`},
		{kafka.NewError(kafka.ErrTransport, "Local: Broker transport failure", false),
			`cannot reach Kafka at kafka:9092 within 30s: the metadata of topic "t": Local: Broker transport failure`},
		{context.DeadlineExceeded, `cannot reach Kafka at kafka:9092 within 30s: the metadata of topic "t": context deadline exceeded`},
	}
	for _, tt := range tests {
		err := s.fail(`the metadata of topic "t"`, tt.err)
		if err.Error() != tt.want || !errors.Is(err, tt.err) {
			t.Errorf("fail(%v) = %q, want %q wrapping the cause", tt.err, err, tt.want)
		}
	}
}

func TestEnsureTopics_createsWithTheClusterDefaultsOrTheSettings(t *testing.T) {
	for _, tt := range []struct {
		name               string
		cfg                config.Config
		partitions, copies int
	}{
		{"the cluster's defaults", config.Config{}, -1, 0},
		{"--partitions 6 --replication-factor 3", config.Config{Partitions: 6, Replication: 3}, 6, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mc := newMockCluster(t, 1, nil)
			admin := &fakeAdmin{mc: mc, limits: map[string]int{}}
			r := newReceiver(t, mc, &syncBuffer{}, tt.cfg, nil)
			t.Cleanup(r.Close)
			if err := r.EnsureTopics(context.Background(), admin, 10*time.Second); err != nil {
				t.Fatalf("EnsureTopics: %v", err)
			}
			if len(admin.specs) != 2 {
				t.Fatalf("asked for %d topics, want the topic and its dead-letter topic", len(admin.specs))
			}
			for _, ts := range admin.specs {
				if ts.NumPartitions != tt.partitions || ts.ReplicationFactor != tt.copies {
					t.Errorf("topic %s asked with %d partitions of %d copies, want %d of %d",
						ts.Topic, ts.NumPartitions, ts.ReplicationFactor, tt.partitions, tt.copies)
				}
			}
		})
	}
}

func TestEnsureTopics_joinsWithClassicWhereTheClusterLacksTheConsumerProtocol(t *testing.T) {
	for _, tt := range []struct {
		offered, want string
	}{
		{"classic,consumer,streams", "consumer"}, // Kafka 4's default
		{"classic", "classic"},                   // turned off, or a broker before 4.0
		{"", "classic"},                          // a broker that has no such setting
	} {
		t.Run(tt.offered, func(t *testing.T) {
			mc := newMockCluster(t, 1, map[string]int{topic: 1, topic + ".dlq": 1})
			var out syncBuffer
			r := newReceiver(t, mc, &out, config.Config{GroupProtocol: "consumer"}, nil)
			t.Cleanup(r.Close)
			if err := r.EnsureTopics(context.Background(), &fakeAdmin{mc: mc, limits: map[string]int{}, offered: tt.offered}, 10*time.Second); err != nil {
				t.Fatalf("EnsureTopics: %v", err)
			}
			if got := r.cm["group.protocol"]; got != tt.want {
				t.Errorf("group.protocol %v, want %s", got, tt.want)
			}
			if warned := strings.Contains(out.String(), "does not offer the consumer group protocol"); warned != (tt.want == "classic") {
				t.Errorf("warning logged: %v, want %v:\n%s", warned, tt.want == "classic", out.String())
			}
			if tt.want == "classic" && r.cm["partition.assignment.strategy"] != "cooperative-sticky" {
				t.Errorf("partition.assignment.strategy %v, want cooperative-sticky", r.cm["partition.assignment.strategy"])
			}
		})
	}
}
