package main

import (
	"fmt"
	"strings"

	"github.com/magefile/mage/sh"
)

// modules are all modules of go.work, linted and vetted alike.
var modules = []string{"producer", "consumer", "e2e", "magefiles", "bench", "internal"}

// Lint runs gofmt, go vet, staticcheck and actionlint.
//
// gofmt, vet and staticcheck cover every module of go.work; actionlint
// checks the GitHub workflows.
func Lint() error {
	out, err := sh.Output("gofmt", append([]string{"-l"}, modules...)...)
	if err != nil {
		return fmt.Errorf("gofmt: %s: %w", out, err)
	}
	if files := strings.TrimSpace(out); files != "" {
		return fmt.Errorf("gofmt would change these files (run gofmt -w on them):\n%s", files)
	}
	fmt.Println("gofmt: clean")
	for _, m := range modules {
		fmt.Printf("[%s] go vet, staticcheck\n", m)
		if err := sh.RunV(goCmd, "-C", m, "vet", "./..."); err != nil {
			return err
		}
		if err := sh.RunV(goCmd, "-C", m, "tool", "staticcheck", "./..."); err != nil {
			return err
		}
	}
	return sh.RunV(goCmd, "tool", "actionlint")
}
