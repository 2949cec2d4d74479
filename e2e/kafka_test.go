package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/event-driven-go/kafka-go/internal/stack"
	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
)

// internalBootstrap is the broker's address for containers on a network
// where it has the alias kafka, as in the compose file.
const internalBootstrap = "kafka:19092"

// readyTopic receives the produce of each readiness round trip.
const readyTopic = "e2e.ready"

// broker is a Kafka container started with the compose file's environment.
type broker struct {
	pool      *dockertest.Pool
	res       *dockertest.Resource
	name      string
	hostPort  int
	bootstrap string // localhost:<hostPort>, for processes on this host
}

// startBroker runs KAFKA_IMAGE with the environment of the compose file's
// kafka service, on a free port of 127.0.0.1 that it also advertises, and
// waits until a produce is acknowledged. The caller must purge the broker
// even when an error is returned (purge accepts a broker that never started).
// autoRemove is false for a broker that is stopped and started again.
func startBroker(pool *dockertest.Pool, image, name string, autoRemove bool) (*broker, error) {
	b := &broker{pool: pool, name: name}
	imageRepo, tag := splitImage(image)
	// Another program may take the free port before Docker binds it.
	for attempt := 1; ; attempt++ {
		ports, err := stack.FreePorts(1)
		if err != nil {
			return b, err
		}
		port := ports[0]
		b.hostPort = port
		b.bootstrap = "localhost:" + strconv.Itoa(port)
		node, err := repo.KafkaNode(map[string]string{"KAFKA_HOST_PORT": strconv.Itoa(port)})
		if err != nil {
			return b, err
		}
		b.res, err = pool.RunWithOptions(&dockertest.RunOptions{
			Name:       name,
			Hostname:   "kafka", // the compose file's controller quorum names it so
			Repository: imageRepo,
			Tag:        tag,
			Env:        node.EnvList(),
			Labels:     runLabels(),
			PortBindings: map[dc.Port][]dc.PortBinding{
				"9092/tcp": {{HostIP: "127.0.0.1", HostPort: strconv.Itoa(port)}},
			},
		}, func(hc *dc.HostConfig) {
			hc.AutoRemove = autoRemove
			hc.PublishAllPorts = false // only what is bound above, on loopback
		})
		if err == nil {
			break
		}
		if attempt < 3 && (strings.Contains(err.Error(), "already allocated") || strings.Contains(err.Error(), "address already in use")) {
			if err := removeContainerNamed(pool, name); err != nil {
				return b, err
			}
			continue
		}
		return b, fmt.Errorf("start %s from %s: %w%s", name, image, err, imageHint(pool, image))
	}
	b.expire()
	return b, b.waitReady()
}

// expire makes Docker stop the broker shortly after the test binary's own
// deadline, in case this process dies before it can purge it.
func (b *broker) expire() {
	_ = b.res.Expire(uint(time.Until(suiteDeadline()).Seconds()) + 60)
}

// waitReady retries a full round trip until it succeeds or pool.MaxWait
// passes; it gives up at once when the container stopped.
func (b *broker) waitReady() error {
	start := time.Now()
	err := b.pool.Retry(func() error {
		c, err := b.pool.Client.InspectContainer(b.res.Container.ID)
		if err != nil {
			return backoff.Permanent(fmt.Errorf("inspect %s: %w", b.name, err))
		}
		if !c.State.Running {
			return backoff.Permanent(fmt.Errorf("%s is %s (exit code %d)", b.name, c.State.Status, c.State.ExitCode))
		}
		return roundTrip(b.bootstrap, b.hostPort)
	})
	if err != nil {
		return fmt.Errorf("kafka %s not ready after %s: %w\nits last log lines:\n%s",
			b.name, time.Since(start).Round(time.Second), err, b.logs(60))
	}
	return nil
}

// roundTrip proves the broker serves clients: metadata advertises the address
// the client reached, and a produce gets its delivery report.
func roundTrip(bootstrap string, port int) error {
	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":        bootstrap,
		"log_level":                0, // connection refused while starting is expected
		"message.timeout.ms":       5000,
		"allow.auto.create.topics": false,
	})
	if err != nil {
		return backoff.Permanent(err)
	}
	defer p.Close()
	md, err := p.GetMetadata(nil, false, 5000)
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	if port != 0 {
		want := net.JoinHostPort("localhost", strconv.Itoa(port))
		var got []string
		for _, br := range md.Brokers {
			got = append(got, net.JoinHostPort(br.Host, strconv.Itoa(br.Port)))
		}
		if len(got) != 1 || got[0] != want {
			return backoff.Permanent(fmt.Errorf("broker advertises %v to host clients; want [%s]", got, want))
		}
	}
	if err := createTopic(p, readyTopic); err != nil {
		return err
	}
	report := make(chan kafka.Event, 1)
	topic := readyTopic
	err = p.Produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
		Value:          []byte("ready"),
	}, report)
	if err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	select {
	case e := <-report:
		if m, ok := e.(*kafka.Message); ok && m.TopicPartition.Error != nil {
			return fmt.Errorf("delivery: %w", m.TopicPartition.Error)
		}
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("no delivery report within 10s")
	}
}

