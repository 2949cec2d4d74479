// Package config reads the producer's settings from flags, with environment
// variables as fallbacks, and validates them before anything starts.
package config

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/producer/internal/event"
)

// Config is the producer's validated configuration.
type Config struct {
	BootstrapServers string
	Topic            string
	Interval         time.Duration
	Count            int
	ValueSize        int    // bytes the value is padded to; 0 sends the bare value
	Key              string // source: events keyed by their source; none: spread over the partitions
	HTTPAddr         string // host:port of /healthz, /readyz and /metrics; empty: off
	LogFormat        string
	LogLevel         slog.Level
	LogEvents        bool            // a line per event ("Sending: ...")
	Kafka            kafka.ConfigMap // librdkafka properties given with -X key=value, as strings
}

// Error is a bad setting: it names the setting, the value and what is allowed.
type Error struct {
	Setting, Value, Allowed string
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Setting, e.Value, e.Allowed)
}

// reserved are librdkafka properties the producer's guarantees depend on.
var reserved = map[string]string{
	"bootstrap.servers":        "use --bootstrap-servers",
	"enable.idempotence":       "the producer is always idempotent",
	"acks":                     "the idempotent producer needs acks=all",
	"allow.auto.create.topics": "topics are created on purpose (go tool mage up), never by the client",
}

var settings = []struct{ flag, env, def, usage string }{
	{"bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", "localhost:9092", "Kafka brokers, a comma-separated list of host:port"},
	{"topic", "KAFKA_TOPIC", "timestamp", "topic the events are sent to; it must exist (go tool mage up creates it)"},
	{"interval", "PRODUCER_INTERVAL", "5s", "time between events on a fixed schedule (an event up to 100ms late keeps its slot; a later one restarts the schedule at now); 0 sends as fast as the client allows (needs --count)"},
	{"count", "PRODUCER_COUNT", "0", "stop after this many events; 0 sends until stopped"},
	{"value-size", "PRODUCER_VALUE_SIZE", "0", fmt.Sprintf("pad each value with spaces to this many bytes (%d to %d); 0 sends the bare value", event.ValueLen, event.MaxValueSize)},
	{"key", "PRODUCER_KEY", "source", "source: every event is keyed by this producer's source, so all go to one partition, in order; none: spread over the partitions, in order within each"},
	{"http-addr", "HTTP_ADDR", "", "serve /healthz, /readyz and /metrics on this host:port, e.g. 127.0.0.1:9464; empty: off"},
	{"log-format", "LOG_FORMAT", "text", "text for people, json for machines"},
	{"log-level", "LOG_LEVEL", "info", "debug, info, warn or error; debug also shows every delivery report"},
	{"log-events", "LOG_EVENTS", "true", "print a line per event; false prints only the start, the summary and problems"},
}

