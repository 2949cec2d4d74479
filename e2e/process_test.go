package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// logLine is one JSON log line of the producer or the consumer: the slog
// fields and every attribute the suite reads.
type logLine struct {
	Time  time.Time `json:"time"`
	Level string    `json:"level"`
	Msg   string    `json:"msg"`

	ID        string `json:"id"`     // ce_id: unique within its source
	Source    string `json:"source"` // the producer's ce_source, on its start line
	Partition *int32 `json:"partition"`
	Offset    *int64 `json:"offset"`
	Latency   *int64 `json:"latency"` // nanoseconds
	Duplicate bool   `json:"duplicate"`
	Err       string `json:"err"`
	Reason    string `json:"reason"`
	DLQ       string `json:"dlq"`

	// Producer stopped.
	Attempted *int64 `json:"attempted"`
	Delivered *int64 `json:"delivered"`
	Failed    *int64 `json:"failed"`
	Unknown   *int64 `json:"unknown"`
	// Consumer stopped.
	Received     *int64 `json:"received"`
	Duplicates   *int64 `json:"duplicates"`
	DeadLettered *int64 `json:"dead_lettered"`
	// Either stopped: how often the service re-created its Kafka client.
	Recovered *int64 `json:"recovered"`
	// Leader stall of the producer: events its old client held, sent again by the new one.
	Resent *int64 `json:"resent"`
	// Sending: and Received: with --log-format json: the event's trace.
	TraceID string `json:"trace_id"`
	// The HTTP endpoint's line: where it listens.
	Addr string `json:"addr"`
}

// Log messages the suite recognises; event lines carry the timestamp after the prefix.
const (
	msgSending       = "Sending: "
	msgDelivered     = "Delivered: "
	msgNotDelivered  = "Not delivered: "
	msgUnconfirmed   = "Unconfirmed: "
	msgReceived      = "Received: "
	msgDeadLettered  = "Dead-lettered"
	msgProducerStart = "Producer started"
	msgProducerStop  = "Producer stopped"
	msgConsumerStop  = "Consumer stopped"
	msgPartitionsAsg = "Partitions assigned"
	msgLeaderStall   = "Leader stall"
)

// is tells whether the line's message starts with prefix.
func (l logLine) is(prefix string) bool { return strings.HasPrefix(l.Msg, prefix) }

// timestamp is the HH:MM:SS of an event line.
func (l logLine) timestamp() string {
	_, ts, _ := strings.Cut(l.Msg, ": ")
	return ts
}

// service is a producer or consumer binary running as a child process; its
// JSON log lines are collected as they come.
type service struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd

	mu     sync.Mutex
	lines  []logLine
	output []string // every line of stdout and stderr, for failure reports

	exited  chan struct{}
	waitErr error
	killed  time.Time // when SIGKILL was sent; zero otherwise
}

// startService runs bin with args and --log-format json. It is stopped, if
// still running, when the test ends; its output is shown if the test failed.
func startService(t *testing.T, bin, name string, args ...string) *service {
	t.Helper()
	return startSlowlyRead(t, 0, bin, name, args...)
}

// startSlowlyRead is startService with a reader of stdout that takes
// perLine for each line: a slow sink downstream. Once the pipe is full, the
// service's writes block, and so does its loop.
func startSlowlyRead(t *testing.T, perLine time.Duration, bin, name string, args ...string) *service {
	t.Helper()
	s := &service{t: t, name: name, exited: make(chan struct{})}
	s.cmd = exec.Command(bin, append([]string{"--log-format", "json"}, args...)...)
	s.cmd.Dir = suite.binDir // where a crash leaves its core dump, kept at the end of the run
	s.cmd.Stdout = &lineWriter{line: func(b []byte) {
		time.Sleep(perLine)
		s.stdoutLine(b)
	}}
	s.cmd.Stderr = &lineWriter{line: func(b []byte) { s.addOutput("stderr: " + string(b)) }}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		if s.running() {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			s.dump(40)
			s.mu.Lock()
			out := strings.Join(s.output, "\n") + "\n"
			s.mu.Unlock()
			keep(t, strings.ReplaceAll(s.name, "#", "-")+".log", out)
		}
	})
	return s
}

// stdoutLine keeps a line of stdout and decodes it when it is a JSON log line.
func (s *service) stdoutLine(b []byte) {
	s.addOutput(string(b))
	if len(b) == 0 || b[0] != '{' {
		return
	}
	var l logLine
	if err := json.Unmarshal(b, &l); err != nil {
		s.addOutput(fmt.Sprintf("(not a log line: %v)", err))
		return
	}
	s.mu.Lock()
	s.lines = append(s.lines, l)
	s.mu.Unlock()
}

