package main

import (
	"fmt"
	"os/exec"
	"strings"
)

// workspaceModules are all modules of go.work, linted and vetted alike.
var workspaceModules = []string{"producer", "consumer", "e2e", "magefiles"}

// Lint checks formatting (gofmt), runs go vet and staticcheck on every module, and actionlint on the GitHub workflows.
func Lint() error {
	out, err := exec.Command("gofmt", append([]string{"-l"}, workspaceModules...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("gofmt: %s: %w", out, err)
	}
	if files := strings.TrimSpace(string(out)); files != "" {
		return fmt.Errorf("gofmt would change these files (run gofmt -w on them):\n%s", files)
	}
	fmt.Println("gofmt: clean")
	for _, m := range workspaceModules {
		if err := goIn(m, "vet", "./..."); err != nil {
			return err
		}
		if err := goIn(m, "tool", "staticcheck", "./..."); err != nil {
			return err
		}
	}
	return runV("", nil, goCmd(), "tool", "actionlint")
}
