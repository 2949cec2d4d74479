// Command topics creates the tutorial's topics, as whoever runs a Kafka
// cluster does: the topic and its dead-letter topic, sized to take anything
// the topic accepts plus the dlq headers. It is the compose app profile's
// one-shot topics service; `go tool mage up` does the same from the host.
// Exit codes: 0 the topics are ready; 1 Kafka refused or did not answer in
// time; 2 bad configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/event-driven-go/kafka-go/internal/topics"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("topics", flag.ContinueOnError)
	fs.SetOutput(stdout)
	env := func(key, def string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return def
	}
	servers := fs.String("bootstrap-servers", env("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"), "Kafka brokers, host:port[,host:port] (env KAFKA_BOOTSTRAP_SERVERS)")
	topic := fs.String("topic", env("KAFKA_TOPIC", "timestamp"), "topic of the events (env KAFKA_TOPIC)")
	dlq := fs.String("dlq-topic", env("KAFKA_DLQ_TOPIC", ""), "dead-letter topic; empty is <topic>.dlq (env KAFKA_DLQ_TOPIC)")
	partitions := fs.String("partitions", env("KAFKA_PARTITIONS", "0"), "partitions of each topic created; 0 is the cluster's num.partitions (env KAFKA_PARTITIONS)")
	copies := fs.String("replication-factor", env("KAFKA_REPLICATION_FACTOR", "0"), "copies of each partition; 0 is the cluster's default.replication.factor (env KAFKA_REPLICATION_FACTOR)")
	timeout := fs.Duration("timeout", 60*time.Second, "how long to wait for Kafka")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		fmt.Fprintln(stderr, "topics:", err)
		return 2
	}
	p, perr := strconv.ParseInt(*partitions, 10, 32)
	r, rerr := strconv.ParseInt(*copies, 10, 16)
	switch {
	case perr != nil || p < 0:
		fmt.Fprintf(stderr, "topics: invalid partitions %q: want a whole number from 0\n", *partitions)
		return 2
	case rerr != nil || r < 0:
		fmt.Fprintf(stderr, "topics: invalid replication factor %q: want a whole number from 0\n", *copies)
		return 2
	case strings.TrimSpace(*topic) == "":
		fmt.Fprintln(stderr, "topics: no topic")
		return 2
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*servers, ",")...))
	if err != nil {
		fmt.Fprintln(stderr, "topics:", err)
		return 2
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	spec := topics.Spec{Topic: *topic, DLQ: *dlq, Partitions: int32(p), Replication: int16(r)}
	did, err := topics.Ensure(ctx, cl, spec)
	for _, line := range did {
		fmt.Fprintln(stdout, line)
	}
	if err != nil {
		fmt.Fprintf(stderr, "topics: Kafka at %s: %v\n", *servers, err)
		return 1
	}
	fmt.Fprintf(stdout, "Topics ready: %s, %s\n", spec.Topic, topics.DeadLetterTopic(spec))
	return 0
}