// addOutput keeps a line of output for failure reports.
func (s *service) addOutput(line string) {
	s.mu.Lock()
	s.output = append(s.output, line)
	s.mu.Unlock()
}

// outputWith returns the lines of output so far that contain substr.
func (s *service) outputWith(substr string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.output {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// log returns the log lines so far. Lines are only appended, so the result
// stays valid.
func (s *service) log() []logLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines[:len(s.lines):len(s.lines)]
}

// count is the number of log lines so far whose message starts with prefix.
func (s *service) count(prefix string) int {
	n := 0
	for _, l := range s.log() {
		if l.is(prefix) {
			n++
		}
	}
	return n
}

// first returns the first line whose message starts with prefix.
func (s *service) first(prefix string) (logLine, bool) {
	for _, l := range s.log() {
		if l.is(prefix) {
			return l, true
		}
	}
	return logLine{}, false
}

// last returns the last line whose message starts with prefix.
func (s *service) last(prefix string) (logLine, bool) {
	lines := s.log()
	for i := len(lines) - 1; i >= 0; i-- {
		if lines[i].is(prefix) {
			return lines[i], true
		}
	}
	return logLine{}, false
}

// lastBetween returns the last line with the prefix that s logged between
// from and to.
func (s *service) lastBetween(prefix string, from, to time.Time) (logLine, bool) {
	var found logLine
	ok := false
	for _, l := range s.log() {
		if l.is(prefix) && l.Time.After(from) && l.Time.Before(to) {
			found, ok = l, true
		}
	}
	return found, ok
}

// running tells whether the process has not exited yet.
func (s *service) running() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// waitFor polls cond until it holds; it fails the test after timeout, or
// as soon as the process exited without cond holding.
func (s *service) waitFor(what string, timeout time.Duration, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if !s.running() {
			if cond() {
				return
			}
			s.t.Fatalf("%s exited (%v) before %s", s.name, s.waitErr, what)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: no %s within %s", s.name, what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCount waits until n lines start with prefix.
func (s *service) waitCount(prefix string, n int, timeout time.Duration) {
	s.t.Helper()
	s.waitFor(fmt.Sprintf("%d %q lines", n, prefix), timeout, func() bool { return s.count(prefix) >= n })
}

// signal sends sig to the process.
func (s *service) signal(sig syscall.Signal) {
	s.t.Helper()
	if sig == syscall.SIGKILL {
		s.killed = time.Now()
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v to %s: %v", sig, s.name, err)
	}
}

// wait waits up to timeout for the process to exit and returns its exit
// code (-1 when a signal ended it).
func (s *service) wait(timeout time.Duration) int {
	s.t.Helper()
	select {
	case <-s.exited:
	case <-time.After(timeout):
		s.t.Fatalf("%s still running after %s", s.name, timeout)
	}
	var ee *exec.ExitError
	if s.waitErr != nil && !errors.As(s.waitErr, &ee) {
		s.t.Fatalf("%s: %v", s.name, s.waitErr)
	}
	return s.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and expects a clean exit within timeout.
func (s *service) stop(timeout time.Duration) {
	s.t.Helper()
	s.signal(syscall.SIGTERM)
	if code := s.wait(timeout); code != 0 {
		s.t.Errorf("%s exited with %d after SIGTERM; want 0", s.name, code)
	}
}

// dump logs what the process said besides its event lines (starts, stops,
// rebalances, warnings; at most 100 lines), then its last n lines.
func (s *service) dump(n int) {
	s.mu.Lock()
	out := s.output
	s.mu.Unlock()
	var other []string
	for _, line := range out[:max(0, len(out)-n)] {
		if !strings.Contains(line, `"msg":"`+msgSending) && !strings.Contains(line, `"msg":"`+msgDelivered) &&
			!strings.Contains(line, `"msg":"`+msgReceived) {
			other = append(other, line)
		}
	}
	if len(other) > 100 {
		other = append(other[:50], append([]string{"..."}, other[len(other)-50:]...)...)
	}
	last := out[max(0, len(out)-n):]
	s.t.Logf("%s, %d lines of output; besides events:\n  %s\nlast %d lines:\n  %s", s.name, len(out),
		strings.Join(other, "\n  "), len(last), strings.Join(last, "\n  "))
}

// lineWriter calls line with each complete line written to it.
type lineWriter struct {
	buf  []byte
	line func([]byte)
}

// Write splits p into lines, keeping an incomplete last line for the next call.
func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) == 0 {
		w.buf = nil // let the consumed array go
	}
	return len(p), nil
}
