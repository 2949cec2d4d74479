// Package config reads the consumer's settings from flags, with environment
// variables as fallbacks, and validates them before anything starts.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Config is the consumer's validated configuration.
type Config struct {
	BootstrapServers, Topic, Group, DLQTopic string
	Count                                    int
	LogFormat                                string
	LogLevel                                 slog.Level
	LogEvents                                bool              // a line per event ("Received: ...")
	Kafka                                    map[string]string // librdkafka properties given with -X key=value
}

// Error is a bad setting: it names the setting, the value and what is allowed.
type Error struct{ Setting, Value, Allowed string }

func (e *Error) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Setting, e.Value, e.Allowed)
}

// ErrHelp is returned after the usage text was printed for -h or --help.
var ErrHelp = flag.ErrHelp

// reserved are librdkafka properties the consumer sets itself, because its
// guarantees depend on them.
var reserved = map[string]string{
	"bootstrap.servers":        "use --bootstrap-servers",
	"group.id":                 "use --group",
	"enable.auto.offset.store": "offsets are stored after each event is handled (at-least-once)",
	"enable.auto.commit":       "stored offsets are committed in the background (at-least-once)",
}

// settings are flag, environment variable, default and usage.
var settings = [][4]string{
	{"bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", "Kafka brokers, a comma-separated list of host:port"},
	{"topic", "KAFKA_TOPIC", "timestamp", "topic the events are read from (created if missing)"},
	{"group", "KAFKA_GROUP_ID", "timestamp-consumer", "consumer group; consumers of one group share the partitions"},
	{"dlq-topic", "KAFKA_DLQ_TOPIC", "", "dead-letter topic for messages that cannot be decoded (default <topic>.dlq)"},
	{"count", "CONSUMER_COUNT", "0", "stop after this many events; 0 consumes until stopped"},
	{"log-format", "LOG_FORMAT", "text", "text for people, json for machines"},
	{"log-level", "LOG_LEVEL", "info", "debug, info, warn or error"},
	{"log-events", "LOG_EVENTS", "true", "print a line per event; false prints only the start, the summary and problems"},
}

// legalTopic is Kafka's rule for topic names.
var legalTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// Parse reads args, falling back to getenv for each flag not given, and
// validates the result. Usage for --help is written to out.
func Parse(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	fs := flag.NewFlagSet("consumer", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	val, src := map[string]*string{}, map[string]string{}
	for _, s := range settings {
		val[s[0]] = fs.String(s[0], s[2], s[3]+" (env "+s[1]+")")
	}
	props := properties{}
	fs.Var(props, "X", "librdkafka property `key=value`, repeatable (e.g. -X session.timeout.ms=6000)")
	fs.Usage = func() {
		fmt.Fprint(out, "Usage: consumer [flags]\n\nReads timestamp events from Kafka in a consumer group and prints \"Received: HH:MM:SS\".\n\nFlags:\n")
		fs.SetOutput(out)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return Config{}, ErrHelp // the flag package printed the usage
	} else if err != nil {
		return Config{}, &Error{"flags", strings.Join(args, " "), err.Error() + " (see --help)"}
	}
	if fs.NArg() > 0 {
		return Config{}, &Error{"arguments", strings.Join(fs.Args(), " "), "the consumer takes flags only (see --help)"}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, s := range settings {
		src[s[0]] = "--" + s[0]
		if v := getenv(s[1]); v != "" && !given[s[0]] {
			*val[s[0]], src[s[0]] = v, s[1]
		}
	}
	v := func(name string) string { return *val[name] }
	bad := func(name, allowed string) error { return &Error{src[name], v(name), allowed} }

	cfg := Config{Topic: v("topic"), Group: strings.TrimSpace(v("group")), DLQTopic: v("dlq-topic"), LogFormat: v("log-format"), Kafka: props}
	var brokers []string
	for b := range strings.SplitSeq(v("bootstrap-servers"), ",") {
		b = strings.TrimSpace(b)
		host, port, err := net.SplitHostPort(b)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return Config{}, bad("bootstrap-servers", fmt.Sprintf("want host:port entries separated by commas; %q is not one", b))
		}
		brokers = append(brokers, b)
	}
	cfg.BootstrapServers = strings.Join(brokers, ",")
	if cfg.DLQTopic == "" {
		*val["dlq-topic"] = cfg.Topic + ".dlq"
		cfg.DLQTopic = v("dlq-topic")
	}
	legal := func(t string) bool { return legalTopic.MatchString(t) && t != "." && t != ".." }
	const topicRule = "want 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' or '-', not '.' or '..'"
	var err error
	switch {
	case !legal(cfg.Topic):
		return Config{}, bad("topic", topicRule)
	case !legal(cfg.DLQTopic):
		return Config{}, bad("dlq-topic", topicRule)
	case cfg.DLQTopic == cfg.Topic:
		return Config{}, bad("dlq-topic", "must differ from the topic, or bad messages would loop")
	case cfg.Group == "":
		return Config{}, bad("group", "want a non-empty group id")
	case cfg.LogFormat != "text" && cfg.LogFormat != "json":
		return Config{}, bad("log-format", "want one of text, json")
	}
	if cfg.Count, err = strconv.Atoi(v("count")); err != nil || cfg.Count < 0 {
		return Config{}, bad("count", "want a whole number >= 0")
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(v("log-level"))); err != nil {
		return Config{}, bad("log-level", "want debug, info, warn or error")
	}
	if cfg.LogEvents, err = strconv.ParseBool(v("log-events")); err != nil {
		return Config{}, bad("log-events", "want true or false")
	}
	for _, k := range slices.Sorted(maps.Keys(props)) {
		if why, ok := reserved[k]; ok {
			return Config{}, &Error{"-X " + k, props[k], why}
		}
		// go.events.channel.enable, for one, makes Poll return nothing.
		if strings.HasPrefix(k, "go.") {
			return Config{}, &Error{"-X", k + "=" + props[k], "go.* properties change how the client hands events to the consumer, which it relies on"}
		}
	}
	return cfg, nil
}

// properties collects -X key=value flags.
type properties map[string]string

func (p properties) String() string { return "" }

func (p properties) Set(kv string) error {
	k, val, ok := strings.Cut(kv, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return fmt.Errorf("want key=value, got %q", kv)
	}
	p[strings.TrimSpace(k)] = val
	return nil
}
