package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/event-driven-go/kafka-go/internal/stack"
	"github.com/event-driven-go/kafka-go/internal/topics"
	"github.com/magefile/mage/mg"
	"github.com/magefile/mage/sh"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Up starts Kafka with docker compose and creates the topics.
//
// It waits until the broker is healthy, then creates KAFKA_TOPIC (default
// timestamp) and its dead-letter topic unless they exist: the services
// create none. The image is KAFKA_IMAGE, pulled when missing; where no
// registry answers, the offline build of image:kafka.
func Up(ctx context.Context) error {
	mg.Deps(needDocker)
	s, err := newStack()
	if err != nil {
		return err
	}
	image, _, err := kafkaImage()
	if err != nil {
		return err
	}
	if err := s.up(image); err != nil {
		return err
	}
	return provision(ctx, s.bootstrap())
}

// provision creates KAFKA_TOPIC and its dead-letter topic (KAFKA_DLQ_TOPIC)
// at bootstrap unless they exist, and says what it did.
func provision(ctx context.Context, bootstrap string) error {
	var spec topics.Spec
	var err error
	if spec.Topic, err = repo.Setting("KAFKA_TOPIC", "timestamp"); err != nil {
		return err
	}
	if spec.DLQ, err = repo.Setting("KAFKA_DLQ_TOPIC", ""); err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(bootstrap, ",")...))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	did, err := topics.Ensure(ctx, cl, spec)
	for _, line := range did {
		fmt.Println("Kafka at " + bootstrap + ": " + line)
	}
	if err != nil {
		return fmt.Errorf("Kafka at %s: %w", bootstrap, err)
	}
	return nil
}

// Down removes the project's containers; Kafka's data stays.
//
// The network goes too; the data volume is kept for the next up.
func Down() error {
	mg.Deps(needDocker)
	s, err := newStack()
	if err != nil {
		return err
	}
	return s.down()
}

// down removes the project's containers and network, keeping its volumes.
func (s *composeStack) down() error {
	// rm -v first: the Kafka image declares volumes of its own (secrets,
	// mounted config) that compose creates without the project's label;
	// left behind, no later clean could tell them from anyone else's.
	if err := s.compose(withProfiles("rm", "--stop", "--force", "-v")...); err != nil {
		return err
	}
	return s.compose(withProfiles("down", "--remove-orphans")...)
}

// withProfiles prefixes a compose command with every profile, so that it
// reaches the app and observability services too.
func withProfiles(args ...string) []string {
	return append([]string{"--profile", "app", "--profile", "observability"}, args...)
}

// Clean is the tutorial's cleanup, for this project only.
//
// Like the tutorial's stop, rm -f and volume prune, it removes the project's containers, networks and volumes (the single
// node's and the cluster's), selected by the compose project's label, and nothing else.
func Clean() error {
	mg.Deps(needDocker)
	for _, project := range []func() (*composeStack, error){newStack, newClusterStack} {
		s, err := project()
		if err != nil {
			return err
		}
		if err := s.clean(); err != nil {
			return err
		}
	}
	return nil
}

// clean removes the project's containers, networks and volumes.
func (s *composeStack) clean() error {
	if err := s.compose(withProfiles("stop")...); err != nil {
		return err
	}
	if err := s.compose(withProfiles("rm", "-f", "-v")...); err != nil {
		return err
	}
	if err := s.compose(withProfiles("down", "--volumes", "--remove-orphans")...); err != nil {
		return err
	}
	// Sweep what compose no longer knows (say, a service renamed since it
	// was started), selected by the project's label and nothing else.
	for _, kind := range []string{"container", "volume", "network"} {
		ids, err := s.labelled(kind)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			continue
		}
		rm := []string{kind, "rm"}
		if kind == "container" {
			rm = append(rm, "--force", "--volumes")
		}
		if err := sh.RunV("docker", append(rm, ids...)...); err != nil {
			return err
		}
	}
	fmt.Printf("Removed the containers, networks and volumes of project %s; nothing else was touched.\n", s.project)
	return nil
}

// composeStack is a compose project: the single node of docker-compose.yml,
// or the three nodes of docker-compose.cluster.yml.
type composeStack struct {
	composeCmd []string          // docker compose (v2) or docker-compose (v1)
	project    string            // COMPOSE_PROJECT_NAME, with -cluster for the cluster
	file       string            // the compose file; "" is docker-compose.yml
	nodes      []string          // the Kafka services
	hostPorts  []string          // each node's port on 127.0.0.1
	env        map[string]string // added to compose's environment (KAFKA_IMAGE)
}

