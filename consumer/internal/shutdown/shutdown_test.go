package shutdown

import (
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/event-driven-go/kafka-go/consumer/internal/logging"
)

func TestWatch(t *testing.T) {
	left := func() []any { return []any{"attempted", 10, "unconfirmed", 3} }
	const abandoned = "attempted=10 unconfirmed=3"
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
			w := Watch{Signals: signals, Failed: failed, Limit: 50 * time.Millisecond, Exit: func(code int) { exit = code },
				Log: logging.New(&out, "text", slog.LevelInfo), Left: left}
			returned := make(chan struct{})
			go func() {
				defer close(returned)
				w.Run(done, stop)
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
