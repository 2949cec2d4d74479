// Package shutdown bounds a service's shutdown: the first stop signal asks
// the run to end, a second one, or a shutdown that outlasts its limit, ends
// the process at once, saying what was left.
package shutdown

import (
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"
)

// Watch turns stop signals into the program's shutdown.
type Watch struct {
	Signals <-chan os.Signal
	Failed  <-chan struct{} // closed by a fatal error, which ends the run as a signal does
	Limit   time.Duration   // the longest shutdown after the first signal
	Exit    func(code int)  // ends the process
	Log     *slog.Logger
	Left    func() []any // what is at stake, for the last line
}

// Run calls stop on the first signal, or waits as after one when Failed is
// closed. Then, unless done is closed first, a second signal exits with
// 128+its number and a shutdown over Limit with 1, each after a line.
func (w Watch) Run(done <-chan struct{}, stop func()) {
	select {
	case <-done:
		return
	case <-w.Signals:
	case <-w.Failed:
	}
	stop()
	limit := time.NewTimer(w.Limit)
	defer limit.Stop()
	select {
	case <-done:
	case sig := <-w.Signals:
		w.Log.Error("Second stop signal: exiting now", append(w.Left(), "signal", sig.String())...)
		code := 1
		if s, ok := sig.(syscall.Signal); ok {
			code = 128 + int(s)
		}
		w.Exit(code)
	case <-limit.C:
		w.Log.Error(fmt.Sprintf("Shutdown took longer than %s: exiting now", w.Limit), w.Left()...)
		w.Exit(1)
	}
}
