package config

import (
	"errors"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestParse(t *testing.T) {
	defaults := Config{
		BootstrapServers: "localhost:9092",
		Topic:            "timestamp",
		Group:            "timestamp-consumer",
		DLQTopic:         "timestamp.dlq",
		GroupProtocol:    "consumer",
		LogFormat:        "text",
		LogLevel:         slog.LevelInfo,
		LogEvents:        true,
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want func(*Config)
	}{
		{name: "tutorial defaults"},
		{
			name: "environment fallbacks",
			env: map[string]string{"KAFKA_BOOTSTRAP_SERVERS": "kafka:19092", "KAFKA_TOPIC": "ticks",
				"KAFKA_GROUP_ID": "g", "CONSUMER_COUNT": "3", "LOG_FORMAT": "json"},
			want: func(c *Config) {
				c.BootstrapServers, c.Topic, c.Group, c.Count, c.LogFormat = "kafka:19092", "ticks", "g", 3, "json"
				c.DLQTopic = "ticks.dlq"
			},
		},
		{
			name: "flags win over the environment",
			args: []string{"--group", "a", "--dlq-topic", "dead"},
			env:  map[string]string{"KAFKA_GROUP_ID": "b", "KAFKA_DLQ_TOPIC": "other"},
			want: func(c *Config) { c.Group, c.DLQTopic = "a", "dead" },
		},
		{
			name: "no line per event, debug level from the environment",
			env:  map[string]string{"LOG_EVENTS": "false", "LOG_LEVEL": "debug"},
			want: func(c *Config) { c.LogEvents, c.LogLevel = false, slog.LevelDebug },
		},
		{
			name: "classic group protocol",
			args: []string{"--group-protocol", "classic"},
			want: func(c *Config) { c.GroupProtocol = "classic" },
		},
		{
			name: "librdkafka properties",
			args: []string{"-X", "session.timeout.ms=6000"},
			want: func(c *Config) { c.Kafka = kafka.ConfigMap{"session.timeout.ms": "6000"} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.args, env(tt.env), io.Discard)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := defaults
			want.Kafka = kafka.ConfigMap{}
			if tt.want != nil {
				tt.want(&want)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestParse_rejectsBadValues(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		setting string // what the error must name
	}{
		{"empty bootstrap list", nil, map[string]string{"KAFKA_BOOTSTRAP_SERVERS": ","}, "KAFKA_BOOTSTRAP_SERVERS"},
		{"illegal topic", []string{"--topic", strings.Repeat("t", 250)}, nil, "--topic"},
		{"blank group", []string{"--group", " "}, nil, "--group"},
		{"illegal dead-letter topic", nil, map[string]string{"KAFKA_DLQ_TOPIC": "a b"}, "KAFKA_DLQ_TOPIC"},
		{"dead-letter topic is the topic", []string{"--dlq-topic", "timestamp"}, nil, "--dlq-topic"},
		{"negative count", nil, map[string]string{"CONSUMER_COUNT": "-5"}, "CONSUMER_COUNT"},
		{"unknown log level", nil, map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{"count not a number", []string{"--count", "many"}, nil, "--count"},
		{"log events neither true nor false", []string{"--log-events", "quiet"}, nil, "--log-events"},
		{"unknown log format", []string{"--log-format", "yaml"}, nil, "--log-format"},
		{"offsets stored before handling", []string{"-X", "enable.auto.offset.store=true"}, nil, "-X enable.auto.offset.store"},
		{"topics are never created by the client", []string{"-X", "allow.auto.create.topics=true"}, nil, "-X allow.auto.create.topics"},
		{"group through -X", []string{"-X", "group.id=x"}, nil, "-X group.id"},
		{"events through a channel", []string{"-X", "go.events.channel.enable=true"}, nil, "-X"},
		{"rebalances handed to the application", []string{"-X", "linger.ms=5", "-X", "go.application.rebalance.enable=true"}, nil, "-X"},
		{"unknown flag", []string{"--key", "none"}, nil, "flags"},
		{"unknown group protocol", []string{"--group-protocol", "eager"}, nil, "--group-protocol"},
		{"group protocol through -X", []string{"-X", "group.protocol=classic"}, nil, "-X group.protocol"},
		{"HTTP port out of range", nil, map[string]string{"HTTP_ADDR": ":65536"}, "HTTP_ADDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.args, env(tt.env), io.Discard)
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("Parse error %v, want *Error", err)
			}
			if cerr.Setting != tt.setting {
				t.Errorf("error names %q, want %q: %v", cerr.Setting, tt.setting, err)
			}
		})
	}
}

func TestParse_help(t *testing.T) {
	var out strings.Builder
	if _, err := Parse([]string{"-h"}, env(nil), &out); !errors.Is(err, ErrHelp) {
		t.Fatalf("err %v, want ErrHelp", err)
	}
	if n := strings.Count(out.String(), "Usage: "); n != 1 {
		t.Errorf("usage printed %d times, want once", n)
	}
	for _, s := range settings {
		if !strings.Contains(out.String(), "-"+s.name) || !strings.Contains(out.String(), s.env) {
			t.Errorf("help does not document --%s and %s", s.name, s.env)
		}
	}
}