// createTopic creates topic with one partition unless it exists, and waits
// until it has a leader.
func createTopic(p *kafka.Producer, topic string) error {
	admin, err := kafka.NewAdminClientFromProducer(p)
	if err != nil {
		return err
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}})
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	for _, r := range res {
		if c := r.Error.Code(); c != kafka.ErrNoError && c != kafka.ErrTopicAlreadyExists {
			return fmt.Errorf("create topic %s: %w", topic, r.Error)
		}
	}
	for ctx.Err() == nil {
		md, err := p.GetMetadata(&topic, false, 5000)
		if err == nil {
			if t, ok := md.Topics[topic]; ok && t.Error.Code() == kafka.ErrNoError && len(t.Partitions) > 0 && t.Partitions[0].Leader >= 0 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("topic %s has no leader after 10s", topic)
}

// restart stops the broker with sig (SIGTERM: a clean shutdown; SIGKILL: a
// crash), starts it again and waits until it serves clients. It returns how
// long the broker was unavailable.
func (b *broker) restart(sig dc.Signal) (time.Duration, error) {
	start := time.Now()
	id := b.res.Container.ID
	if err := b.pool.Client.KillContainer(dc.KillContainerOptions{ID: id, Signal: sig}); err != nil {
		return 0, fmt.Errorf("signal %s: %w", b.name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := b.pool.Client.WaitContainerWithContext(id, ctx); err != nil {
		return 0, fmt.Errorf("wait for %s to stop: %w", b.name, err)
	}
	if err := b.pool.Client.StartContainer(id, nil); err != nil {
		return 0, fmt.Errorf("start %s again: %w", b.name, err)
	}
	b.expire() // stopping ended the previous expiry
	err := b.waitReady()
	return time.Since(start), err
}

// logs returns the broker's last n log lines ("all" when n is 0).
func (b *broker) logs(n int) string {
	if b.res == nil {
		return ""
	}
	return containerLogs(b.pool, b.res.Container.ID, n)
}

// purge removes the container and its volumes; a broker that never started
// leaves nothing to remove.
func (b *broker) purge() error {
	if b == nil {
		return nil
	}
	if b.res != nil {
		return b.pool.Purge(b.res)
	}
	// RunWithOptions may have created the container before failing to start it.
	return removeContainerNamed(b.pool, b.name)
}

// removeContainerNamed removes this run's container of exactly that name, if any.
func removeContainerNamed(pool *dockertest.Pool, name string) error {
	cs, err := pool.Client.ListContainers(dc.ListContainersOptions{
		All:     true,
		Filters: map[string][]string{"label": {runLabel + "=" + runID}, "name": {name}},
	})
	if err != nil {
		return err
	}
	for _, c := range cs {
		for _, n := range c.Names {
			if strings.TrimPrefix(n, "/") == name {
				return pool.Client.RemoveContainer(dc.RemoveContainerOptions{ID: c.ID, Force: true, RemoveVolumes: true})
			}
		}
	}
	return nil
}

// containerLogs returns the last n lines of a container's output ("all" when n is 0).
func containerLogs(pool *dockertest.Pool, id string, n int) string {
	tail := "all"
	if n > 0 {
		tail = strconv.Itoa(n)
	}
	var out bytes.Buffer
	err := pool.Client.Logs(dc.LogsOptions{
		Container: id, OutputStream: &out, ErrorStream: &out,
		Stdout: true, Stderr: true, Tail: tail,
	})
	if err != nil {
		fmt.Fprintf(&out, "(logs of %s: %v)", id, err)
	}
	return out.String()
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ports, err := stack.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}

// splitImage splits name:tag; the tag defaults to latest. A registry port
// (host:5000/name) is not taken for a tag.
func splitImage(image string) (repo, tag string) {
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return image, "latest"
	}
	return image[:i], image[i+1:]
}

// ensureImage pulls image unless it is on this machine, as RunWithOptions
// does for the containers it creates.
func ensureImage(pool *dockertest.Pool, image string) error {
	if _, err := pool.Client.InspectImage(image); err == nil {
		return nil
	}
	imageRepo, tag := splitImage(image)
	if err := pool.Client.PullImage(dc.PullImageOptions{Repository: imageRepo, Tag: tag}, dc.AuthConfiguration{}); err != nil {
		return fmt.Errorf("pull %s: %w%s", image, err, imageHint(pool, image))
	}
	return nil
}

// imageHint explains a missing image, the usual cause on a machine that
// reaches no registry.
func imageHint(pool *dockertest.Pool, image string) string {
	if _, err := pool.Client.InspectImage(image); err == nil {
		return ""
	}
	return fmt.Sprintf(" (image %s is not on this machine and could not be pulled: build the offline images with `go tool mage image:all` and set KAFKA_IMAGE, PRODUCER_IMAGE, CONSUMER_IMAGE and TOPICS_IMAGE to their tags)", image)
}
