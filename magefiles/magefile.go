// Package main holds the project's Mage targets; `go tool mage -l` lists them.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// serviceModules are the two services; each is its own Go module.
var serviceModules = []string{"producer", "consumer"}

// binDir holds the service binaries that run:*, demo and bench build.
const binDir = "build/bin"

// runV runs a command a person could type, in dir (the current directory
// when empty) with extra environment env, printing the command line first
// and its output as it comes.
func runV(dir string, env []string, name string, args ...string) error {
	return runTo(os.Stdout, dir, env, name, args...)
}

// runTo is runV with the command line and output written to w.
func runTo(w io.Writer, dir string, env []string, name string, args ...string) error {
	where := ""
	if dir != "" {
		where = "[" + dir + "] "
	}
	fmt.Fprintf(w, "%s%s %s\n", where, filepath.Base(name), strings.Join(args, " "))
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", filepath.Base(name), subcommand(args), err)
	}
	return nil
}

// goIn runs the go command in a module directory, showing its output.
func goIn(dir string, args ...string) error {
	return runV(dir, nil, goCmd(), args...)
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
		return errors.New("CGO_ENABLED=0: confluent-kafka-go needs cgo; unset it or set CGO_ENABLED=1")
	}
	out, err := exec.Command(goCmd(), "env", "CC").Output()
	if err != nil {
		return fmt.Errorf("go env CC: %w", err)
	}
	cc := strings.Fields(string(out))
	if len(cc) == 0 {
		return errors.New("go env CC is empty: confluent-kafka-go needs a C compiler for cgo")
	}
	if _, err := exec.LookPath(cc[0]); err != nil {
		return fmt.Errorf("no C compiler %q found: confluent-kafka-go needs cgo; install gcc (Debian/Ubuntu: apt-get install gcc; macOS: xcode-select --install)", cc[0])
	}
	return nil
}

// buildService builds a service binary into binDir and returns its path.
func buildService(name string) (string, error) {
	abs, err := filepath.Abs(filepath.Join(binDir, name))
	if err != nil {
		return "", err
	}
	if err := goIn(name, "build", "-o", abs, "."); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	return abs, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
