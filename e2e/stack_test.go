package e2e

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	dc "github.com/ory/dockertest/v3/docker"
)

// mage runs `go tool mage target` from the repository root, as a user
// types it, with env added to this process's environment.
func mage(t *testing.T, timeout time.Duration, env []string, target string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, goCommand(), "tool", "mage", target)
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
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"COMPOSE_PROJECT_NAME=" + project, "KAFKA_HOST_PORT=" + strconv.Itoa(port),
		"KAFKA_IMAGE=" + suite.settings.kafkaImage}
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

	const topic, events = "stack", 3
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
		{"docker", true, "Broker: Kafka in Docker at localhost:"},
		{"embedded", false, "Broker: embedded in-memory Kafka-protocol broker at 127.0.0.1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer teardownOnPanic()
			env := []string{"DEMO_EVENTS=3", "PRODUCER_INTERVAL=200ms", "KAFKA_BOOTSTRAP_SERVERS=", "BROKER="}
			if tt.docker {
				needDocker(t, true)
				port, err := freePort()
				if err != nil {
					t.Fatal(err)
				}
				env = append(env, "COMPOSE_PROJECT_NAME="+name(t, "project"), "KAFKA_HOST_PORT="+strconv.Itoa(port),
					"KAFKA_IMAGE="+suite.settings.kafkaImage)
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
