package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/event-driven-go/kafka-go/internal/stack"
	dc "github.com/ory/dockertest/v3/docker"
)

// mage runs `go tool mage target` from the repository root, as a user
// types it, with env added to this process's environment.
func mage(t *testing.T, timeout time.Duration, env []string, target string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, stack.GoCommand(), "tool", "mage", target)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// exchange runs the producer and then the consumer on this machine against
// bootstrap and returns what the consumer printed; both must exit 0.
func exchange(t *testing.T, bootstrap, topic, group string, events int) string {
	t.Helper()
	producer, consumer := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n := strconv.Itoa(events)
	if out, err := exec.CommandContext(ctx, producer, "--bootstrap-servers", bootstrap, "--topic", topic,
		"--count", n, "--interval", "10ms").CombinedOutput(); err != nil {
		t.Fatalf("producer: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(ctx, consumer, "--bootstrap-servers", bootstrap, "--topic", topic,
		"--group", group, "--count", n).CombinedOutput()
	if err != nil {
		t.Fatalf("consumer: %v\n%s", err, out)
	}
	return string(out)
}

// The stack's life cycle as a user goes through it: `up` gives a broker
// that the host's producer and consumer use, published on loopback only;
// `down` removes the containers and keeps the data; `clean` removes the
// project's containers, networks and volumes, and nothing else.
func TestStack_upDownClean(t *testing.T) {
	defer teardownOnPanic()
	pool := needDocker(t, true)
	project := name(t, "project")
	port := freePort(t)
	const topic, events = "stack", 3
	env := append(composeEnv(t, project), "KAFKA_HOST_PORT="+strconv.Itoa(port),
		"KAFKA_IMAGE="+suite.settings.kafkaImage, "KAFKA_TOPIC="+topic)
	t.Cleanup(func() {
		if out, err := mage(t, 5*time.Minute, env, "clean"); err != nil {
			t.Errorf("go tool mage clean: %v\n%s", err, out)
		}
	})
	canary := "e2e-stack-canary-" + runID
	if _, err := pool.Client.CreateVolume(dc.CreateVolumeOptions{Name: canary, Labels: runLabels()}); err != nil {
		t.Fatalf("create volume %s: %v", canary, err)
	}
	t.Cleanup(func() { _ = pool.Client.RemoveVolumeWithOptions(dc.RemoveVolumeOptions{Name: canary, Force: true}) })

	bootstrap := "localhost:" + strconv.Itoa(port)
	out, err := mage(t, 5*time.Minute, env, "up")
	if err != nil || !strings.Contains(out, "Kafka is up: host clients use "+bootstrap) {
		t.Fatalf("go tool mage up: %v\n%s%s", err, out, imageHint(pool, suite.settings.kafkaImage))
	}
	// up creates KAFKA_TOPIC and its dead-letter topic: the services create none.
	for _, want := range []string{"created topic " + topic + "\n", "created topic " + topic + ".dlq (max.message.bytes 1050636"} {
		if !strings.Contains(out, want) {
			t.Errorf("go tool mage up did not say %q:\n%s", want, out)
		}
	}

	// Nothing is published on an address other than loopback.
	info, err := pool.Client.InspectContainer(projectContainer(t, pool, project, "kafka"))
	if err != nil {
		t.Fatal(err)
	}
	published := 0
	for port, bindings := range info.NetworkSettings.Ports {
		for _, b := range bindings {
			published++
			if b.HostIP != "127.0.0.1" {
				t.Errorf("container port %s is published on %s:%s; want 127.0.0.1 only", port, b.HostIP, b.HostPort)
			}
		}
	}
	if published == 0 {
		t.Error("the kafka service publishes no port")
	}

	got := exchange(t, bootstrap, topic, "before-down", events)
	if n := strings.Count(got, "Received: "); n != events {
		t.Fatalf("consumer received %d events, want %d:\n%s", n, events, got)
	}

	if out, err := mage(t, 2*time.Minute, env, "down"); err != nil {
		t.Fatalf("go tool mage down: %v\n%s", err, out)
	}
	if left := projectLeftovers(t, pool, project, []string{canary}); len(left) != 1 || !strings.HasPrefix(left[0], "volume ") {
		t.Fatalf("after down, want only the data volume left, got %v", left)
	}

	// The data survived: a new group reads the events sent before down.
	if out, err := mage(t, 5*time.Minute, env, "up"); err != nil {
		t.Fatalf("go tool mage up again: %v\n%s", err, out)
	}
	_, consumer := binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	again, err := exec.CommandContext(ctx, consumer, "--bootstrap-servers", bootstrap, "--topic", topic,
		"--group", "after-down", "--count", strconv.Itoa(events)).CombinedOutput()
	if err != nil || strings.Count(string(again), "Received: ") != events {
		t.Fatalf("after down and up, a new group read %d of the %d events (%v):\n%s",
			strings.Count(string(again), "Received: "), events, err, again)
	}

	out, err = mage(t, 5*time.Minute, env, "clean")
	if err != nil {
		t.Fatalf("go tool mage clean: %v\n%s", err, out)
	}
	if left := projectLeftovers(t, pool, project, []string{canary}); len(left) > 0 {
		t.Errorf("after clean, project %s still has: %s", project, strings.Join(left, ", "))
	}
	if _, err := pool.Client.InspectVolume(canary); err != nil {
		t.Errorf("volume %s, not the project's, is gone after clean: %v", canary, err)
	}
	t.Logf("stack: up, %d events exchanged, down kept the data, clean left nothing of %s", events, project)
}

// `go tool mage demo` with DEMO_EVENTS=3 ends by itself with three events
// sent and received: with Kafka in Docker, and with the embedded broker
// when Docker cannot be reached.
func TestDemo_endsAfterDemoEvents(t *testing.T) {
	tests := []struct {
		name   string
		docker bool
		broker string // what the demo must say about its broker
	}{
		{"docker", true, "Broker: Kafka in Docker ("},
		{"embedded", false, "Broker: embedded in-memory Kafka-protocol broker at 127.0.0.1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer teardownOnPanic()
			env := []string{"DEMO_EVENTS=3", "PRODUCER_INTERVAL=200ms", "KAFKA_BOOTSTRAP_SERVERS=", "BROKER="}
			if tt.docker {
				needDocker(t, true)
				port := freePort(t)
				env = append(env, composeEnv(t, name(t, "project"))...)
				env = append(env, "KAFKA_HOST_PORT="+strconv.Itoa(port), "KAFKA_IMAGE="+suite.settings.kafkaImage)
				t.Cleanup(func() {
					if out, err := mage(t, 5*time.Minute, env, "clean"); err != nil {
						t.Errorf("go tool mage clean: %v\n%s", err, out)
					}
				})
			} else {
				// Docker made unreachable: the demo must fall back by itself.
				env = append(env, "DOCKER_HOST=unix:///nonexistent/docker.sock")
			}
			out, err := mage(t, 5*time.Minute, env, "demo")
			if err != nil {
				t.Fatalf("go tool mage demo: %v\n%s", err, out)
			}
			for _, want := range []string{tt.broker, "Demo finished: sent 3, received 3."} {
				if !strings.Contains(out, want) {
					t.Errorf("demo output lacks %q:\n%s", want, out)
				}
			}
			if !tt.docker && !strings.Contains(out, "Docker is not reachable") {
				t.Errorf("demo did not say why it used the embedded broker:\n%s", out)
			}
			t.Logf("demo (%s): sent=3 received=3", tt.name)
		})
	}
}

