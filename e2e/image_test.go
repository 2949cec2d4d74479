package e2e

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	dc "github.com/ory/dockertest/v3/docker"
)

// The Kafka image started with no environment at all is the packaged
// single-node broker advertising localhost:9092: its healthcheck turns
// healthy, it runs as a non-root user, and the producer and consumer images
// use it end to end from inside its network namespace.
func TestKafkaImage_withoutEnv(t *testing.T) {
	defer teardownOnPanic()
	pool := needDocker(t, true)
	image := suite.settings.kafkaImage
	svc, err := repo.KafkaNode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Healthcheck) == 0 {
		t.Fatal("the compose file's kafka service has no healthcheck")
	}
	kafkaName := name(t, "kafka")
	if err := ensureImage(pool, image); err != nil {
		t.Fatal(err)
	}

	// dockertest's RunOptions has no healthcheck: create the container directly.
	started := time.Now()
	c, err := pool.Client.CreateContainer(dc.CreateContainerOptions{
		Name: kafkaName,
		Config: &dc.Config{
			Image:  image,
			Labels: runLabels(),
			Healthcheck: &dc.HealthConfig{
				Test:     svc.Healthcheck,
				Interval: time.Second,
				Timeout:  10 * time.Second,
				Retries:  60,
			},
		},
		HostConfig: &dc.HostConfig{AutoRemove: true},
	})
	t.Cleanup(func() {
		if t.Failed() && c != nil {
			t.Logf("last log lines of %s:\n%s", kafkaName, containerLogs(pool, c.ID, 100))
		}
		if err := removeContainerNamed(pool, kafkaName); err != nil {
			t.Errorf("remove %s: %v", kafkaName, err)
		}
	})
	if err != nil {
		t.Fatalf("create %s from %s: %v", kafkaName, image, err)
	}
	if err := pool.Client.StartContainer(c.ID, nil); err != nil {
		t.Fatalf("start %s: %v", kafkaName, err)
	}
	res, ok := pool.ContainerByName(kafkaName)
	if !ok {
		t.Fatalf("container %s not found after start", kafkaName)
	}
	_ = res.Expire(uint(time.Until(suiteDeadline()).Seconds()) + 60)

	err = pool.Retry(func() error {
		info, err := pool.Client.InspectContainer(c.ID)
		if err != nil {
			return backoff.Permanent(err)
		}
		switch {
		case !info.State.Running:
			return backoff.Permanent(fmt.Errorf("container is %s", info.State.Status))
		case info.State.Health.Status == "unhealthy":
			return backoff.Permanent(errors.New("healthcheck says unhealthy"))
		case info.State.Health.Status != "healthy":
			return fmt.Errorf("health is %q", info.State.Health.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s never turned healthy: %v", kafkaName, err)
	}
	healthyAfter := time.Since(started).Round(100 * time.Millisecond)
	uid := javaUID(t, res)
	if uid == "0" {
		t.Error("the broker runs as root; want a non-root user")
	}

	const n = 5
	network := "container:" + c.ID // the broker's localhost
	topic, group := provisionIn(t, pool, network, "localhost:9092", name(t, "topic")), name(t, "group")
	pLines, pCode := runImage(t, pool, suite.settings.producerImage, name(t, "producer"), network, "--log-format", "json",
		"--bootstrap-servers", "localhost:9092", "--topic", topic, "--interval", "100ms", "--count", fmt.Sprint(n))
	cLines, cCode := runImage(t, pool, suite.settings.consumerImage, name(t, "consumer"), network, "--log-format", "json",
		"--bootstrap-servers", "localhost:9092", "--topic", topic, "--group", group, "--count", fmt.Sprint(n))
	if pCode != 0 || cCode != 0 {
		t.Fatalf("producer exited %d, consumer %d; want 0 and 0\nproducer:%s\nconsumer:%s", pCode, cCode, describe(pLines), describe(cLines))
	}
	sent, received := sentAndReceived(pLines, cLines)
	t.Logf("sent=%d received=%d healthy_after=%s uid=%s", len(sent), len(received), healthyAfter, uid)
	if len(sent) != n || !slices.Equal(sent, received) {
		t.Errorf("sent %v, received %v; want the same %d events", sent, received, n)
	}
}

// The Kafka image started with the compose file's environment (the shared
// broker) serves containers on a Docker network through kafka:19092, as the
// compose file's services use it, and runs as a non-root user.
func TestKafkaImage_withComposeEnv(t *testing.T) {
	defer teardownOnPanic()
	k := sharedKafka(t, true)
	pool := k.pool
	uid := javaUID(t, k.res)
	if uid == "0" {
		t.Error("the broker runs as root; want a non-root user")
	}

	net, err := pool.CreateNetwork(name(t, "net"), func(o *dc.CreateNetworkOptions) { o.Labels = runLabels() })
	if err != nil {
		t.Fatalf("create network: %v", err)
	}
	t.Cleanup(func() {
		_ = pool.Client.DisconnectNetwork(net.Network.ID, dc.NetworkConnectionOptions{Container: k.res.Container.ID, Force: true})
		if err := pool.Client.RemoveNetwork(net.Network.ID); err != nil {
			t.Errorf("remove network %s: %v", net.Network.Name, err)
		}
	})
	err = pool.Client.ConnectNetwork(net.Network.ID, dc.NetworkConnectionOptions{
		Container:      k.res.Container.ID,
		EndpointConfig: &dc.EndpointConfig{Aliases: []string{"kafka"}},
	})
	if err != nil {
		t.Fatalf("connect the broker to %s: %v", net.Network.Name, err)
	}

	topic, group := provisionIn(t, pool, net.Network.Name, internalBootstrap, name(t, "topic")), name(t, "group")
	const n = 5
	pLines, pCode := runImage(t, pool, suite.settings.producerImage, name(t, "producer"), net.Network.Name, "--log-format", "json",
		"--bootstrap-servers", internalBootstrap, "--topic", topic, "--interval", "100ms", "--count", fmt.Sprint(n),
		"--log-level", "debug")
	cLines, cCode := runImage(t, pool, suite.settings.consumerImage, name(t, "consumer"), net.Network.Name, "--log-format", "json",
		"--bootstrap-servers", internalBootstrap, "--topic", topic, "--group", group, "--count", fmt.Sprint(n))
	if pCode != 0 || cCode != 0 {
		t.Fatalf("producer exited %d, consumer %d; want 0 and 0\nproducer:%s\nconsumer:%s", pCode, cCode, describe(pLines), describe(cLines))
	}
	f := check(observation{
		producers: [][]logLine{pLines},
		consumers: [][]logLine{cLines},
		log:       readTopic(t, k.bootstrap, topic),
	})
	f.add("via", internalBootstrap)
	f.add("uid", uid)
	if f.Received != n {
		t.Errorf("consumer received %d events; want %d", f.Received, n)
	}
	assertFigures(t, f, limits{})
}
