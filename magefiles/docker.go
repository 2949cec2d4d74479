package main

import (
	"errors"
	"fmt"
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