// legalTopic is Kafka's rule for topic names.
var legalTopic = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// Parse reads args, falling back to getenv for each flag not given, and
// validates the result. Usage for --help is written to out, and the error
// is then flag.ErrHelp.
func Parse(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	fs := flag.NewFlagSet("producer", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	vals := map[string]*string{}
	for _, s := range settings {
		vals[s.flag] = fs.String(s.flag, s.def, fmt.Sprintf("%s (env %s)", s.usage, s.env))
	}
	c := Config{Kafka: kafka.ConfigMap{}}
	fs.Func("X", "librdkafka property `key=value`, repeatable (e.g. -X linger.ms=10)", func(kv string) error {
		k, v, ok := strings.Cut(kv, "=")
		if k = strings.TrimSpace(k); !ok || k == "" {
			return fmt.Errorf("want key=value, got %q", kv)
		}
		c.Kafka[k] = v
		return nil
	})
	fs.Usage = func() {} // the flag package calls it on every error: usage goes out for --help only
	if err := fs.Parse(args); err == flag.ErrHelp {
		fmt.Fprint(out, "Usage: producer [flags]\n\nSends a timestamp event to Kafka every --interval and prints \"Sending: HH:MM:SS\".\n\nFlags:\n")
		fs.SetOutput(out)
		fs.PrintDefaults()
		return Config{}, err
	} else if err != nil {
		return Config{}, &Error{"flags", strings.Join(args, " "), err.Error() + " (see --help)"}
	}
	if fs.NArg() > 0 {
		return Config{}, &Error{"arguments", strings.Join(fs.Args(), " "), "the producer takes flags only (see --help)"}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	src, raw := map[string]string{}, map[string]string{}
	for _, s := range settings {
		src[s.flag], raw[s.flag] = "--"+s.flag, *vals[s.flag]
		if v := getenv(s.env); !given[s.flag] && v != "" {
			src[s.flag], raw[s.flag] = s.env, v
		}
	}
	var bad *Error // the first bad setting
	check := func(name string, ok bool, allowed string) {
		if !ok && bad == nil {
			bad = &Error{src[name], raw[name], allowed}
		}
	}
	var err error
	c.BootstrapServers, err = brokers(raw["bootstrap-servers"])
	check("bootstrap-servers", err == nil, fmt.Sprint(err))
	c.Topic = raw["topic"]
	check("topic", legalTopic.MatchString(c.Topic) && c.Topic != "." && c.Topic != "..",
		"want 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' or '-', not '.' or '..'")
	c.Interval, err = time.ParseDuration(raw["interval"])
	check("interval", err == nil && c.Interval >= 0, "want a duration such as 5s or 250ms, not negative")
	c.Count, err = strconv.Atoi(raw["count"])
	check("count", err == nil && c.Count >= 0, "want a whole number >= 0")
	c.ValueSize, err = strconv.Atoi(raw["value-size"])
	check("value-size", err == nil && (c.ValueSize == 0 || c.ValueSize >= event.ValueLen && c.ValueSize <= event.MaxValueSize),
		fmt.Sprintf("want 0 (no padding) or a size from %d to %d bytes", event.ValueLen, event.MaxValueSize))
	c.Key = raw["key"]
	check("key", c.Key == "source" || c.Key == "none", "want source or none")
	c.HTTPAddr = raw["http-addr"]
	check("http-addr", c.HTTPAddr == "" || validPort(c.HTTPAddr), "want host:port or :port, e.g. 127.0.0.1:9464, or empty for none")
	c.LogFormat = raw["log-format"]
	check("log-format", c.LogFormat == "text" || c.LogFormat == "json", "want one of text, json")
	check("log-level", c.LogLevel.UnmarshalText([]byte(raw["log-level"])) == nil, "want debug, info, warn or error")
	c.LogEvents, err = strconv.ParseBool(raw["log-events"])
	check("log-events", err == nil, "want true or false")
	check("interval", c.Interval != 0 || c.Count != 0, "an interval of 0 needs --count > 0, or the producer would flood the topic forever")
	for k, v := range c.Kafka {
		if why, ok := reserved[k]; ok && bad == nil {
			bad = &Error{"-X " + k, fmt.Sprint(v), why}
		}
		if strings.HasPrefix(k, "go.") && bad == nil {
			bad = &Error{"-X", fmt.Sprint(k, "=", v), "go.* properties change how the client hands reports to the producer, which counts on them"}
		}
	}
	if bad != nil {
		return Config{}, bad
	}
	return c, nil
}

// validPort tells a host:port whose port is a number a listener can take (0: any free one).
func validPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	return err == nil && perr == nil && n >= 0 && n <= 65535
}

// brokers checks a comma-separated list of host:port and tidies its spaces.
func brokers(raw string) (string, error) {
	if strings.TrimSpace(raw) == "" {
		return "", fmt.Errorf("want at least one host:port")
	}
	list := strings.Split(raw, ",")
	for i, b := range list {
		list[i] = strings.TrimSpace(b)
		host, port, err := net.SplitHostPort(list[i])
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("want host:port entries separated by commas; %q is not one", list[i])
		}
	}
	return strings.Join(list, ","), nil
}
