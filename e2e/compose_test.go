package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/event-driven-go/kafka-go/internal/stack"
	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
	"gopkg.in/yaml.v2"
)

// composeProjectLabel is the label docker compose puts on what it creates.
const composeProjectLabel = "com.docker.compose.project"

// Scenario 7: the compose file itself. With the app profile, the consumer
// container receives the producer container's events through the compose
// network, and with the observability profile Prometheus scrapes both;
// `go tool mage clean` then removes every container, network and volume of
// the project, and nothing that is not the project's.
func TestCompose_appProfileThenClean(t *testing.T) {
	defer teardownOnPanic()
	// The suite's own broker runs beside the project: clean must spare it.
	pool := sharedKafka(t, true).pool
	compose, err := stack.ComposeCommand()
	if err != nil {
		t.Fatal(err)
	}
	project := name(t, "project")
	port, promPort := freePort(t), freePort(t)
	env := append(composeEnv(t, project),
		"KAFKA_HOST_PORT="+strconv.Itoa(port),
		"PROMETHEUS_HOST_PORT="+strconv.Itoa(promPort),
		"PROMETHEUS_IMAGE="+suite.settings.prometheusImage,
		"KAFKA_IMAGE="+suite.settings.kafkaImage,
		"PRODUCER_IMAGE="+suite.settings.producerImage,
		"TOPICS_IMAGE="+suite.settings.topicsImage,
		"CONSUMER_IMAGE="+suite.settings.consumerImage,
		"PRODUCER_INTERVAL=200ms",
		"LOG_FORMAT=json",
	)
	run := func(timeout time.Duration, name string, args ...string) (string, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	up := append(compose[1:], "--profile", "app", "--profile", "observability")
	// Whatever happens below, the project goes away with the test.
	t.Cleanup(func() {
		if out, err := run(2*time.Minute, compose[0], append(up, "down", "--volumes", "--remove-orphans")...); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
	})

	// Volumes that are not the project's, one of them named like its volumes.
	canaries := []string{"e2e-canary-" + runID, project + "_canary"}
	for _, v := range canaries {
		if _, err := pool.Client.CreateVolume(dc.CreateVolumeOptions{Name: v, Labels: runLabels()}); err != nil {
			t.Fatalf("create volume %s: %v", v, err)
		}
		t.Cleanup(func() { _ = pool.Client.RemoveVolumeWithOptions(dc.RemoveVolumeOptions{Name: v, Force: true}) })
	}

	if out, err := run(5*time.Minute, compose[0], append(up, "up", "--detach", "--no-build")...); err != nil {
		t.Fatalf("%s up: %v\n%s%s", strings.Join(compose, " "), err, out, imageHint(pool, suite.settings.kafkaImage))
	}
	kafka := projectContainer(t, pool, project, "kafka")
	producer := projectContainer(t, pool, project, "producer")
	consumer := projectContainer(t, pool, project, "consumer")
	if info, err := pool.Client.InspectContainer(kafka); err != nil {
		t.Errorf("inspect the kafka service: %v", err)
	} else if info.State.Health.Status != "healthy" {
		t.Errorf("kafka service health %q; the app services start only once it is healthy", info.State.Health.Status)
	}
	// The one-shot topics service created the topics and exited 0 before
	// the services started: they create none.
	topics := projectContainer(t, pool, project, "topics")
	if info, err := pool.Client.InspectContainer(topics); err != nil {
		t.Errorf("inspect the topics service: %v", err)
	} else if info.State.Running || info.State.ExitCode != 0 {
		var out bytes.Buffer
		_ = pool.Client.Logs(dc.LogsOptions{Container: topics, OutputStream: &out, ErrorStream: &out, Stdout: true, Stderr: true})
		t.Errorf("topics service running %v, exit code %d; want it done with 0:\n%s", info.State.Running, info.State.ExitCode, out.String())
	}
	// The services' images check their own /readyz (their healthcheck
	// subcommand, no curl): the consumer turns healthy once a member of its
	// group, and the producer starts only then; it turns healthy once the
	// topic's leader is reached.
	for svc, id := range map[string]string{"consumer": consumer, "producer": producer} {
		var info *dc.Container
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
			if info, err = pool.Client.InspectContainer(id); err != nil {
				t.Fatalf("inspect the %s service: %v", svc, err)
			}
			if info.State.Health.Status == "healthy" || time.Now().After(deadline) {
				break
			}
		}
		if want := []string{"CMD", "/usr/local/bin/" + svc, "healthcheck"}; info.State.Health.Status != "healthy" ||
			info.Config.Healthcheck == nil || !slices.Equal(info.Config.Healthcheck.Test, want) {
			t.Errorf("%s service health %q with the check %v; want healthy by %v", svc, info.State.Health.Status, info.Config.Healthcheck, want)
		}
	}

	// Prometheus finds both services by their compose names and scrapes them.
	prom := prometheus{addr: "127.0.0.1:" + strconv.Itoa(promPort)}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Second) {
		if code, _ := httpGet(prom.addr, "/-/ready"); code == 200 {
			if n, ok := prom.value(t, `count(up{job=~"producer|consumer"} == 1)`); ok && n == 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			_, targets := httpGet(prom.addr, "/api/v1/targets")
			t.Fatalf("Prometheus of the observability profile does not scrape both services after 1m:\n%.2000s", targets)
		}
	}

	// The consumer receives what the producer sends, over kafka:19092.
	var pLines, cLines []logLine
	deadline := time.Now().Add(2 * time.Minute)
	for {
		pLines, cLines = serviceLogs(t, pool, producer), serviceLogs(t, pool, consumer)
		if _, received := sentAndReceived(pLines, cLines); len(received) >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer container received fewer than 5 events in 2m\nproducer:%s\nconsumer:%s", describe(pLines), describe(cLines))
		}
		time.Sleep(500 * time.Millisecond)
	}
	// A stopped producer accounts for everything it sent; then the whole
	// topic is checked against both containers' output.
	if out, err := run(time.Minute, compose[0], append(up, "stop", "producer")...); err != nil {
		t.Fatalf("compose stop producer: %v\n%s", err, out)
	}
	if info, err := pool.Client.InspectContainer(producer); err != nil {
		t.Errorf("inspect the producer service: %v", err)
	} else if info.State.ExitCode != 0 {
		t.Errorf("producer container exited with %d after SIGTERM; want 0", info.State.ExitCode)
	}
	bootstrap := "localhost:" + strconv.Itoa(port)
	log := readTopic(t, bootstrap, "timestamp")
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		cLines = serviceLogs(t, pool, consumer)
		if _, received := sentAndReceived(nil, cLines); len(received) >= len(log) || time.Now().After(deadline) {
			break
		}
	}
	f := check(observation{
		producers: [][]logLine{serviceLogs(t, pool, producer)},
		consumers: [][]logLine{cLines},
		log:       log,
	})
	f.add("project", project)
	assertFigures(t, f, limits{})

	// Clean, as a user runs it.
	out, err := run(5*time.Minute, stack.GoCommand(), "tool", "mage", "clean")
	if err != nil {
		t.Fatalf("go tool mage clean: %v\n%s", err, out)
	}
	left := projectLeftovers(t, pool, project, canaries)
	if len(left) > 0 {
		t.Errorf("after clean, project %s still has: %s\nclean said:\n%s", project, strings.Join(left, ", "), out)
	}
	for _, v := range canaries {
		if _, err := pool.Client.InspectVolume(v); err != nil {
			t.Errorf("volume %s, not the project's, is gone after clean: %v", v, err)
		}
	}
	if k := suite.kafka; k != nil && k.res != nil {
		if info, err := pool.Client.InspectContainer(k.res.Container.ID); err != nil || !info.State.Running {
			t.Errorf("the suite's own broker %s, not the project's, did not survive clean (%v)", k.name, err)
		}
	}
}

