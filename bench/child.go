package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// child is a process a round runs and accounts for.
type child struct {
	name string
	args []string
	env  []string // added to this process's environment
	// onChunk, when set, gets stdout as it arrives instead of keeping it.
	onChunk func(b []byte, at time.Time)
	// onLine sees each line of stdout (unless onChunk is set) and stderr as it arrives.
	onLine func(line string, at time.Time)
}

// childResult is what a child did: its wall time from start to exit, the
// CPU time the kernel accounted to it (user and system, from rusage), and
// its output.
type childResult struct {
	wall, cpu      time.Duration
	stdout, stderr string
}

// running is a started child.
type running struct {
	c       child
	cmd     *exec.Cmd
	start   time.Time
	mu      sync.Mutex
	out     bytes.Buffer
	errOut  bytes.Buffer
	readers sync.WaitGroup
}

// startChild starts c; cancelling ctx stops it with SIGTERM.
func startChild(ctx context.Context, c child) (*running, error) {
	cmd := exec.CommandContext(ctx, c.name, c.args...)
	cmd.Env = append(os.Environ(), c.env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(c.name), err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(c.name), err)
	}
	r := &running{c: c, cmd: cmd}
	r.start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(c.name), err)
	}
	r.readers.Add(2)
	go func() {
		defer r.readers.Done()
		if c.onChunk != nil {
			buf := make([]byte, 64<<10)
			for {
				n, err := stdout.Read(buf)
				if n > 0 {
					c.onChunk(buf[:n], time.Now())
				}
				if err != nil {
					return
				}
			}
		}
		r.lines(stdout, &r.out)
	}()
	go func() {
		defer r.readers.Done()
		r.lines(stderr, &r.errOut)
	}()
	return r, nil
}

// lines keeps each line of rd in buf and shows it to onLine.
func (r *running) lines(rd io.Reader, buf *bytes.Buffer) {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		at := time.Now()
		r.mu.Lock()
		buf.WriteString(sc.Text() + "\n")
		r.mu.Unlock()
		if r.c.onLine != nil {
			r.c.onLine(sc.Text(), at)
		}
	}
	_, _ = io.Copy(io.Discard, rd)
}

// wait waits for the child to exit; a non-zero exit is an error that
// carries the end of its output.
func (r *running) wait() (childResult, error) {
	r.readers.Wait()
	err := r.cmd.Wait()
	res := childResult{wall: time.Since(r.start), stdout: r.out.String(), stderr: r.errOut.String()}
	if ps := r.cmd.ProcessState; ps != nil {
		res.cpu = ps.UserTime() + ps.SystemTime()
	}
	if err != nil {
		return res, fmt.Errorf("%s %s: %w\n%s", filepath.Base(r.c.name), strings.Join(r.c.args, " "), err,
			tail(res.stdout+res.stderr, 15))
	}
	return res, nil
}

// runChild runs c to its end.
func runChild(ctx context.Context, c child) (childResult, error) {
	r, err := startChild(ctx, c)
	if err != nil {
		return childResult{}, err
	}
	return r.wait()
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// findJSONLine returns the last JSON log line of out whose msg is msg.
func findJSONLine(out, msg string) (map[string]any, error) {
	var found map[string]any
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			found = m
		}
	}
	if found == nil {
		return nil, fmt.Errorf("no %q line in the output:\n%s", msg, tail(out, 15))
	}
	return found, nil
}

// number reads a numeric attribute of a JSON log line.
func number(l map[string]any, key string) (float64, error) {
	v, ok := l[key].(float64)
	if !ok {
		return 0, fmt.Errorf("log line %v has no number %q", l, key)
	}
	return v, nil
}

// perfTestRe reads the summary line of kafka-producer-perf-test.
var perfTestRe = regexp.MustCompile(`(?m)^(\d+) records sent, ([0-9.]+) records/sec \(([0-9.]+) MB/sec\)`)

// parseProducerPerf returns the records sent and records per second of
// kafka-producer-perf-test's summary.
func parseProducerPerf(out string) (records int64, perSec float64, err error) {
	m := perfTestRe.FindAllStringSubmatch(out, -1)
	if m == nil {
		return 0, 0, fmt.Errorf("no summary line in kafka-producer-perf-test's output:\n%s", tail(out, 10))
	}
	last := m[len(m)-1]
	records, _ = strconv.ParseInt(last[1], 10, 64)
	perSec, _ = strconv.ParseFloat(last[2], 64)
	return records, perSec, nil
}

