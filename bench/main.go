// Command bench measures the services' throughput and end-to-end latency
// against Kafka's perf tools and kcat on one broker, and prints a table of
// every figure and ratio; `go tool mage bench` runs it.
//
// It starts the compose file's Kafka node from KAFKA_IMAGE in the host's
// network namespace (clients reach it over loopback, with no proxy, bridge
// or NAT in between), copies Kafka's tools out of that same image and runs
// them with the host's Java, and runs Debian's kcat. Every round uses a
// fresh single-partition topic; rounds are interleaved (A B C A B C ...)
// after one thrown-away warm-up round, and the table shows the median of
// the counted rounds with their range. docs/benchmarks.md explains the
// method and holds a full run. Needs Linux, Docker, cgo, Java 17 or later
// and kcat. Run it from the repository's root:
//
//	go run ./bench [-quick] [-out build/bench/report.md]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/event-driven-go/kafka-go/internal/stack"
)

// repo is the repository: the bench runs from its root.
var repo = stack.Repo{Dir: "."}

func main() {
	quick := flag.Bool("quick", false, "a smoke run: one round of each kind, smaller counts")
	out := flag.String("out", filepath.Join(benchDir, "report.md"), "where to write the report (Markdown)")
	only := flag.String("only", "", "measure only these, comma-separated: producer, consumer, latency, one (one event at a time)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *quick, *only, *out)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run measures the plan (only the parts named in only, when set) and
// writes the report to out.
func run(ctx context.Context, quick bool, only, out string) error {
	plan := fullPlan()
	if quick {
		plan = quickPlan()
	}
	parts := map[string]bool{}
	for _, p := range strings.Split(only, ",") {
		switch p = strings.TrimSpace(p); p {
		case "":
		case "producer", "consumer", "latency", "one":
			parts[p] = true
		default:
			return fmt.Errorf("invalid -only %q: want producer, consumer, latency or one, comma-separated", p)
		}
	}
	measure := func(part string) bool { return len(parts) == 0 || parts[part] }
	if err := needBenchTools(); err != nil {
		return err
	}
	b, err := newBench(ctx, plan)
	if b != nil {
		defer b.close()
	}
	if err != nil {
		return err
	}
	started := time.Now()
	b.printSetup()

	var r report
	r.plan = plan
	if measure("producer") {
		if r.producer, err = b.producerThroughput(ctx); err != nil {
			return err
		}
	}
	if measure("consumer") {
		if r.consumer, err = b.consumerThroughput(ctx); err != nil {
			return err
		}
	}
	if measure("latency") {
		if r.latency, err = b.steadyLatency(ctx); err != nil {
			return err
		}
	}
	if measure("one") {
		if r.oneAtATime, err = b.oneAtATime(ctx); err != nil {
			return err
		}
	}
	// The setup gathers figures while the rounds run (the JVM's start-up).
	r.setup = b.setup
	r.setup.loadAfter = loadAverage()
	r.took = time.Since(started).Round(time.Second)

	var text strings.Builder
	r.write(&text)
	fmt.Print("\n" + text.String())
	if err := os.WriteFile(out, []byte(text.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	fmt.Printf("\nThe report is also in %s.\n", out)
	return nil
}

// benchDir holds the bench's payload files, Kafka's tools and the report.
const benchDir = "build/bench"

// profile is a set of producer settings that every producer of a round gets.
type profile struct {
	name  string
	props [][2]string // librdkafka and Java producer properties, in order
}

// The profiles: batches as large as the clients allow, the clients'
// default linger, and no linger at all. Every producer also sends with
// guaranteeProps.
func throughputProfile() profile {
	return profile{"throughput", [][2]string{{"linger.ms", "50"}, {"batch.size", "1000000"}}}
}
func defaultsProfile() profile { return profile{"defaults", [][2]string{{"linger.ms", "5"}}} }
func latencyProfile() profile  { return profile{"latency", [][2]string{{"linger.ms", "0"}}} }

// guaranteeProps are the producer properties of every profile that our
// producer always sets itself (and refuses in -X); the other tools get them
// explicitly.
func guaranteeProps() [][2]string {
	return [][2]string{{"acks", "all"}, {"enable.idempotence", "true"}}
}

// plan is what one bench run measures, and how long.
type plan struct {
	quick  bool
	warmup int // rounds thrown away first
	rounds int // rounds counted
	// Producer and consumer throughput: payload sizes, with the messages per
	// round for each, and the producer profiles.
	sizes            []int
	producerMessages map[int]int
	consumerMessages map[int]int
	profiles         []profile
	// Steady end-to-end latency: rates in events/s, producer profiles, how
	// long each round runs and how much of its start is left out.
	rates            []int
	latencyProfiles  []profile
	latencyRun       time.Duration
	latencyDrop      time.Duration
	latencyValueSize int
	// One event at a time: events per round, sent this far apart.
	singleEvents   int
	singleInterval time.Duration
}

func fullPlan() plan {
	return plan{
		warmup: 1, rounds: 5,
		sizes:            []int{100, 1024},
		producerMessages: map[int]int{100: 500_000, 1024: 200_000},
		consumerMessages: map[int]int{100: 500_000, 1024: 200_000},
		profiles:         []profile{throughputProfile(), defaultsProfile(), latencyProfile()},
		rates:            []int{1_000, 10_000},
		latencyProfiles:  []profile{latencyProfile(), defaultsProfile()},
		latencyRun:       20 * time.Second, latencyDrop: 5 * time.Second, latencyValueSize: 100,
		singleEvents: 1_000, singleInterval: 10 * time.Millisecond,
	}
}

func quickPlan() plan {
	return plan{
		quick:  true,
		warmup: 0, rounds: 1,
		sizes:            []int{100},
		producerMessages: map[int]int{100: 100_000},
		consumerMessages: map[int]int{100: 100_000},
		profiles:         []profile{throughputProfile()},
		rates:            []int{1_000, 10_000},
		latencyProfiles:  []profile{latencyProfile()},
		latencyRun:       4 * time.Second, latencyDrop: time.Second, latencyValueSize: 100,
		singleEvents: 200, singleInterval: 10 * time.Millisecond,
	}
}

// needBenchTools fails with one line for each missing program.
func needBenchTools() error {
	var missing []string
	for _, t := range []struct{ cmd, hint string }{
		{"docker", "the broker runs in Docker (Debian/Ubuntu: apt-get install docker.io)"},
		{"java", "Kafka's perf tools need Java 17 or later (Debian/Ubuntu: apt-get install openjdk-17-jre-headless)"},
		{"kcat", "the C client baseline (Debian/Ubuntu: apt-get install kcat)"},
	} {
		if _, err := exec.LookPath(t.cmd); err != nil {
			missing = append(missing, t.cmd+" not found: "+t.hint)
		}
	}
	if len(missing) > 0 {
		return errors.New(strings.Join(missing, "; "))
	}
	return nil
}
