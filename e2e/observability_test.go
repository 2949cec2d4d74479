package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
)

// statsEvery is the client statistics' interval in these scenarios: what
// readiness, lag and the client's metrics are computed from.
const statsEvery = "statistics.interval.ms=1000"

// Scenario: a backlog drains, seen through Prometheus. 5,000 events wait in
// the topic; a consumer starts whose output is read slowly (a slow sink
// downstream), and Prometheus, scraping its /metrics every second, sees
// consumer_lag_messages rise with the backlog and fall to 0.
func TestObservability_lagDrainsThroughPrometheus(t *testing.T) {
	defer teardownOnPanic()
	b := sharedKafka(t, true)
	producerBin, consumerBin := binaries(t)
	topic, group := provision(t, b.bootstrap, name(t, "topic")), name(t, "group")
	const backlog = 5000

	p := startService(t, producerBin, "producer", producerArgs(b.bootstrap, topic, "--interval", "0", "--count",
		strconv.Itoa(backlog), "--log-events=false", "--log-level", "info")...)
	if code := p.wait(time.Minute); code != 0 {
		t.Fatalf("producer exited with %d while building the backlog", code)
	}

	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	prom := startPrometheus(t, b.pool, addr)
	start := time.Now()
	// 2 ms a line: about 10 s for the backlog, long enough for a few scrapes.
	c := startSlowlyRead(t, 2*time.Millisecond, consumerBin, "consumer", consumerArgs(b.bootstrap, topic, group,
		"--http-addr", addr, "-X", statsEvery, "-X", "auto.commit.interval.ms=1000")...)

	query := fmt.Sprintf(`sum(consumer_lag_messages{topic=%q})`, topic)
	var peak float64
	var peakAt, drainedAt time.Time
	for deadline := time.Now().Add(2 * time.Minute); drainedAt.IsZero(); time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("lag never fell to 0 in 2m after its peak of %.0f; received %d", peak, c.count(msgReceived))
		}
		lag, ok := prom.value(t, query)
		switch {
		case !ok:
		case lag > peak:
			peak, peakAt = lag, time.Now()
		case lag == 0 && peak > 0:
			drainedAt = time.Now()
		}
	}
	c.waitCount(msgReceived, backlog, time.Minute)
	t.Logf("FIGURE lag: took=%s backlog=%d peak_seen=%.0f peak_after=%s drained_after=%s received=%d", took(t),
		backlog, peak, peakAt.Sub(start).Round(100*time.Millisecond), drainedAt.Sub(start).Round(100*time.Millisecond), c.count(msgReceived))
	if peak < backlog/2 {
		t.Errorf("the highest lag Prometheus saw was %.0f; with a backlog of %d it should have seen most of it", peak, backlog)
	}
}

