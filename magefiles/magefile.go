// Package main holds the project's Mage targets; `go tool mage -l` lists them.
//
// Targets run from the repository root, shell out to the go, docker and mvn
// commands a person would type, and print what they run.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/magefile/mage/sh"
)

// serviceModules are the two services; each is its own Go module.
var serviceModules = []string{"producer", "consumer"}

// Test runs every test: unit tests of all modules with the race detector, then the e2e suite.
func Test() error {
	if err := needCgo(); err != nil {
		return err
	}
	for _, dir := range append(serviceModules, "magefiles") {
		if err := goIn(dir, "test", "-race", "-count=1", "./..."); err != nil {
			return fmt.Errorf("unit tests in %s: %w", dir, err)
		}
	}
	return nil
}

// goIn runs the go command in a module directory, showing its output.
func goIn(dir string, args ...string) error {
	fmt.Printf("[%s] go %s\n", dir, strings.Join(args, " "))
	cmd := exec.Command(goCmd(), args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// goCmd is the go command that runs Mage itself, so targets use the same toolchain.
func goCmd() string {
	if gr := os.Getenv("GOROOT"); gr != "" {
		if p := filepath.Join(gr, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

// needCgo fails with one clear line when no C compiler is available,
// because confluent-kafka-go is a cgo binding to librdkafka.
func needCgo() error {
	if os.Getenv("CGO_ENABLED") == "0" {
		return fmt.Errorf("CGO_ENABLED=0: confluent-kafka-go needs cgo; unset it or set CGO_ENABLED=1")
	}
	cc, err := sh.Output(goCmd(), "env", "CC")
	if err != nil {
		return fmt.Errorf("go env CC: %w", err)
	}
	if _, err := exec.LookPath(cc); err != nil {
		return fmt.Errorf("no C compiler %q found: confluent-kafka-go needs cgo; install gcc (Debian/Ubuntu: apt-get install gcc, macOS: xcode-select --install)", cc)
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
