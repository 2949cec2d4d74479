package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
)

// runImage runs image with args and --log-format json in Docker network
// mode network ("container:<id>" shares another container's network), waits
// for it to exit, and returns its log lines and exit code. The container is
// removed when the test ends; its output is shown if the test failed.
func runImage(t *testing.T, pool *dockertest.Pool, image, name, network string, args ...string) ([]logLine, int) {
	t.Helper()
	repo, tag := splitImage(image)
	res, err := pool.RunWithOptions(&dockertest.RunOptions{
		Name:       name,
		Repository: repo,
		Tag:        tag,
		Cmd:        args,
		Labels:     runLabels(),
	}, func(hc *dc.HostConfig) {
		hc.NetworkMode = network
		hc.PublishAllPorts = false
	})
	t.Cleanup(func() {
		if res == nil {
			_ = removeContainerNamed(pool, name)
			return
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, containerLogs(pool, res.Container.ID, 40))
		}
		if err := pool.Purge(res); err != nil {
			t.Errorf("purge %s: %v", name, err)
		}
	})
	if err != nil {
		t.Fatalf("run %s: %v%s", image, err, imageHint(pool, image))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	code, err := pool.Client.WaitContainerWithContext(res.Container.ID, ctx)
	if err != nil {
		t.Fatalf("wait for %s: %v", name, err)
	}
	var stdout, stderr bytes.Buffer
	err = pool.Client.Logs(dc.LogsOptions{Container: res.Container.ID,
		OutputStream: &stdout, ErrorStream: &stderr, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatalf("logs of %s: %v", name, err)
	}
	return parseLogLines(t, &stdout), code
}

// provisionIn creates topic and its dead-letter topic with the topics
// image (the compose app profile's one-shot service) on network, as a
// user of the images does before starting the services.
func provisionIn(t *testing.T, pool *dockertest.Pool, network, bootstrap, topic string) string {
	t.Helper()
	if _, code := runImage(t, pool, suite.settings.topicsImage, name(t, "topics"), network,
		"--bootstrap-servers", bootstrap, "--topic", topic); code != 0 {
		t.Fatalf("the topics image exited with %d; want 0", code)
	}
	return topic
}

// parseLogLines decodes the JSON lines of a service's output.
func parseLogLines(t *testing.T, out *bytes.Buffer) []logLine {
	t.Helper()
	var lines []logLine
	sc := bufio.NewScanner(out)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		b := sc.Bytes()
		if len(b) == 0 || b[0] != '{' {
			continue
		}
		var l logLine
		if err := json.Unmarshal(b, &l); err != nil {
			t.Errorf("not a JSON log line: %q: %v", b, err)
			continue
		}
		lines = append(lines, l)
	}
	return lines
}

// javaUID returns the user id of the broker's java process in the container.
func javaUID(t *testing.T, res *dockertest.Resource) string {
	t.Helper()
	// /proc is all the image is sure to have: no ps.
	script := `for d in /proc/[0-9]*; do [ "$(cat "$d/comm" 2>/dev/null)" = java ] && sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "$d/status"; done`
	var out, errOut bytes.Buffer
	code, err := res.Exec([]string{"sh", "-c", script}, dockertest.ExecOptions{StdOut: &out, StdErr: &errOut})
	if err != nil {
		t.Fatalf("exec in %s: %v", res.Container.Name, err)
	}
	uids := strings.Fields(out.String())
	if len(uids) == 0 {
		t.Fatalf("no java process found in %s (exit %d): %s", res.Container.Name, code, errOut.String())
	}
	for _, u := range uids[1:] {
		if u != uids[0] {
			t.Fatalf("java processes run as several users: %v", uids)
		}
	}
	return uids[0]
}

// sentAndReceived returns the ids a producer logged as sent and the ids a
// consumer logged as received, in order.
func sentAndReceived(producer, consumer []logLine) (sent, received []string) {
	for _, l := range producer {
		if l.is(msgSending) {
			sent = append(sent, l.ID)
		}
	}
	for _, l := range consumer {
		if l.is(msgReceived) {
			received = append(received, l.ID)
		}
	}
	return sent, received
}

// describe is a short account of a run for failure messages.
func describe(lines []logLine) string {
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "\n  %s %s %s", l.Level, l.Msg, l.Err)
	}
	return b.String()
}