// parseConsumerPerf returns the named columns of kafka-consumer-perf-test's
// result: a header line of comma-separated names and a line of values.
func parseConsumerPerf(out string) (map[string]string, error) {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "start.time,") || i+1 >= len(lines) {
			continue
		}
		names, values := strings.Split(l, ","), strings.Split(lines[i+1], ",")
		if len(names) != len(values) {
			return nil, fmt.Errorf("kafka-consumer-perf-test: %d columns, %d values:\n%s\n%s", len(names), len(values), l, lines[i+1])
		}
		cols := map[string]string{}
		for j := range names {
			cols[strings.TrimSpace(names[j])] = strings.TrimSpace(values[j])
		}
		return cols, nil
	}
	return nil, fmt.Errorf("no result in kafka-consumer-perf-test's output:\n%s", tail(out, 10))
}

// e2eAvgRe and e2ePctRe read the result of Kafka's EndToEndLatency tool.
var (
	e2eAvgRe = regexp.MustCompile(`(?m)^Avg latency: ([0-9.]+) ms`)
	e2ePctRe = regexp.MustCompile(`(?m)^Percentiles: 50th = (\d+), 99th = (\d+), 99.9th = (\d+)`)
)

// parseEndToEnd returns the average and the 50th, 99th and 99.9th
// percentiles EndToEndLatency prints, in milliseconds (it truncates the
// percentiles to whole milliseconds).
func parseEndToEnd(out string) (avg, p50, p99, p999 float64, err error) {
	a, p := e2eAvgRe.FindStringSubmatch(out), e2ePctRe.FindStringSubmatch(out)
	if a == nil || p == nil {
		return 0, 0, 0, 0, fmt.Errorf("no result in EndToEndLatency's output:\n%s", tail(out, 10))
	}
	avg, _ = strconv.ParseFloat(a[1], 64)
	p50, _ = strconv.ParseFloat(p[1], 64)
	p99, _ = strconv.ParseFloat(p[2], 64)
	p999, _ = strconv.ParseFloat(p[3], 64)
	return avg, p50, p99, p999, nil
}

// kcatEndRe is the line kcat -C -e writes to stderr when it reached the end.
var kcatEndRe = regexp.MustCompile(`^% Reached end of topic \S+ \[\d+\] at offset (\d+)`)

// streamClock times a consumer that only says what it read: from the first
// output that arrives to the moment it says it reached the end, and counts
// the lines (one per message) in between.
type streamClock struct {
	mu         sync.Mutex
	first, end time.Time
	firstLines int // lines in the first chunk, read before the clock started
	lines      int
}

func (s *streamClock) chunk(b []byte, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := bytes.Count(b, []byte{'\n'})
	if s.first.IsZero() {
		s.first, s.firstLines = at, n
	}
	s.lines += n
}

func (s *streamClock) line(l string, at time.Time) {
	if kcatEndRe.MatchString(l) {
		s.mu.Lock()
		s.end = at
		s.mu.Unlock()
	}
}

// rate is the messages per second between the first output and the end.
func (s *streamClock) rate() (float64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.first.IsZero() || s.end.IsZero() || !s.end.After(s.first) {
		return 0, fmt.Errorf("kcat gave no output or no end of topic (%d lines)", s.lines)
	}
	return float64(s.lines-s.firstLines) / s.end.Sub(s.first).Seconds(), nil
}

// payload is the value our producer sends, padded with spaces inside the
// JSON object to size bytes: the same bytes for every tool.
func payload(size int, at time.Time) []byte {
	v := []byte(`{"timestamp":"` + at.Format("15:04:05") + `"`)
	for len(v) < size-1 {
		v = append(v, ' ')
	}
	return append(v, '}')
}

// payloadFormRe matches a value of our producer's form, padded or not.
var payloadFormRe = regexp.MustCompile(`^\{"timestamp":"\d\d:\d\d:\d\d" *\}$`)

// payloadFiles writes the payload of size once (for
// kafka-producer-perf-test --payload-file) and n times, one a line (for
// kcat -P -l), and returns their paths.
func payloadFiles(size, n int, at time.Time) (one, lines string, err error) {
	p := payload(size, at)
	one = filepath.Join(benchDir, fmt.Sprintf("payload-%d.json", size))
	lines = filepath.Join(benchDir, fmt.Sprintf("payload-%d-x%d.lines", size, n))
	if err := os.WriteFile(one, p, 0o644); err != nil {
		return "", "", fmt.Errorf("write %s: %w", one, err)
	}
	all := bytes.Repeat(append(p, '\n'), n)
	if err := os.WriteFile(lines, all, 0o644); err != nil {
		return "", "", fmt.Errorf("write %s: %w", lines, err)
	}
	return one, lines, nil
}
