// Package main holds the project's Mage targets.
package main

// The targets are thin: the stack's settings come from internal/stack, the
// offline images from internal/images, the benchmark from ./bench, and
// commands run through mage/sh unless a comment says why not.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/event-driven-go/kafka-go/internal/stack"
	"github.com/magefile/mage/sh"
)

// repo is the repository: Mage runs its targets from the root.
var repo = stack.Repo{Dir: "."}

// goCmd is the go command that runs Mage itself, so targets use the same toolchain.
var goCmd = stack.GoCommand()

// needCgo fails with one clear line when no C compiler is available,
// because confluent-kafka-go is a cgo binding to librdkafka.
func needCgo() error {
	if os.Getenv("CGO_ENABLED") == "0" {
		return errors.New("CGO_ENABLED=0: confluent-kafka-go needs cgo; unset it or set CGO_ENABLED=1")
	}
	cc, err := sh.Output(goCmd, "env", "CC")
	if err != nil {
		return fmt.Errorf("go env CC: %w", err)
	}
	if cc = strings.TrimSpace(cc); cc == "" {
		return errors.New("go env CC is empty: confluent-kafka-go needs a C compiler for cgo")
	}
	if _, err := exec.LookPath(strings.Fields(cc)[0]); err != nil {
		return fmt.Errorf("no C compiler %q found: confluent-kafka-go needs cgo; install gcc (Debian/Ubuntu: apt-get install gcc; macOS: xcode-select --install)", cc)
	}
	return nil
}

// needDocker fails with one line when the docker command is missing or its
// daemon does not answer, before any slow step starts.
func needDocker() error {
	if _, err := exec.LookPath("docker"); err != nil {
		return errors.New("docker not found: install Docker (Debian/Ubuntu: apt-get install docker.io)")
	}
	// os/exec: the daemon's own words go into the error, not to the terminal.
	out, err := exec.Command("docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	if err != nil {
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return fmt.Errorf("docker daemon not answering (start dockerd or Docker Desktop): %s: %w", line, err)
	}
	return nil
}

// buildService builds a service binary into build/bin and returns its path.
func buildService(name string) (string, error) {
	bin, err := filepath.Abs(filepath.Join("build", "bin", name))
	if err != nil {
		return "", err
	}
	fmt.Printf("go build -o %s ./%s\n", bin, name)
	return bin, repo.Build(name, bin)
}
