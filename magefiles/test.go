package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/magefile/mage/mg"
	"github.com/magefile/mage/sh"
)

// testTimeout bounds the test binary; CI jobs around it allow more, so that
// a hang ends with the test binary's goroutine dump.
const testTimeout = "30m"

// Test holds the two test commands: test (test:quick), what a newcomer
// runs, and test:full, what CI runs.
type Test mg.Namespace

// Aliases: `go tool mage test` is test:quick.
var Aliases = map[string]any{"test": Test.Quick}

// quickScenarios are the single-broker e2e scenarios that prove the
// tutorial and its guarantees, and the e2e module's own unit tests.
const quickScenarios = "^(TestTimestamps_arriveInOrderWithLatency|TestBroker_restartsLoseNothing|" +
	"TestConsumer_killedLosesNothing|TestProducer_stoppedDeliversEverythingAccepted|TestConsumer_badInputGoesToDLQ|" +
	"TestCheck_|TestStallReport_)"

// Quick (also: test) runs lint, the unit tests and the tutorial's e2e scenarios.
//
// The e2e scenarios run on one broker: the timestamps arrive in order,
// and nothing is lost when the broker restarts, a consumer is killed, the
// producer stops, or bad input comes (it goes to the dead-letter topic).
// About 4.5 minutes once the images are built; test:full runs everything.
// The e2e suite runs KAFKA_IMAGE (pulled when missing; where no registry
// answers, the offline build of image:kafka). Without a Docker engine the
// scenarios are skipped with one line, except under CI=true or
// E2E_REQUIRED=1, where that is a failure.
func (Test) Quick() error {
	mg.SerialDeps(needCgo, Lint)
	env, err := e2eImages(false)
	if err != nil {
		return err
	}
	// One go test for the three modules of go.work, so that their packages run side by side.
	// -p 8: their tests mostly wait on the mock cluster, not the CPU.
	if err := sh.RunV(goCmd, "test", "-count=1", "-p", "8", "./producer/...", "./consumer/...", "./internal/..."); err != nil {
		return err
	}
	return e2e(env, "-run", quickScenarios)
}

// Full runs everything CI runs: the workflow's jobs, then the whole e2e suite.
//
// First the lint and unit jobs of .github/workflows/ci.yml, the way a
// runner runs them (every module alone, unit tests with the race
// detector); then every e2e scenario: the tutorial's, the three-node
// cluster's faults, observability, compose, the Mage targets and the
// images. It runs KAFKA_IMAGE, the service images (built with docker
// compose; offline, with image:apps) and PROMETHEUS_IMAGE (offline with
// image:prometheus). About 13 minutes here.
func (Test) Full() error {
	mg.Deps(needCgo)
	env, err := e2eImages(true)
	if err != nil {
		return err
	}
	// The workflow's jobs first: a lint or unit failure shows before the
	// long e2e suite runs.
	if err := e2e(env, "-run", workflowTests); err != nil {
		return err
	}
	return e2e(env, "-skip", workflowTests)
}

// e2e runs the e2e module's tests selected by args with env.
func e2e(env map[string]string, args ...string) error {
	args = append([]string{"-C", "e2e", "test", "-count=1", "-v", "-timeout=" + testTimeout}, append(args, "./...")...)
	fmt.Printf("go %s  (%v)\n", strings.Join(args, " "), env)
	return sh.RunWithV(env, goCmd, args...)
}

// workflowTests are the e2e module's tests of the GitHub workflow.
const workflowTests = "^TestWorkflow_"

// e2eImages finds or builds the images the e2e suite runs (Kafka's, and
// with all the services' and Prometheus's too) and returns the environment
// that names them. Without Docker it returns none: the suite says what it
// skips.
func e2eImages(all bool) (map[string]string, error) {
	if err := needDocker(); err != nil {
		fmt.Printf("%v: the e2e suite skips the tests that need Docker.\n", err)
		return nil, nil
	}
	kafka, offline, err := kafkaImage()
	if err != nil || !all {
		return map[string]string{"KAFKA_IMAGE": kafka}, err
	}
	apps := []string{os.Getenv("PRODUCER_IMAGE"), os.Getenv("CONSUMER_IMAGE"), os.Getenv("TOPICS_IMAGE")}
	if slices.Contains(apps, "") {
		if apps, err = appImages(offline); err != nil {
			return nil, err
		}
	}
	prometheus, err := prometheusImage()
	if err != nil {
		return nil, err
	}
	return map[string]string{"KAFKA_IMAGE": kafka, "PRODUCER_IMAGE": apps[0], "CONSUMER_IMAGE": apps[1], "TOPICS_IMAGE": apps[2],
		"PROMETHEUS_IMAGE": prometheus}, nil
}

// prometheusImage returns PROMETHEUS_IMAGE (environment over .env) when it
// is on this machine or can be pulled, else the offline build of
// image:prometheus.
func prometheusImage() (string, error) {
	image, err := repo.Setting("PROMETHEUS_IMAGE", "prom/prometheus:v3.5.0")
	if err != nil {
		return "", err
	}
	pullErr := ensureImage(image)
	if pullErr == nil {
		return image, nil
	}
	fmt.Fprintf(os.Stderr, "Prometheus image %s could not be pulled (%v): using the offline build (go tool mage image:prometheus).\n", image, pullErr)
	tag, err := builder.Prometheus()
	if err != nil {
		return "", fmt.Errorf("%s could not be pulled and the offline image could not be built: %w", image, err)
	}
	return tag, nil
}

// appImages builds the images of the app profile (producer, consumer,
// topics) with docker compose, as its users get them, or offline
// (image:apps) when no registry answers.
func appImages(offline bool) ([]string, error) {
	if !offline {
		s, err := newStack()
		if err != nil {
			return nil, err
		}
		err = s.compose("--profile", "app", "build")
		if err == nil {
			var tags []string
			for _, app := range []string{"producer", "consumer", "topics"} {
				// The compose file's defaults, where .env names none.
				tag, err := repo.Setting(strings.ToUpper(app)+"_IMAGE", "event-driven-kafka-go-"+app)
				if err != nil {
					return nil, err
				}
				tags = append(tags, tag)
			}
			return tags, nil
		}
		fmt.Printf("docker compose could not build the service images (%v): building them offline (go tool mage image:apps).\n", err)
	}
	tags, err := builder.Apps()
	if err != nil {
		return nil, fmt.Errorf("build the service images offline: %w", err)
	}
	return tags, nil
}
