// Package config reads the consumer's settings from flags, with environment
// variables as fallbacks, and validates them before anything starts.
package config

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Config is the consumer's validated configuration.
type Config struct {
	BootstrapServers, Topic, Group, DLQTopic string
	GroupProtocol                            string // consumer (KIP-848) or classic
	Count                                    int
	HTTPAddr                                 string // host:port of /healthz, /readyz and /metrics; empty: off
	LogFormat                                string
	LogLevel                                 slog.Level
	LogEvents                                bool            // a line per event ("Received: ...")
	Kafka                                    kafka.ConfigMap // librdkafka properties given with -X key=value, as strings
}

// Error is a bad setting: it names the setting, the value and what is allowed.
type Error struct{ Setting, Value, Allowed string }

func (e *Error) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Setting, e.Value, e.Allowed)
}

// ErrHelp is returned after the usage text was printed for -h or --help.
var ErrHelp = flag.ErrHelp

// reserved are librdkafka properties the consumer's guarantees depend on; it sets them itself.
var reserved = map[string]string{
	"bootstrap.servers":        "use --bootstrap-servers",
	"group.id":                 "use --group",
	"group.protocol":           "use --group-protocol",
	"enable.auto.offset.store": "offsets are stored after each event is handled (at-least-once)",
	"enable.auto.commit":       "stored offsets are committed in the background (at-least-once)",
	"allow.auto.create.topics": "topics are created on purpose (go tool mage up), never by the client",
}

const topicRule = "want 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' or '-', not '.' or '..'"

var legalTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// topicName is Kafka's rule for topic names.
func topicName(t string) bool { return legalTopic.MatchString(t) && t != "." && t != ".." }

// whole stores v in *n and reports whether it is a whole number from 0 to most.
func whole(n *int, v string, most int) bool {
	var err error
	*n, err = strconv.Atoi(v)
	return err == nil && *n >= 0 && *n <= most
}

// settings, in the order they are checked: set stores a value and reports whether it is allowed.
var settings = []struct {
	name, env, def, usage, allowed string
	set                            func(c *Config, v string) bool
}{
	{"bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", "Kafka brokers, a comma-separated list of host:port",
		"want host:port entries separated by commas", func(c *Config, v string) bool {
			var brokers []string
			for b := range strings.SplitSeq(v, ",") {
				host, port, err := net.SplitHostPort(strings.TrimSpace(b))
				if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
					return false
				}
				brokers = append(brokers, strings.TrimSpace(b))
			}
			c.BootstrapServers = strings.Join(brokers, ",")
			return true
		}},
	{"topic", "KAFKA_TOPIC", "timestamp", "topic the events are read from; it and its dead-letter topic must exist (go tool mage up creates them)", topicRule,
		func(c *Config, v string) bool { c.Topic = v; return topicName(v) }},
	{"group", "KAFKA_GROUP_ID", "timestamp-consumer", "consumer group; consumers of one group share the partitions",
		"want a non-empty group id", func(c *Config, v string) bool { c.Group = strings.TrimSpace(v); return c.Group != "" }},
	{"dlq-topic", "KAFKA_DLQ_TOPIC", "", "dead-letter topic for messages that cannot be decoded (default <topic>.dlq)",
		topicRule + "; <topic>.dlq when empty; not the topic, or bad messages would loop", func(c *Config, v string) bool {
			c.DLQTopic = cmp.Or(v, c.Topic+".dlq")
			return topicName(c.DLQTopic) && c.DLQTopic != c.Topic
		}},
	{"group-protocol", "KAFKA_GROUP_PROTOCOL", "consumer", "consumer: the broker assigns the partitions and moves only those that must move (KIP-848, Kafka 4.0 and later); classic: the members assign them (cooperative-sticky)",
		"want consumer or classic", func(c *Config, v string) bool { c.GroupProtocol = v; return v == "consumer" || v == "classic" }},
	{"count", "CONSUMER_COUNT", "0", "stop after this many events; 0 consumes until stopped", "want a whole number >= 0",
		func(c *Config, v string) bool { return whole(&c.Count, v, math.MaxInt) }},
	{"http-addr", "HTTP_ADDR", "", "serve /healthz, /readyz and /metrics on this host:port, e.g. 127.0.0.1:9465; empty: off",
		"want host:port or :port, e.g. 127.0.0.1:9465, or empty for none", func(c *Config, v string) bool {
			_, port, err := net.SplitHostPort(v)
			n, perr := strconv.Atoi(port)
			c.HTTPAddr = v
			return v == "" || err == nil && perr == nil && n >= 0 && n <= 65535
		}},
	{"log-format", "LOG_FORMAT", "text", "text for people, json for machines", "want one of text, json",
		func(c *Config, v string) bool { c.LogFormat = v; return v == "text" || v == "json" }},
	{"log-level", "LOG_LEVEL", "info", "debug, info, warn or error", "want debug, info, warn or error",
		func(c *Config, v string) bool { return c.LogLevel.UnmarshalText([]byte(v)) == nil }},
	{"log-events", "LOG_EVENTS", "true", "print a line per event; false prints only the start, the summary and problems",
		"want true or false", func(c *Config, v string) bool { b, err := strconv.ParseBool(v); c.LogEvents = b; return err == nil }},
}

// Parse reads args, falling back to getenv for each flag not given, and validates the result.
// Usage for --help is written to out.
func Parse(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	cfg := Config{Kafka: kafka.ConfigMap{}}
	fs := flag.NewFlagSet("consumer", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, s := range settings {
		fs.String(s.name, s.def, s.usage+" (env "+s.env+")")
	}
	fs.Func("X", "librdkafka property `key=value`, repeatable (e.g. -X fetch.wait.max.ms=100)", func(kv string) error {
		k, v, ok := strings.Cut(kv, "=")
		if k = strings.TrimSpace(k); !ok || k == "" {
			return fmt.Errorf("want key=value, got %q", kv)
		}
		cfg.Kafka[k] = v
		return nil
	})
	fs.Usage = func() {} // the flag package calls it on every error: usage goes out for --help only
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(out, "Usage: consumer [flags]\n\nReads timestamp events from Kafka in a consumer group and prints \"Received: HH:MM:SS\".\n\nFlags:\n")
		fs.SetOutput(out)
		fs.PrintDefaults()
		return Config{}, ErrHelp
	} else if err != nil {
		return Config{}, &Error{"flags", strings.Join(args, " "), err.Error() + " (see --help)"}
	}
	if fs.NArg() > 0 {
		return Config{}, &Error{"arguments", strings.Join(fs.Args(), " "), "the consumer takes flags only (see --help)"}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, s := range settings {
		v, src := fs.Lookup(s.name).Value.String(), "--"+s.name
		if e := getenv(s.env); e != "" && !given[s.name] {
			v, src = e, s.env
		}
		if !s.set(&cfg, v) {
			return Config{}, &Error{src, v, s.allowed}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cfg.Kafka)) {
		if why, ok := reserved[k]; ok {
			return Config{}, &Error{"-X " + k, fmt.Sprint(cfg.Kafka[k]), why}
		}
		// go.events.channel.enable, for one, makes Poll return nothing.
		if strings.HasPrefix(k, "go.") {
			return Config{}, &Error{"-X", fmt.Sprint(k, "=", cfg.Kafka[k]), "go.* properties change how the client hands events to the consumer, which it relies on"}
		}
	}
	return cfg, nil
}