// Scenario: /readyz follows the broker. A producer and a consumer with their
// HTTP endpoints are ready; the broker goes down and both say 503, with the
// reason; it comes back and both say 200 again. /healthz stays 200
// throughout: an outage is not a reason to restart them. promtool accepts
// both services' /metrics.
func TestObservability_readyzFollowsTheBroker(t *testing.T) {
	defer teardownOnPanic()
	pool := needDocker(t, true)
	producerBin, consumerBin := binaries(t)
	b, err := startBroker(pool, suite.settings.kafkaImage, name(t, "kafka"), false)
	t.Cleanup(func() {
		if err := b.purge(); err != nil {
			t.Errorf("purge %s: %v", b.name, err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	topic, group := provision(t, b.bootstrap, name(t, "topic")), name(t, "group")
	pAddr, cAddr := "127.0.0.1:"+strconv.Itoa(freePort(t)), "127.0.0.1:"+strconv.Itoa(freePort(t))
	startService(t, consumerBin, "consumer", consumerArgs(b.bootstrap, topic, group, "--http-addr", cAddr, "-X", statsEvery)...)
	startService(t, producerBin, "producer", producerArgs(b.bootstrap, topic, "--interval", "200ms", "--http-addr", pAddr,
		"-X", statsEvery, "--log-level", "info")...)
	endpoints := map[string]string{"producer": pAddr, "consumer": cAddr}

	waitStatus := func(want int, timeout time.Duration) (took time.Duration, reasons []string) {
		t.Helper()
		start := time.Now()
		for svc, addr := range endpoints {
			for {
				code, body := httpGet(addr, "/readyz")
				if code == want {
					reasons = append(reasons, fmt.Sprintf("%s=%q", svc, strings.TrimSpace(body)))
					break
				}
				if time.Since(start) > timeout {
					t.Fatalf("%s /readyz: %d %q after %s, want %d", svc, code, body, timeout, want)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		return time.Since(start), reasons
	}
	waitStatus(200, time.Minute)
	for svc, addr := range endpoints {
		promtoolCheckMetrics(t, svc, addr)
	}

	id := b.res.Container.ID
	if err := pool.Client.StopContainer(id, 10); err != nil {
		t.Fatalf("stop %s: %v", b.name, err)
	}
	down, reasons := waitStatus(503, 30*time.Second)
	for svc, addr := range endpoints {
		if code, body := httpGet(addr, "/healthz"); code != 200 {
			t.Errorf("%s /healthz during the outage: %d %q, want 200", svc, code, body)
		}
	}
	if err := pool.Client.StartContainer(id, nil); err != nil {
		t.Fatalf("start %s again: %v", b.name, err)
	}
	b.expire()
	back, _ := waitStatus(200, 2*time.Minute)
	t.Logf("FIGURE readyz: took=%s not_ready_after_stop=%s ready_after_start=%s reasons: %s", took(t),
		down.Round(100*time.Millisecond), back.Round(100*time.Millisecond), strings.Join(reasons, " "))
}

// Scenario: one trace from producer to consumer. Each Received line names
// the trace of the Sending line of the same event (same ce_id): the
// traceparent header carried it, and each event has a trace of its own.
func TestObservability_traceIDsJoinProducerAndConsumer(t *testing.T) {
	defer teardownOnPanic()
	b := sharedKafka(t, true)
	producerBin, consumerBin := binaries(t)
	topic, group := provision(t, b.bootstrap, name(t, "topic")), name(t, "group")
	const n = 50
	c := startService(t, consumerBin, "consumer", consumerArgs(b.bootstrap, topic, group, "--count", strconv.Itoa(n))...)
	p := startService(t, producerBin, "producer", producerArgs(b.bootstrap, topic, "--interval", "10ms", "--count", strconv.Itoa(n))...)
	if code := p.wait(time.Minute); code != 0 {
		t.Fatalf("producer exited with %d", code)
	}
	if code := c.wait(time.Minute); code != 0 {
		t.Fatalf("consumer exited with %d", code)
	}
	sent := map[string]string{} // ce_id -> trace id
	for _, l := range p.log() {
		if l.is(msgSending) {
			sent[l.ID] = l.TraceID
		}
	}
	traces := map[string]bool{}
	for _, l := range c.log() {
		if !l.is(msgReceived) {
			continue
		}
		if want, ok := sent[l.ID]; !ok || l.TraceID == "" || l.TraceID != want {
			t.Errorf("event %s received in trace %q, sent in trace %q", l.ID, l.TraceID, want)
		}
		traces[l.TraceID] = true
	}
	if len(sent) != n || len(traces) != n {
		t.Errorf("%d events sent, %d distinct traces received; want %d of each", len(sent), len(traces), n)
	}
	t.Logf("FIGURE traces: took=%s sent=%d received_in_their_trace=%d", took(t), len(sent), len(traces))
}

// prometheus is a Prometheus server on the host's network, so that it
// scrapes the services running as processes here.
type prometheus struct{ addr string }

// startPrometheus runs PROMETHEUS_IMAGE listening on addr, scraping the
// target every second; it is removed when the test ends.
func startPrometheus(t *testing.T, pool *dockertest.Pool, target string) prometheus {
	t.Helper()
	if suite.settings.prometheusImage == "" {
		t.Fatal("PROMETHEUS_IMAGE is set neither in the environment nor in .env")
	}
	if err := ensureImage(pool, suite.settings.prometheusImage); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	config := fmt.Sprintf("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: consumer\n    static_configs: [{targets: [%q]}]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // Prometheus runs as nobody
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	repo, tag := splitImage(suite.settings.prometheusImage)
	res, err := pool.RunWithOptions(&dockertest.RunOptions{
		Name: name(t, "prometheus"), Repository: repo, Tag: tag, Labels: runLabels(),
		Cmd:    []string{"--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=" + addr},
		Mounts: []string{dir + ":/etc/prometheus:ro"},
	}, func(hc *dc.HostConfig) {
		hc.NetworkMode = "host"
		hc.AutoRemove = true
	})
	if err != nil {
		t.Fatalf("start Prometheus (%s): %v", suite.settings.prometheusImage, err)
	}
	t.Cleanup(func() { _ = pool.Purge(res) })
	_ = res.Expire(uint(time.Until(suiteDeadline()).Seconds()) + 60)
	if err := pool.Retry(func() error {
		if code, body := httpGet(addr, "/-/ready"); code != 200 {
			return fmt.Errorf("/-/ready: %d %s", code, body)
		}
		return nil
	}); err != nil {
		t.Fatalf("Prometheus not ready: %v\n%s", err, containerLogs(pool, res.Container.ID, 20))
	}
	return prometheus{addr: addr}
}

// value runs an instant query; ok is false while it has no sample.
func (p prometheus) value(t *testing.T, query string) (v float64, ok bool) {
	t.Helper()
	code, body := httpGet(p.addr, "/api/v1/query?query="+url.QueryEscape(query))
	if code != 200 {
		t.Fatalf("Prometheus query %s: %d %s", query, code, body)
	}
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("Prometheus answer %q: %v", body, err)
	}
	if len(r.Data.Result) == 0 {
		return 0, false
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}

// promtoolCheckMetrics has Prometheus's promtool lint a service's /metrics.
func promtoolCheckMetrics(t *testing.T, svc, addr string) {
	t.Helper()
	code, body := httpGet(addr, "/metrics")
	if code != 200 || !strings.Contains(body, svc+"_") {
		t.Fatalf("%s /metrics: %d, want 200 with %s_* metrics:\n%.500s", svc, code, svc, body)
	}
	cmd := exec.Command("docker", "run", "--rm", "-i", "--entrypoint", "/bin/promtool", suite.settings.prometheusImage, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics of the %s: %v\n%s", svc, err, out)
	}
}

// httpGet returns the status code and body of addr's path; 0 when it does not answer.
func httpGet(addr, path string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = io.Copy(&b, resp.Body)
	return resp.StatusCode, b.String()
}