// newStack finds the compose command and the single node's settings.
func newStack() (*composeStack, error) {
	s, err := projectStack("")
	if err != nil {
		return nil, err
	}
	port, err := repo.Setting("KAFKA_HOST_PORT", "9092")
	s.nodes, s.hostPorts = []string{"kafka"}, []string{port}
	return s, err
}

// newClusterStack is the three nodes' project, apart from the single node's
// so that up, down and clean of one never touch the other.
func newClusterStack() (*composeStack, error) {
	s, err := projectStack("-cluster")
	if err != nil {
		return nil, err
	}
	s.file = "docker-compose.cluster.yml"
	for i, def := range []string{"29092", "39092", "49092"} {
		port, err := repo.Setting(fmt.Sprintf("KAFKA_CLUSTER_PORT_%d", i+1), def)
		if err != nil {
			return nil, err
		}
		s.nodes, s.hostPorts = append(s.nodes, fmt.Sprintf("kafka-%d", i+1)), append(s.hostPorts, port)
	}
	return s, nil
}

func projectStack(suffix string) (*composeStack, error) {
	s := &composeStack{env: map[string]string{}}
	var err error
	if s.project, err = repo.Setting("COMPOSE_PROJECT_NAME", "event-driven-kafka-go"); err != nil {
		return nil, err
	}
	s.project += suffix
	if s.composeCmd, err = stack.ComposeCommand(); err != nil {
		return nil, err
	}
	fmt.Printf("Using %s.\n", strings.Join(s.composeCmd, " "))
	return s, nil
}

// compose runs a compose command on the project, showing its output.
func (s *composeStack) compose(command ...string) error {
	args := append(slices.Clone(s.composeCmd[1:]), "--project-name", s.project)
	if s.file != "" {
		args = append(args, "--file", s.file)
	}
	args = append(args, command...)
	fmt.Println(strings.Join(append(s.composeCmd[:1], args...), " "))
	return sh.RunWithV(s.env, s.composeCmd[0], args...)
}

// bootstrap is the address list host clients use.
func (s *composeStack) bootstrap() string {
	addrs := make([]string, len(s.hostPorts))
	for i, p := range s.hostPorts {
		addrs[i] = "localhost:" + p
	}
	return strings.Join(addrs, ",")
}

// inside is the address list containers on the project's network use.
func (s *composeStack) inside() string {
	addrs := make([]string, len(s.nodes))
	for i, n := range s.nodes {
		addrs[i] = n + ":19092"
	}
	return strings.Join(addrs, ",")
}

// up starts the Kafka nodes from image and waits until their healthchecks pass.
func (s *composeStack) up(image string) error {
	for i := range s.nodes {
		if err := s.checkPort(i); err != nil {
			return err
		}
	}
	s.env["KAFKA_IMAGE"] = image
	if err := s.compose(append([]string{"up", "--detach"}, s.nodes...)...); err != nil {
		return fmt.Errorf("start Kafka: %w", err)
	}
	for _, n := range s.nodes {
		if err := s.waitHealthy(n, 3*time.Minute); err != nil {
			return err
		}
	}
	fmt.Printf("Kafka is up: host clients use %s, containers %s.\n", s.bootstrap(), s.inside())
	return nil
}

// checkPort fails with one line when node i's host port is taken by
// something other than this project's Kafka.
func (s *composeStack) checkPort(i int) error {
	if id, _ := s.kafkaContainer(s.nodes[i], true); id != "" {
		return nil // ours, already running
	}
	port := s.hostPorts[i]
	l, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		if s.file != "" {
			return fmt.Errorf("port %s on 127.0.0.1 is already in use (another Kafka?): stop that program, or give node %d another port: KAFKA_CLUSTER_PORT_%d=29192 go tool mage cluster:up", port, i+1, i+1)
		}
		return fmt.Errorf("port %s on 127.0.0.1 is already in use (another Kafka?): stop that program, or use another port: KAFKA_HOST_PORT=19092 go tool mage up, then KAFKA_BOOTSTRAP_SERVERS=localhost:19092 for the services", port)
	}
	return l.Close()
}

