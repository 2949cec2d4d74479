package e2e

import (
	"fmt"

	"github.com/event-driven-go/kafka-go/internal/stack"
)

// repoRoot is the repository, seen from this package's directory (the
// working directory of go test).
const repoRoot = ".."

// repo is the repository, whose .env and compose file the suite reads.
var repo = stack.Repo{Dir: repoRoot}

// settings are the images the suite runs, each from the environment, else
// from the repository's .env: the precedence docker compose applies.
type settings struct {
	kafkaImage    string
	producerImage string
	consumerImage string
	topicsImage   string // the app profile's one-shot service that creates the topics
	// prometheusImage scrapes the services in the observability scenarios.
	prometheusImage string
}

// loadSettings reads the image names the suite runs.
func loadSettings() (settings, error) {
	var s settings
	for _, v := range []struct {
		key string
		to  *string
	}{{"KAFKA_IMAGE", &s.kafkaImage}, {"PRODUCER_IMAGE", &s.producerImage}, {"CONSUMER_IMAGE", &s.consumerImage},
		{"TOPICS_IMAGE", &s.topicsImage},
		{"PROMETHEUS_IMAGE", &s.prometheusImage}} {
		var err error
		if *v.to, err = repo.Setting(v.key, ""); err != nil {
			return settings{}, err
		}
	}
	if s.kafkaImage == "" {
		return settings{}, fmt.Errorf("KAFKA_IMAGE is set neither in the environment nor in %s", repo.DotEnvFile())
	}
	return s, nil
}
