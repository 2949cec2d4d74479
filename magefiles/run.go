package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/magefile/mage/mg"
)

// Run runs one service on this machine, like the tutorial's `python3 main.py`.
type Run mg.Namespace

// Producer runs the producer on this machine; Ctrl-C stops it cleanly.
//
// It sends to KAFKA_BOOTSTRAP_SERVERS, by default the compose Kafka's host
// port (localhost:9092); PRODUCER_*, KAFKA_* and LOG_* pass through.
func (Run) Producer(ctx context.Context) error { return runService(ctx, "producer") }

// Consumer runs the consumer on this machine; Ctrl-C stops it cleanly.
//
// It reads from KAFKA_BOOTSTRAP_SERVERS, by default the compose Kafka's host
// port (localhost:9092); CONSUMER_*, KAFKA_* and LOG_* pass through.
func (Run) Consumer(ctx context.Context) error { return runService(ctx, "consumer") }

// stopGrace is how long a service may take to stop after SIGTERM before it
// is killed: longer than the producer's bounded flush (3 s at most), shorter
// than the 5 s Mage gives a target after Ctrl-C before it gives up on it.
const stopGrace = 4 * time.Second

// runService builds a service and runs it in the foreground with this
// environment.
func runService(ctx context.Context, name string) error {
	mg.Deps(needCgo)
	bin, err := buildService(name)
	if err != nil {
		return err
	}
	env, err := serviceEnv()
	if err != nil {
		return err
	}
	cmd := serviceCommand(ctx, bin, env)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// serviceEnv points a service on this machine at the compose Kafka's host
// port unless KAFKA_BOOTSTRAP_SERVERS names a broker.
func serviceEnv() ([]string, error) {
	if os.Getenv("KAFKA_BOOTSTRAP_SERVERS") != "" {
		return os.Environ(), nil
	}
	port, err := repo.Setting("KAFKA_HOST_PORT", "9092")
	if err != nil {
		return nil, err
	}
	return append(os.Environ(), "KAFKA_BOOTSTRAP_SERVERS=localhost:"+port), nil
}

// serviceCommand runs bin with env; when ctx ends the service gets one stop
// signal and stopGrace to flush and close, never SIGKILL first. One: a
// second stop signal makes a service exit at once, without its flush, and a
// terminal's Ctrl-C already reaches the service, which runs in the
// terminal's process group; Mage sends SIGTERM only when its context ended
// otherwise. (os/exec: mage/sh has no way to stop a command gently.)
func serviceCommand(ctx context.Context, bin string, env []string, args ...string) *exec.Cmd {
	interrupted := make(chan os.Signal, 1)
	signal.Notify(interrupted, os.Interrupt)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Cancel = func() error {
		select {
		case <-interrupted:
			return nil
		default:
			return cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	cmd.WaitDelay = stopGrace
	return cmd
}
