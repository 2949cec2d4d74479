package main

import (
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/event-driven-go/kafka-go/producer/sender"
)

// shutdownLimit bounds the shutdown after the first stop signal,
// comfortably inside the 10s that docker stop waits before it kills.
const shutdownLimit = 8 * time.Second

// stopWatch turns stop signals into the program's shutdown.
type stopWatch struct {
	signals <-chan os.Signal
	limit   time.Duration // the longest shutdown after the first signal
	exit    func(code int)
	log     *slog.Logger
	counts  func() sender.Result // the events at stake, for the last line
}

// watch calls stop on the first signal. Then, unless done is closed first,
// a second signal exits with 128+its number, and a shutdown longer than
// limit exits with 1, each after one line that says what was abandoned.
func (w stopWatch) watch(done <-chan struct{}, stop func()) {
	select {
	case <-done:
		return
	case <-w.signals:
	}
	stop()
	limit := time.NewTimer(w.limit)
	defer limit.Stop()
	select {
	case <-done:
	case sig := <-w.signals:
		w.log.Error("Second stop signal: exiting now", append(w.abandoned(), "signal", sig.String())...)
		code := 1
		if n, ok := sig.(syscall.Signal); ok {
			code = 128 + int(n)
		}
		w.exit(code)
	case <-limit.C:
		w.log.Error(fmt.Sprintf("Shutdown took longer than %s: exiting now", w.limit), w.abandoned()...)
		w.exit(1)
	}
}

// abandoned are the counts at this moment; unconfirmed events were accepted
// and have no delivery report yet.
func (w stopWatch) abandoned() []any {
	c := w.counts()
	return []any{"attempted", c.Attempted, "delivered", c.Delivered, "failed", c.Failed, "unknown", c.Unknown,
		"unconfirmed", c.Attempted - c.Delivered - c.Failed - c.Unknown}
}