// Ctrl-C in a terminal on `go tool mage run:producer`, while the broker does
// not answer: the producer's bounded flush and purge end well inside the 5 s
// Mage gives a target, so Mage never gives up with "cleanup timeout
// exceeded" and the producer's own summary is the last word.
func TestRunProducer_ctrlCWhileBrokerHangs(t *testing.T) {
	defer teardownOnPanic()
	k := sharedKafka(t, true)
	topic := provision(t, k.bootstrap, name(t, "topic"))
	var out syncBuffer
	cmd := exec.Command(stack.GoCommand(), "tool", "mage", "run:producer")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "KAFKA_BOOTSTRAP_SERVERS="+k.bootstrap, "KAFKA_TOPIC="+topic,
		"PRODUCER_INTERVAL=20ms", "LOG_FORMAT=text")
	cmd.Stdout, cmd.Stderr = &out, &out
	// A process group of its own, like a terminal's foreground job: Ctrl-C
	// signals every process in it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	for deadline := time.Now().Add(3 * time.Minute); strings.Count(out.String(), "Sending: ") < 10; {
		if time.Now().After(deadline) {
			t.Fatalf("go tool mage run:producer sent fewer than 10 events in 3m:\n%s", out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The broker stops answering with events in flight, as on a network
	// outage: the flush then waits for its whole bound.
	id := k.res.Container.ID
	if err := k.pool.Client.PauseContainer(id); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := k.pool.Client.UnpauseContainer(id); err != nil {
			t.Errorf("unpause %s: %v", k.name, err)
		}
	})
	time.Sleep(500 * time.Millisecond)
	interrupted := time.Now()
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatalf("go tool mage run:producer still running 15s after Ctrl-C:\n%s", out.String())
	}
	took := time.Since(interrupted)
	text := out.String()
	if strings.Contains(text, "cleanup timeout exceeded") {
		t.Errorf("Mage gave up on the producer's shutdown:\n%s", text)
	}
	if !strings.Contains(text, "Producer stopped") {
		t.Errorf("the producer's summary is missing: it did not finish its shutdown:\n%s", text)
	}
	// Mage allows 5 s; keep 1.5 s of them for a loaded machine.
	if took > 3500*time.Millisecond {
		t.Errorf("stopping took %s; want at most 3.5s of the 5s Mage allows", took)
	}
	t.Logf("run:producer Ctrl-C with the broker paused: stopped after %s", took.Round(10*time.Millisecond))
}

// syncBuffer is a bytes.Buffer that a process writes while the test reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
