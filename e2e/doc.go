// Package e2e tests the producer and the consumer end to end: the real
// binaries against a real Kafka broker in Docker, started with dockertest
// from KAFKA_IMAGE.
//
// Every scenario produces, injects a fault, reads the whole topic back and
// checks what the services said against what Kafka holds: no acknowledged
// event lost, no event twice in the log, none out of order, and redeliveries
// within what at-least-once allows. Each prints its figures on one line,
// with its duration (took=); a failed one keeps its brokers' and services'
// logs in build/e2e/.
//
// `go tool mage test` runs the tutorial's scenarios on one broker;
// `go tool mage test:full` runs them all, or in this directory:
//
//	go test -count=1 -v -timeout 30m ./...
//
// -short skips the long scenarios. Without Docker the tests that need it are
// skipped, unless CI=true or E2E_REQUIRED=1, which turn that into a failure.
// TestWorkflow_registryFreeJobs runs the lint and unit jobs of the GitHub
// workflow the way a runner does; it needs no Docker.
package e2e
