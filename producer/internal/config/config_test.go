package config

import (
	"errors"
	"flag"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestParse(t *testing.T) {
	defaults := Config{
		BootstrapServers: "localhost:9092",
		Topic:            "timestamp",
		Interval:         5 * time.Second,
		Key:              "source",
		LogFormat:        "text",
		LogLevel:         slog.LevelInfo,
		LogEvents:        true,
		Kafka:            kafka.ConfigMap{},
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want func(*Config)
	}{
		{name: "tutorial defaults"},
		{
			name: "spread over the partitions, the flag over the environment",
			args: []string{"--key", "none"},
			env:  map[string]string{"PRODUCER_KEY": "source"},
			want: func(c *Config) { c.Key = "none" },
		},
		{
			name: "environment fallbacks",
			env: map[string]string{"KAFKA_BOOTSTRAP_SERVERS": "kafka:19092", "KAFKA_TOPIC": "ticks",
				"PRODUCER_INTERVAL": "250ms", "PRODUCER_COUNT": "3", "LOG_FORMAT": "json", "LOG_LEVEL": "debug"},
			want: func(c *Config) {
				c.BootstrapServers, c.Topic, c.Interval, c.Count = "kafka:19092", "ticks", 250*time.Millisecond, 3
				c.LogFormat, c.LogLevel = "json", slog.LevelDebug
			},
		},
		{
			name: "flags win over the environment",
			args: []string{"--topic", "a", "-count=7", "--bootstrap-servers", "h1:1, h2:2"},
			env:  map[string]string{"KAFKA_TOPIC": "b", "PRODUCER_COUNT": "9"},
			want: func(c *Config) { c.Topic, c.Count, c.BootstrapServers = "a", 7, "h1:1,h2:2" },
		},
		{
			name: "bulk mode",
			args: []string{"--interval", "0", "--count", "1000"},
			want: func(c *Config) { c.Interval, c.Count = 0, 1000 },
		},
		{
			name: "padded values",
			args: []string{"--value-size", "1024"},
			want: func(c *Config) { c.ValueSize = 1024 },
		},
		{
			name: "padding to the bare value's length",
			env:  map[string]string{"PRODUCER_VALUE_SIZE": "24"},
			want: func(c *Config) { c.ValueSize = 24 },
		},
		{
			name: "no line per event",
			args: []string{"--log-events=false"},
			want: func(c *Config) { c.LogEvents = false },
		},
		{
			name: "no line per event from the environment",
			env:  map[string]string{"LOG_EVENTS": "0"},
			want: func(c *Config) { c.LogEvents = false },
		},
		{
			name: "HTTP endpoint from the environment",
			env:  map[string]string{"HTTP_ADDR": ":9464"},
			want: func(c *Config) { c.HTTPAddr = ":9464" },
		},
		{
			name: "librdkafka properties",
			args: []string{"-X", "linger.ms=50", "-X", "batch.size=1000000"},
			want: func(c *Config) { c.Kafka = kafka.ConfigMap{"linger.ms": "50", "batch.size": "1000000"} },
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
		{"empty bootstrap list", []string{"--bootstrap-servers", " "}, nil, "--bootstrap-servers"},
		{"bootstrap without port", nil, map[string]string{"KAFKA_BOOTSTRAP_SERVERS": "localhost"}, "KAFKA_BOOTSTRAP_SERVERS"},
		{"bootstrap port out of range", []string{"--bootstrap-servers", "a:1,b:70000"}, nil, "--bootstrap-servers"},
		{"illegal topic", []string{"--topic", "a/b"}, nil, "--topic"},
		{"topic dot", nil, map[string]string{"KAFKA_TOPIC": "."}, "KAFKA_TOPIC"},
		{"negative interval", []string{"--interval", "-1s"}, nil, "--interval"},
		{"interval without unit", nil, map[string]string{"PRODUCER_INTERVAL": "5"}, "PRODUCER_INTERVAL"},
		{"flood forever", []string{"--interval", "0"}, nil, "--interval"},
		{"negative count", []string{"--count", "-1"}, nil, "--count"},
		{"count not a number", nil, map[string]string{"PRODUCER_COUNT": "many"}, "PRODUCER_COUNT"},
		{"value too small to hold the event", []string{"--value-size", "23"}, nil, "--value-size"},
		{"negative value size", []string{"--value-size", "-1"}, nil, "--value-size"},
		{"value larger than consumers accept", nil, map[string]string{"PRODUCER_VALUE_SIZE": "65537"}, "PRODUCER_VALUE_SIZE"},
		{"value size not a number", []string{"--value-size", "1KiB"}, nil, "--value-size"},
		{"log events neither true nor false", nil, map[string]string{"LOG_EVENTS": "some"}, "LOG_EVENTS"},
		{"unknown log format", []string{"--log-format", "xml"}, nil, "--log-format"},
		{"unknown log level", nil, map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{"unknown key", nil, map[string]string{"PRODUCER_KEY": "random"}, "PRODUCER_KEY"},
		{"HTTP address without a port", []string{"--http-addr", "localhost"}, nil, "--http-addr"},
		{"idempotence cannot be turned off", []string{"-X", "enable.idempotence=false"}, nil, "-X enable.idempotence"},
		{"topics are never created by the client", []string{"-X", "allow.auto.create.topics=true"}, nil, "-X allow.auto.create.topics"},
		{"delivery reports cannot be turned off", []string{"-X", "go.delivery.reports=false"}, nil, "-X"},
		{"reports cannot be rerouted", []string{"-X", "go.events.channel.enable=true"}, nil, "-X"},
		{"report fields are the producer's", []string{"-X", "go.delivery.report.fields=all"}, nil, "-X"},
		{"channel sizes are the producer's", []string{"-X", "go.produce.channel.size=10"}, nil, "-X"},
		{"client logs are the producer's", []string{"-X", "go.logs.channel.enable=false"}, nil, "-X"},
		{"malformed property", []string{"-X", "linger.ms"}, nil, "flags"},
		{"unknown flag", []string{"--brokers", "x:1"}, nil, "flags"},
		{"stray argument", []string{"timestamp"}, nil, "arguments"},
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
			if strings.Contains(err.Error(), "\n") || cerr.Allowed == "" {
				t.Errorf("want one line saying what is allowed, got %q", err)
			}
		})
	}
}

func TestParse_help(t *testing.T) {
	var out strings.Builder
	_, err := Parse([]string{"--help"}, env(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err %v, want flag.ErrHelp", err)
	}
	if n := strings.Count(out.String(), "Usage: "); n != 1 {
		t.Errorf("usage printed %d times, want once", n)
	}
	for _, s := range settings {
		if !strings.Contains(out.String(), "-"+s.flag) || !strings.Contains(out.String(), s.env) {
			t.Errorf("help does not document --%s and %s:\n%s", s.flag, s.env, out.String())
		}
	}
}