// composeEnv is the environment of a compose project that a test starts,
// through compose or through Mage: the project's name, and an override file
// that gives each of its containers, networks and volumes this run's label,
// so that the suite's teardown removes them even after Ctrl-C.
func composeEnv(t *testing.T, project string) []string {
	t.Helper()
	return composeFileEnv(t, project, repo.ComposeFile())
}

// composeFileEnv is composeEnv for the compose file at path.
func composeFileEnv(t *testing.T, project, path string) []string {
	t.Helper()
	f, err := stack.ReadCompose(path)
	if err != nil {
		t.Fatal(err)
	}
	labelled := map[string]any{"labels": runLabels()}
	override := map[string]map[string]any{
		"services": {}, "volumes": {}, "networks": {"default": labelled},
	}
	for name := range f.Services {
		override["services"][name] = labelled
	}
	for name := range f.Volumes {
		override["volumes"][name] = labelled
	}
	b, err := yaml.Marshal(override)
	if err != nil {
		t.Fatal(err)
	}
	labels := filepath.Join(t.TempDir(), "e2e-labels.yml")
	if err := os.WriteFile(labels, b, 0o644); err != nil {
		t.Fatal(err)
	}
	base, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return []string{"COMPOSE_PROJECT_NAME=" + project, "COMPOSE_FILE=" + base + string(os.PathListSeparator) + labels}
}

// projectContainer returns the id of the container of a service of project.
func projectContainer(t *testing.T, pool *dockertest.Pool, project, service string) string {
	t.Helper()
	cs, err := pool.Client.ListContainers(dc.ListContainersOptions{All: true, Filters: map[string][]string{
		"label": {composeProjectLabel + "=" + project, "com.docker.compose.service=" + service},
	}})
	if err != nil || len(cs) != 1 {
		t.Fatalf("container of service %s in project %s: found %d (%v)", service, project, len(cs), err)
	}
	return cs[0].ID
}

// serviceLogs returns the JSON log lines of a container so far.
func serviceLogs(t *testing.T, pool *dockertest.Pool, id string) []logLine {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := pool.Client.Logs(dc.LogsOptions{Container: id, OutputStream: &out, ErrorStream: &errOut, Stdout: true, Stderr: true}); err != nil {
		t.Fatalf("logs of %s: %v", id, err)
	}
	return parseLogLines(t, &out)
}

// projectLeftovers lists what of project still exists: containers, networks
// and volumes with its compose label or its name prefix, canaries aside.
func projectLeftovers(t *testing.T, pool *dockertest.Pool, project string, canaries []string) []string {
	t.Helper()
	var left []string
	label := composeProjectLabel + "=" + project
	cs, err := pool.Client.ListContainers(dc.ListContainersOptions{All: true, Filters: map[string][]string{"label": {label}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		left = append(left, "container "+strings.Join(c.Names, ","))
	}
	nets, err := pool.Client.ListNetworks()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		if n.Labels[composeProjectLabel] == project || strings.HasPrefix(n.Name, project+"_") {
			left = append(left, "network "+n.Name)
		}
	}
	vols, err := pool.Client.ListVolumes(dc.ListVolumesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vols {
		isCanary := false
		for _, c := range canaries {
			isCanary = isCanary || v.Name == c
		}
		if !isCanary && (v.Labels[composeProjectLabel] == project || strings.HasPrefix(v.Name, project+"_")) {
			left = append(left, "volume "+v.Name)
		}
	}
	return left
}
