package main

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

func TestRun_exitCodes(t *testing.T) {
	mc, err := kafka.NewMockCluster(1)
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Close()
	for _, tp := range []string{"timestamp", "timestamp.dlq"} {
		if err := mc.CreateTopic(tp, 1, 1); err != nil {
			t.Fatal(err)
		}
	}
	broker := mc.BootstrapServers()
	p, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": broker})
	if err != nil {
		t.Fatal(err)
	}
	topic := "timestamp"
	reports := make(chan kafka.Event, 3)
	for _, v := range []string{`{"timestamp":"10:00:00"}`, `"10:00:05"`, strings.Repeat("x", 10_000)} {
		if err := p.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny}, Value: []byte(v)}, reports); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if m := (<-reports).(*kafka.Message); m.TopicPartition.Error != nil {
			t.Fatal(m.TopicPartition.Error)
		}
	}
	p.Close()

	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		code   int
		stdout []string
		absent []string // text that must not be on stdout
		stderr string
		stop   time.Duration // a stop signal after this long; 0: none
	}{
		{name: "help", args: []string{"--help"}, code: 0, stdout: []string{"Usage: consumer"}},
		{name: "unknown flag", args: []string{"--brokers", "x:1"}, code: 2, absent: []string{"Usage"},
			stderr: `consumer: invalid flags "--brokers x:1": flag provided but not defined: -brokers (see --help)`},
		{name: "bad flag value", args: []string{"--log-format", "xml"}, code: 2,
			stderr: `consumer: invalid --log-format "xml": want one of text, json`},
		{name: "bad environment value", env: map[string]string{"KAFKA_GROUP_ID": " "}, code: 2,
			stderr: `consumer: invalid KAFKA_GROUP_ID " "`},
		{name: "receives and stops after count", args: []string{"--bootstrap-servers", broker, "--count", "2"}, code: 0,
			stdout: []string{"Received: 10:00:00 partition=0 offset=0\n", "Received: 10:00:05 partition=0 offset=1\n",
				"Consumer stopped received=2 duplicates=0 dead_lettered=0 recovered=0 elapsed="}},
		{name: "summary only", args: []string{"--bootstrap-servers", broker, "--count", "2", "--group", "quiet", "--log-events=false"}, code: 0,
			stdout: []string{"Consumer stopped received=2 duplicates=0 dead_lettered=0 recovered=0 elapsed=", " events_per_s="},
			absent: []string{"Received: "}},
		{name: "stopped while Kafka is out of reach", args: []string{"--bootstrap-servers", "127.0.0.1:1"}, stop: time.Second, code: 0,
			stdout: []string{"Consumer stopped received=0 duplicates=0 dead_lettered=0 recovered=0\n"}},
		{name: "missing topic", args: []string{"--bootstrap-servers", broker, "--topic", "nowhere"}, code: 1,
			stdout: []string{`topic \"nowhere\" does not exist at ` + broker + `: the consumer creates none; create \"nowhere\" and \"nowhere.dlq\" first`}},
		{name: "events through a channel", args: []string{"-X", "go.events.channel.enable=true"}, code: 2,
			stderr: `consumer: invalid -X "go.events.channel.enable=true": go.* properties change how the client hands events to the consumer, which it relies on`},
		{name: "dead-letter topic refuses", code: 1,
			// A dead-letter producer that takes 5,000 bytes, as a topic made too small would.
			args: []string{"--bootstrap-servers", broker, "--group", "refused", "--log-events=false", "-X", "message.max.bytes=5000"},
			stdout: []string{`ERROR Consumer stopped received=2 duplicates=0 dead_lettered=0 recovered=0 elapsed=`,
				`err="cannot dead-letter offset 2 of timestamp[0] to \"timestamp.dlq\": Broker: Message size too large (MSG_SIZE_TOO_LARGE)"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var stdout, stderr strings.Builder
			signals := make(chan os.Signal, 1)
			if tt.stop > 0 {
				time.AfterFunc(tt.stop, func() { signals <- syscall.SIGTERM })
			}
			start := time.Now()
			code := run(ctx, env{args: tt.args, getenv: func(k string) string { return tt.env[k] },
				stdout: &stdout, stderr: &stderr, signals: signals,
				exit: func(code int) { t.Errorf("the shutdown was cut short with exit code %d", code) }})
			if tt.stop > 0 && time.Since(start) > tt.stop+3*time.Second {
				t.Errorf("run took %s to stop after the signal", time.Since(start)-tt.stop)
			}
			if code != tt.code {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, stdout.String())
				}
			}
			for _, s := range tt.absent {
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

func TestWatchdog(t *testing.T) {
	tests := []struct {
		name    string
		signals []os.Signal
		finish  bool // the shutdown ends after the first signal
		failed  bool // the leader-stall guard gave up instead of a signal
		code    int  // -1: the process is left to end by itself
		line    string
	}{
		{name: "shutdown in time", signals: []os.Signal{syscall.SIGTERM}, finish: true, code: -1},
		{name: "second interrupt", signals: []os.Signal{os.Interrupt, os.Interrupt}, code: 130,
			line: "ERROR Second stop signal: exiting now signal=interrupt uncommitted=7\n"},
		{name: "second termination", signals: []os.Signal{syscall.SIGTERM, syscall.SIGINT}, code: 130,
			line: "ERROR Second stop signal: exiting now signal=interrupt uncommitted=7\n"},
		{name: "terminated twice", signals: []os.Signal{syscall.SIGTERM, syscall.SIGTERM}, code: 143,
			line: "ERROR Second stop signal: exiting now signal=terminated uncommitted=7\n"},
		{name: "shutdown too long", signals: []os.Signal{syscall.SIGTERM}, code: 1,
			line: "ERROR Shutdown took longer than 300ms: exiting now uncommitted=7\n"},
		{name: "guard gave up, run ended", failed: true, finish: true, code: -1},
		{name: "guard gave up, run hangs", failed: true, code: 1,
			line: "ERROR Shutdown took longer than 300ms: exiting now uncommitted=7\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signals := make(chan os.Signal, len(tt.signals))
			for _, s := range tt.signals {
				signals <- s
			}
			cancelled, failed, done, exits := make(chan struct{}), make(chan struct{}), make(chan struct{}), make(chan int, 1)
			if tt.failed {
				close(failed)
				close(cancelled) // the run cancels itself
			}
			var out strings.Builder
			returned := make(chan struct{})
			go func() {
				watchdog(signals, failed, done, func() { close(cancelled) }, func(code int) { exits <- code }, 300*time.Millisecond,
					func() int64 { return 7 }, newLogger(&out, "text", slog.LevelInfo))
				close(returned)
			}()
			<-cancelled
			if tt.finish {
				close(done)
			}
			select {
			case <-returned:
			case <-time.After(5 * time.Second):
				t.Fatal("the watchdog neither ended the process nor returned")
			}
			code := -1
			select {
			case code = <-exits:
			default:
			}
			if code != tt.code || out.String() != tt.line {
				t.Errorf("exit %d and log %q, want %d and %q", code, out.String(), tt.code, tt.line)
			}
		})
	}
}

func TestLogger(t *testing.T) {
	tests := []struct {
		name, format string
		log          func(*slog.Logger)
		want         string
	}{
		{"info reads like the tutorial", "text", func(l *slog.Logger) { l.Info("Received: 15:04:05") }, "Received: 15:04:05\n"},
		{"attributes follow", "text", func(l *slog.Logger) { l.Info("Received: 15:04:05", "id", "3", "latency", 1500*time.Microsecond) },
			"Received: 15:04:05 id=3 latency=1.5ms\n"},
		{"other levels are named", "text", func(l *slog.Logger) { l.Warn("retrying", "err", "broker down") }, "WARN retrying err=\"broker down\"\n"},
		{"debug is hidden at info", "text", func(l *slog.Logger) { l.Debug("noise") }, ""},
		{"empty values are quoted", "text", func(l *slog.Logger) { l.With("a", 1).Info("x", "err", "") }, "x a=1 err=\"\"\n"},
		{"json for machines", "json", func(l *slog.Logger) { l.Info("Received: 15:04:05", "id", "3", "latency", time.Millisecond) },
			`"msg":"Received: 15:04:05","id":"3","latency":1000000}` + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			tt.log(newLogger(&b, tt.format, slog.LevelInfo))
			if got := b.String(); got != tt.want && !(tt.format == "json" && strings.HasSuffix(got, tt.want)) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