// kafkaContainer returns the id of the project's container of a Kafka
// service, if any (only a running one when running is set).
func (s *composeStack) kafkaContainer(service string, running bool) (string, error) {
	args := []string{"ps", "--quiet", "--all",
		"--filter", "label=com.docker.compose.project=" + s.project,
		"--filter", "label=com.docker.compose.service=" + service}
	if running {
		args = append(args, "--filter", "status=running")
	}
	out, err := sh.Output("docker", args...)
	if err != nil {
		return "", err
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return "", nil
	}
	return ids[0], nil
}

// waitHealthy polls a Kafka container's health until it is healthy,
// unhealthy, gone, or timeout passed; failures carry its last log lines.
func (s *composeStack) waitHealthy(service string, timeout time.Duration) error {
	id, err := s.kafkaContainer(service, false)
	if err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("no %s container was started", service)
	}
	fmt.Printf("Waiting for %s to be healthy", service)
	defer fmt.Println()
	for deadline := time.Now().Add(timeout); ; {
		out, err := sh.Output("docker", "inspect", "--format", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", id)
		if err != nil {
			return err
		}
		state := strings.Fields(out)
		switch {
		case len(state) == 2 && state[1] == "healthy":
			return nil
		case len(state) > 0 && state[0] != "running" && state[0] != "created":
			return fmt.Errorf("%s container is %s; its last log lines:\n%s", service, state[0], lastLogs(id))
		case time.Now().After(deadline):
			return fmt.Errorf("%s not healthy within %s; its last log lines:\n%s", service, timeout, lastLogs(id))
		}
		fmt.Print(".")
		time.Sleep(time.Second)
	}
}

// labelled lists the ids of the project's containers, volumes or networks.
func (s *composeStack) labelled(kind string) ([]string, error) {
	args := []string{kind, "ls", "--quiet", "--filter", "label=com.docker.compose.project=" + s.project}
	if kind == "container" {
		args = []string{"ps", "--all", "--quiet", "--filter", "label=com.docker.compose.project=" + s.project}
	}
	out, err := sh.Output("docker", args...)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// lastLogs is a container's last lines, from both of its streams.
// (os/exec: sh.Output keeps stdout only.)
func lastLogs(id string) string {
	out, _ := exec.Command("docker", "logs", "--tail", "20", id).CombinedOutput()
	return strings.TrimRight(string(out), "\n")
}

// kafkaImage returns the Kafka image that up, demo, test and bench run:
// KAFKA_IMAGE (environment over .env) when it is on this machine or can be
// pulled; else, when it is the default apache/kafka:<KAFKA_VERSION>, the
// offline image of the same version (image:kafka), reused when current and
// built when not. Any other image that cannot be had is an error. offline
// tells that the registry could not be reached.
func kafkaImage() (image string, offline bool, err error) {
	version, err := repo.Setting("KAFKA_VERSION", "")
	if err != nil {
		return "", false, err
	}
	if image, err = repo.Setting("KAFKA_IMAGE", "apache/kafka:"+version); err != nil {
		return "", false, err
	}
	pullErr := ensureImage(image)
	if pullErr == nil {
		return image, false, nil
	}
	if image != "apache/kafka:"+version {
		return "", true, fmt.Errorf("KAFKA_IMAGE=%s is not on this machine and could not be pulled: %w", image, pullErr)
	}
	fmt.Fprintf(os.Stderr, "Kafka image %s could not be pulled (%v): using the offline build (go tool mage image:kafka).\n", image, pullErr)
	tag, err := builder.Kafka()
	if err != nil {
		return "", true, fmt.Errorf("%s could not be pulled and the offline image could not be built: %w", image, err)
	}
	return tag, true, nil
}

// ensureImage pulls ref unless it is on this machine; the error is the
// pull's last line. (os/exec: sh cannot tee the output it shows.)
func ensureImage(ref string) error {
	// A quiet check: sh would print the miss on stderr.
	if exec.Command("docker", "image", "inspect", ref).Run() == nil {
		return nil
	}
	fmt.Fprintf(os.Stderr, "docker pull %s\n", ref)
	var out bytes.Buffer
	cmd := exec.Command("docker", "pull", ref)
	cmd.Stdout, cmd.Stderr = io.MultiWriter(os.Stderr, &out), io.MultiWriter(os.Stderr, &out)
	if err := cmd.Run(); err != nil {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		return fmt.Errorf("docker pull: %s: %w", lines[len(lines)-1], err)
	}
	return nil
}
