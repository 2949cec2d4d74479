package main

import "fmt"

// Test runs every test: unit tests of all modules with the race detector, then the e2e suite against real Kafka.
//
// The e2e suite starts Kafka from KAFKA_IMAGE (env over .env); without a
// Docker engine it is skipped with one line, except under CI=true or
// E2E_REQUIRED=1, where that is a failure.
func Test() error {
	if err := needCgo(); err != nil {
		return err
	}
	for _, dir := range append(serviceModules, "magefiles") {
		if err := goIn(dir, "test", "-race", "-count=1", "./..."); err != nil {
			return fmt.Errorf("unit tests in %s: %w", dir, err)
		}
	}
	if err := goIn("e2e", "test", "-count=1", "-v", "-timeout=30m", "./..."); err != nil {
		return fmt.Errorf("e2e tests: %w", err)
	}
	return nil
}
