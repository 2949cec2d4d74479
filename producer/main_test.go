package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/event-driven-go/kafka-go/producer/internal/sender"
)

// mockCluster starts librdkafka's in-process mock cluster with the topic
// "timestamp".
func mockCluster(t *testing.T) *kafka.MockCluster {
	t.Helper()
	mc, err := kafka.NewMockCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mc.Close)
	if err := mc.CreateTopic("timestamp", 1, 1); err != nil {
		t.Fatal(err)
	}
	return mc
}

func TestRun_exitCodes(t *testing.T) {
	mc := mockCluster(t)
	broker := mc.BootstrapServers()

	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		slowBroker bool
		code       int
		stdout     []string // lines that must appear
		notStdout  []string // text that must not appear
		stderr     string
	}{
		{name: "help", args: []string{"--help"}, code: 0, stdout: []string{"Usage: producer"}},
		{name: "unknown flag", args: []string{"--brokers", "x:1"}, code: 2, notStdout: []string{"Usage"},
			stderr: `producer: invalid flags "--brokers x:1": flag provided but not defined: -brokers (see --help)`},
		{name: "bad flag value", args: []string{"--interval", "soon"}, code: 2,
			stderr: `producer: invalid --interval "soon": want a duration`},
		{name: "bad environment value", env: map[string]string{"PRODUCER_COUNT": "-1"}, code: 2,
			stderr: `producer: invalid PRODUCER_COUNT "-1"`},
		{name: "unknown librdkafka property", args: []string{"--bootstrap-servers", broker, "-X", "no.such.property=1"}, code: 2,
			stderr: `producer: invalid Kafka client configuration: create producer: No such configuration property: "no.such.property"`},
		{name: "client hand-over property", args: []string{"-X", "go.delivery.reports=false"}, code: 2,
			stderr: `producer: invalid -X "go.delivery.reports=false": go.* properties change how the client hands reports to the producer`},
		{name: "all delivered", args: []string{"--bootstrap-servers", broker, "--count", "3", "--interval", "10ms"}, code: 0,
			stdout: []string{"Sending: ", "Producer stopped attempted=3 delivered=3 failed=0 unknown=0 recovered=0"}},
		{name: "bulk run with a summary only", args: []string{"--bootstrap-servers", broker, "--count", "20", "--interval", "0", "--value-size", "100", "--log-events=false"}, code: 0,
			stdout:    []string{"Producer stopped attempted=20 delivered=20 failed=0 unknown=0 recovered=0 elapsed=", " events_per_s="},
			notStdout: []string{"Sending: "}},
		{name: "bad value size", args: []string{"--value-size", "10"}, code: 2,
			stderr: `producer: invalid --value-size "10": want 0 (no padding) or a size from 24 to 65536 bytes`},
		{name: "missing topic", args: []string{"--bootstrap-servers", broker, "--topic", "nowhere"}, code: 1,
			stdout: []string{`topic \"nowhere\" does not exist at ` + broker + `: the producer creates none`}},
		{name: "undelivered events", args: []string{"--bootstrap-servers", broker, "--count", "2", "--interval", "10ms", "-X", "message.timeout.ms=200"},
			slowBroker: true, code: 1, stdout: []string{"ERROR Unconfirmed: ", "2 of 2 events not delivered: 0 failed, 2 unknown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rtt := time.Duration(0)
			if tt.slowBroker {
				rtt = time.Second
			}
			if err := mc.SetRoundtripDuration(1, rtt); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr strings.Builder
			code := run(tt.args, func(k string) string { return tt.env[k] }, &stdout, &stderr, nil, noExit(t))
			if code != tt.code {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			for _, s := range tt.notStdout {
				if strings.Contains(stdout.String(), s) {
					t.Errorf("stdout has %q:\n%s", s, stdout.String())
				}
			}
			if !strings.HasPrefix(stderr.String(), tt.stderr) || strings.Count(stderr.String(), "\n") > 1 {
				t.Errorf("stderr %q, want one line starting %q", stderr.String(), tt.stderr)
			}
		})
	}
}

