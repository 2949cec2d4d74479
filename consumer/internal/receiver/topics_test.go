package receiver

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/consumer/internal/config"
)

// The consumer creates no topic: a missing one is said at once, naming it.
func TestCheckTopics(t *testing.T) {
	for _, tt := range []struct {
		name    string
		topics  map[string]int
		missing string // the topic named; "" when both exist
	}{
		{"both exist", map[string]int{topic: 2, topic + ".dlq": 1}, ""},
		{"no topic", map[string]int{topic + ".dlq": 1}, topic},
		{"no dead-letter topic", map[string]int{topic: 1}, topic + ".dlq"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			mc := newMockCluster(t, 1, tt.topics)
			r := newReceiver(t, mc, &syncBuffer{}, config.Config{}, nil)
			t.Cleanup(r.Close)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err := r.CheckTopics(ctx)
			if tt.missing == "" {
				if err != nil {
					t.Fatalf("CheckTopics: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), `"`+tt.missing+`"`) {
				t.Fatalf("CheckTopics = %v; want ErrMissing naming %q", err, tt.missing)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %s to say so; waiting does not create a topic", took)
			}
		})
	}
}

// Kafka out of reach: the wait ends with the context, and the error says so.
func TestCheckTopics_unreachable(t *testing.T) {
	mc := mockCluster(t)
	r := newReceiver(t, mc, &syncBuffer{}, config.Config{}, kafka.ConfigMap{"bootstrap.servers": "127.0.0.1:1"})
	t.Cleanup(r.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := r.CheckTopics(ctx)
	if err == nil || errors.Is(err, ErrMissing) || !strings.HasPrefix(err.Error(), "cannot reach Kafka at 127.0.0.1:1") {
		t.Fatalf("CheckTopics = %v; want that Kafka could not be reached", err)
	}
}
