package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// needDocker fails with one line when the docker command is missing or its
// daemon does not answer, before any slow step starts.
func needDocker() error {
	if _, err := exec.LookPath("docker"); err != nil {
		return errors.New("docker not found: install Docker (Debian/Ubuntu: apt-get install docker.io)")
	}
	out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		return fmt.Errorf("docker daemon not answering (start dockerd or Docker Desktop): %s: %w", firstLine(out), err)
	}
	return nil
}

// imageLabel returns the value of label key on the local image ref; ok is
// false when there is no such image or it lacks the label.
func imageLabel(ref, key string) (value string, ok bool) {
	out, err := exec.Command("docker", "image", "inspect", "--format",
		fmt.Sprintf("{{index .Config.Labels %q}}", key), ref).Output()
	if err != nil {
		return "", false
	}
	value = strings.TrimSpace(string(out))
	return value, value != "" && value != "<no value>"
}

// imageID returns the content-addressed id of the local image ref.
func imageID(ref string) (string, error) {
	out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", ref).Output()
	if err != nil {
		return "", fmt.Errorf("docker image inspect %s: %w", ref, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// docker runs a docker command a person could type, printing it first. Its
// output goes to stderr: the image targets keep stdout for the tags they print.
func docker(args ...string) error {
	return runToStderr("", nil, "docker", args...)
}

// pruneDangling removes untagged, unused images that carry label key: those a
// newer build of the same tag replaced, and the build stages of multi-stage
// builds (they inherit the label from the base). Tagged images stay.
func pruneDangling(key string) error {
	return docker("image", "prune", "--force", "--filter", "label="+key)
}

// kafkaImage returns the Kafka image that up, demo and test run: KAFKA_IMAGE
// (environment over .env) when it is on this machine or can be pulled; else,
// unless KAFKA_IMAGE was set in the environment, the offline image
// (image:kafka), reused when current and built when not. offline tells that
// the registry could not be reached.
func kafkaImage() (image string, offline bool, err error) {
	version, err := setting("KAFKA_VERSION", "")
	if err != nil {
		return "", false, err
	}
	image, err = setting("KAFKA_IMAGE", "apache/kafka:"+version)
	if err != nil {
		return "", false, err
	}
	pullErr := ensureImage(image)
	if pullErr == nil {
		return image, false, nil
	}
	if os.Getenv("KAFKA_IMAGE") != "" {
		return "", true, fmt.Errorf("KAFKA_IMAGE=%s is not on this machine and could not be pulled: %w", image, pullErr)
	}
	fmt.Fprintf(os.Stderr, "Kafka image %s could not be pulled (%v): using the offline build (go tool mage image:kafka).\n", image, pullErr)
	tag, err := buildKafkaImage()
	if err != nil {
		return "", true, fmt.Errorf("%s could not be pulled and the offline image could not be built: %w", image, err)
	}
	return tag, true, nil
}

// ensureImage pulls ref unless it is on this machine; the error is the
// pull's last line.
func ensureImage(ref string) error {
	if exec.Command("docker", "image", "inspect", ref).Run() == nil {
		return nil
	}
	fmt.Fprintf(os.Stderr, "docker pull %s\n", ref)
	var out bytes.Buffer
	cmd := exec.Command("docker", "pull", ref)
	cmd.Stdout, cmd.Stderr = io.MultiWriter(os.Stderr, &out), io.MultiWriter(os.Stderr, &out)
	if err := cmd.Run(); err != nil {
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		return fmt.Errorf("docker pull: %s", lines[len(lines)-1])
	}
	return nil
}
