package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/magefile/mage/mg"
	"github.com/magefile/mage/sh"
)

// testTimeout bounds the test binary; CI jobs around it allow more, so that
// a hang ends with the test binary's goroutine dump.
const testTimeout = "30m"

// Test runs lint, unit tests and the e2e suite, as CI does.
//
// The e2e suite runs KAFKA_IMAGE (pulled when missing; where no registry
// answers, the offline build of image:kafka), the service images (built
// with docker compose; offline, with image:apps) and PROMETHEUS_IMAGE
// (likewise, offline with image:prometheus). Its workflow test runs the
// lint and unit jobs of .github/workflows/ci.yml the way a runner does.
// Without a Docker engine the tests that need it are skipped with one line,
// except under CI=true or E2E_REQUIRED=1, where that is a failure.
func Test() error {
	mg.Deps(needCgo)
	env, err := e2eImages()
	if err != nil {
		return err
	}
	// The workflow's jobs first: a lint or unit failure shows before the
	// long e2e suite runs.
	for _, part := range [][]string{{"-run", workflowTests}, {"-skip", workflowTests}} {
		args := append([]string{"-C", "e2e", "test", "-count=1", "-v", "-timeout=" + testTimeout}, append(part, "./...")...)
		fmt.Printf("go %s  (%v)\n", strings.Join(args, " "), env)
		if err := sh.RunWithV(env, goCmd, args...); err != nil {
			return err
		}
	}
	return nil
}

// workflowTests are the e2e module's tests of the GitHub workflow.
const workflowTests = "^TestWorkflow_"

// e2eImages finds or builds the images the e2e suite runs and returns the
// environment that names them. Without Docker it returns none: the suite
// says what it skips.
func e2eImages() (map[string]string, error) {
	if err := needDocker(); err != nil {
		fmt.Printf("%v: the e2e suite skips the tests that need Docker.\n", err)
		return nil, nil
	}
	kafka, offline, err := kafkaImage()
	if err != nil {
		return nil, err
	}
	producer, consumer := os.Getenv("PRODUCER_IMAGE"), os.Getenv("CONSUMER_IMAGE")
	if producer == "" || consumer == "" {
		if producer, consumer, err = appImages(offline); err != nil {
			return nil, err
		}
	}
	prometheus, err := prometheusImage()
	if err != nil {
		return nil, err
	}
	return map[string]string{"KAFKA_IMAGE": kafka, "PRODUCER_IMAGE": producer, "CONSUMER_IMAGE": consumer,
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

// appImages builds the service images with docker compose, as users of the
// app profile get them, or offline (image:apps) when no registry answers.
func appImages(offline bool) (producer, consumer string, err error) {
	if !offline {
		s, err := newStack()
		if err != nil {
			return "", "", err
		}
		err = s.compose("--profile", "app", "build")
		if err == nil {
			// The compose file's defaults, where .env names none.
			if producer, err = repo.Setting("PRODUCER_IMAGE", "event-driven-kafka-go-producer"); err != nil {
				return "", "", err
			}
			consumer, err = repo.Setting("CONSUMER_IMAGE", "event-driven-kafka-go-consumer")
			return producer, consumer, err
		}
		fmt.Printf("docker compose could not build the service images (%v): building them offline (go tool mage image:apps).\n", err)
	}
	tags, err := builder.Apps()
	if err != nil {
		return "", "", fmt.Errorf("build the service images offline: %w", err)
	}
	return tags[0], tags[1], nil
}
