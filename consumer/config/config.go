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
	"time"
)

// Config is the consumer's validated configuration.
type Config struct {
	BootstrapServers string
	Topic            string
	Group            string
	DLQTopic         string
	Count            int
	// Warmup is left out of the latency summary: events received in the
	// first Warmup after the first event.
	Warmup    time.Duration
	LogFormat string
	LogLevel  slog.Level
	LogEvents bool // a line per event ("Received: ...")
	// Kafka holds librdkafka properties given with -X key=value.
	Kafka map[string]string
}

// Error is a bad setting: it names the setting, the value and what is allowed.
type Error struct {
	Setting string // flag or environment variable the value came from
	Value   string
	Allowed string
}

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

type setting struct {
	flag, env, def, usage string
}

var settings = []setting{
	{"bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", "Kafka brokers, a comma-separated list of host:port"},
	{"topic", "KAFKA_TOPIC", "timestamp", "topic the events are read from (created if missing)"},
	{"group", "KAFKA_GROUP_ID", "timestamp-consumer", "consumer group; consumers of one group share the partitions"},
	{"dlq-topic", "KAFKA_DLQ_TOPIC", "", "dead-letter topic for messages that cannot be decoded (default <topic>.dlq)"},
	{"count", "CONSUMER_COUNT", "0", "stop after this many events; 0 consumes until stopped"},
	{"warmup", "CONSUMER_WARMUP", "0s", "leave the events received in this first stretch (from the first event) out of the latency percentiles of the summary"},
	{"log-format", "LOG_FORMAT", "text", "text for people, json for machines"},
	{"log-level", "LOG_LEVEL", "info", "debug, info, warn or error"},
	{"log-events", "LOG_EVENTS", "true", "print a line per event; false prints only the start, the summary and problems (for high rates)"},
}

// Parse reads args, falling back to getenv for each flag not given, and
// validates the result. Usage for --help is written to out.
func Parse(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	fs := flag.NewFlagSet("consumer", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	vals := make(map[string]*string, len(settings))
	for _, s := range settings {
		vals[s.flag] = fs.String(s.flag, s.def, fmt.Sprintf("%s (env %s)", s.usage, s.env))
	}
	props := properties{}
	fs.Var(props, "X", "librdkafka property `key=value`, repeatable (e.g. -X linger.ms=10)")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: consumer [flags]\n\nReads timestamp events from Kafka in a consumer group and prints \"Received: HH:MM:SS\".\n\nFlags:\n")
		fs.SetOutput(out)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return Config{}, ErrHelp // the flag package printed the usage
		}
		return Config{}, &Error{Setting: "flags", Value: strings.Join(args, " "), Allowed: err.Error() + " (see --help)"}
	}
	if fs.NArg() > 0 {
		return Config{}, &Error{Setting: "arguments", Value: strings.Join(fs.Args(), " "), Allowed: "the consumer takes flags only (see --help)"}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var v values
	for _, s := range settings {
		switch {
		case given[s.flag]:
			v.set(s.flag, "--"+s.flag, *vals[s.flag])
		case getenv(s.env) != "":
			v.set(s.flag, s.env, getenv(s.env))
		default:
			v.set(s.flag, "--"+s.flag, s.def)
		}
	}

	cfg := Config{Kafka: props}
	var err error
	if cfg.BootstrapServers, err = v.brokers("bootstrap-servers"); err != nil {
		return Config{}, err
	}
	if cfg.Topic, err = v.topic("topic"); err != nil {
		return Config{}, err
	}
	if cfg.Group, err = v.group("group"); err != nil {
		return Config{}, err
	}
	if v.raw["dlq-topic"] == "" {
		v.set("dlq-topic", "--dlq-topic", cfg.Topic+".dlq")
	}
	if cfg.DLQTopic, err = v.topic("dlq-topic"); err != nil {
		return Config{}, err
	}
	if cfg.DLQTopic == cfg.Topic {
		return Config{}, v.fail("dlq-topic", "must differ from the topic, or bad messages would loop")
	}
	if cfg.Count, err = v.count("count"); err != nil {
		return Config{}, err
	}
	if cfg.Warmup, err = v.duration("warmup"); err != nil {
		return Config{}, err
	}
	if cfg.LogFormat, err = v.oneOf("log-format", "text", "json"); err != nil {
		return Config{}, err
	}
	if cfg.LogLevel, err = v.level("log-level"); err != nil {
		return Config{}, err
	}
	if cfg.LogEvents, err = v.boolean("log-events"); err != nil {
		return Config{}, err
	}
	for _, k := range slices.Sorted(maps.Keys(props)) {
		if why, ok := reserved[k]; ok {
			return Config{}, &Error{Setting: "-X " + k, Value: props[k], Allowed: why}
		}
		// go.events.channel.enable, for one, makes Poll return nothing.
		if strings.HasPrefix(k, "go.") {
			return Config{}, &Error{Setting: "-X", Value: k + "=" + props[k],
				Allowed: "go.* properties change how the client hands events to the consumer, which it relies on"}
		}
	}
	return cfg, nil
}

// values holds each setting's raw value and where it came from.
type values struct {
	raw, src map[string]string
}

func (v *values) set(name, src, raw string) {
	if v.raw == nil {
		v.raw, v.src = map[string]string{}, map[string]string{}
	}
	v.raw[name], v.src[name] = raw, src
}

func (v *values) fail(name, allowed string) *Error {
	return &Error{Setting: v.src[name], Value: v.raw[name], Allowed: allowed}
}

func (v *values) brokers(name string) (string, error) {
	raw := strings.TrimSpace(v.raw[name])
	if raw == "" {
		return "", v.fail(name, "want at least one host:port")
	}
	var out []string
	for _, b := range strings.Split(raw, ",") {
		b = strings.TrimSpace(b)
		host, port, err := net.SplitHostPort(b)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return "", v.fail(name, fmt.Sprintf("want host:port entries separated by commas; %q is not one", b))
		}
		out = append(out, b)
	}
	return strings.Join(out, ","), nil
}

// legalTopic is Kafka's rule for topic names.
var legalTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

func (v *values) topic(name string) (string, error) {
	t := v.raw[name]
	if !legalTopic.MatchString(t) || t == "." || t == ".." {
		return "", v.fail(name, "want 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' or '-', not '.' or '..'")
	}
	return t, nil
}

func (v *values) group(name string) (string, error) {
	g := strings.TrimSpace(v.raw[name])
	if g == "" {
		return "", v.fail(name, "want a non-empty group id")
	}
	return g, nil
}

func (v *values) count(name string) (int, error) {
	n, err := strconv.Atoi(v.raw[name])
	if err != nil || n < 0 {
		return 0, v.fail(name, "want a whole number >= 0")
	}
	return n, nil
}

func (v *values) duration(name string) (time.Duration, error) {
	d, err := time.ParseDuration(v.raw[name])
	if err != nil || d < 0 {
		return 0, v.fail(name, "want a duration such as 5s or 250ms, not negative")
	}
	return d, nil
}

func (v *values) boolean(name string) (bool, error) {
	b, err := strconv.ParseBool(v.raw[name])
	if err != nil {
		return false, v.fail(name, "want true or false")
	}
	return b, nil
}

func (v *values) oneOf(name string, allowed ...string) (string, error) {
	for _, a := range allowed {
		if v.raw[name] == a {
			return a, nil
		}
	}
	return "", v.fail(name, "want one of "+strings.Join(allowed, ", "))
}

func (v *values) level(name string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(v.raw[name])); err != nil {
		return 0, v.fail(name, "want debug, info, warn or error")
	}
	return l, nil
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