func TestRun_secondSignalExitsAtOnce(t *testing.T) {
	mc := mockCluster(t)
	signals, exits, ran := make(chan os.Signal, 2), make(chan int, 1), make(chan int, 1)
	var stdout, stderr strings.Builder
	go func() {
		ran <- run([]string{"--bootstrap-servers", mc.BootstrapServers(), "--interval", "10ms"}, func(string) string { return "" },
			&stdout, &stderr, signals, func(code int) { exits <- code })
	}()
	time.Sleep(time.Second)
	if err := mc.SetRoundtripDuration(1, 10*time.Second); err != nil { // the broker hangs: the shutdown takes its 2.5s
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	signals <- syscall.SIGINT
	time.Sleep(300 * time.Millisecond)
	signals <- syscall.SIGINT
	select {
	case code := <-exits:
		if code != 130 {
			t.Errorf("exit(%d), want 130", code)
		}
	case <-time.After(time.Second):
		t.Fatal("no exit within 1s of the second signal")
	}
	<-ran // the fake exit returns, so the run goes on to its end
	if want := "ERROR Second stop signal: exiting now attempted="; !strings.Contains(stdout.String(), want) {
		t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
	}
}

// noExit fails the test if the program tries to end the process.
func noExit(t *testing.T) func(int) {
	return func(code int) { t.Errorf("exit(%d) called", code) }
}

func TestStopWatch(t *testing.T) {
	counts := func() sender.Result { return sender.Result{Attempted: 10, Delivered: 5, Failed: 1, Unknown: 1} }
	const abandoned = "attempted=10 delivered=5 failed=1 unknown=1 unconfirmed=3"
	tests := []struct {
		name     string
		signals  []os.Signal
		finishes bool // the shutdown ends as soon as it starts
		failed   bool // a fatal error (the leader-stall guard gave up) ends the run instead of a signal
		stopped  bool
		exit     int // -1: no exit
		line     string
	}{
		{name: "no signal", exit: -1},
		{name: "one signal, prompt shutdown", signals: []os.Signal{syscall.SIGTERM}, finishes: true, stopped: true, exit: -1},
		{name: "second SIGINT", signals: []os.Signal{syscall.SIGINT, syscall.SIGINT}, stopped: true, exit: 130,
			line: "ERROR Second stop signal: exiting now " + abandoned + " signal=interrupt\n"},
		{name: "second SIGTERM", signals: []os.Signal{syscall.SIGTERM, syscall.SIGTERM}, stopped: true, exit: 143,
			line: "ERROR Second stop signal: exiting now " + abandoned + " signal=terminated\n"},
		{name: "shutdown over the limit", signals: []os.Signal{syscall.SIGINT}, stopped: true, exit: 1,
			line: "ERROR Shutdown took longer than 50ms: exiting now " + abandoned + "\n"},
		{name: "fatal error, prompt shutdown", failed: true, finishes: true, stopped: true, exit: -1},
		{name: "fatal error, shutdown hangs", failed: true, stopped: true, exit: 1,
			line: "ERROR Shutdown took longer than 50ms: exiting now " + abandoned + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signals := make(chan os.Signal, len(tt.signals))
			for _, s := range tt.signals {
				signals <- s
			}
			done, failed := make(chan struct{}), make(chan struct{})
			if tt.failed {
				close(failed)
			} else if tt.signals == nil {
				close(done) // the run ended by itself
			}
			stopped, exit := false, -1
			stop := func() {
				stopped = true
				if tt.finishes {
					close(done)
				}
			}
			var out strings.Builder
			w := stopWatch{signals: signals, failed: failed, limit: 50 * time.Millisecond, exit: func(code int) { exit = code },
				log: newLogger(&out, "text", slog.LevelInfo), counts: counts}
			returned := make(chan struct{})
			go func() {
				defer close(returned)
				w.watch(done, stop)
			}()
			select {
			case <-returned:
			case <-time.After(time.Second):
				t.Fatal("watch did not return")
			}
			if stopped != tt.stopped || exit != tt.exit || out.String() != tt.line {
				t.Errorf("stopped %v, exit %d, logged %q; want %v, %d, %q", stopped, exit, out.String(), tt.stopped, tt.exit, tt.line)
			}
		})
	}
}

func TestStartupError_saysWhatFailed(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"unreachable", fmt.Errorf("look up topic %q: %w", "t", kafka.NewError(kafka.ErrTransport, "Local: Broker transport failure", false)),
			`cannot reach Kafka at h:9092 within 30s: look up topic "t": Local: Broker transport failure`},
		{"refused", fmt.Errorf("%w metadata of topic %q: %s", sender.ErrRefused, "t", "Broker: Topic authorization failed"),
			`Kafka at h:9092 refused metadata of topic "t": Broker: Topic authorization failed`},
		{"no leader", fmt.Errorf("topic %q: %w", "t", sender.ErrNoLeader), `topic "t" has a partition with no leader after 30s`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := startupError(tt.err, "h:9092", "t").Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
