package main

import (
	"os"

	"github.com/magefile/mage/mg"
	"github.com/magefile/mage/sh"
)

// Bench measures the services beside Kafka's perf tools and kcat.
//
// It runs the benchmark program in ./bench against the Kafka image that up
// and test use; BENCH_QUICK=1 passes -quick, a smoke run of under a minute.
// The report is printed and written to build/bench/report.md;
// docs/benchmarks.md explains the method and holds a full run.
func Bench() error {
	mg.Deps(needCgo, needDocker)
	image, _, err := kafkaImage()
	if err != nil {
		return err
	}
	args := []string{"run", "./bench"}
	if q := os.Getenv("BENCH_QUICK"); q != "" && q != "0" {
		args = append(args, "-quick")
	}
	return sh.RunWithV(map[string]string{"KAFKA_IMAGE": image}, goCmd, args...)
}
