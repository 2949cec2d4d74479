package e2e

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v2"
)

// repoRoot is the repository, seen from this package's directory (the
// working directory of go test).
const repoRoot = ".."

// settings are the images the suite runs, each from the environment, else
// from the repository's .env: the precedence docker compose applies.
type settings struct {
	kafkaImage    string
	producerImage string
	consumerImage string
}

// loadSettings reads the image names the suite runs.
func loadSettings() (settings, error) {
	dotEnv, err := readDotEnv(filepath.Join(repoRoot, ".env"))
	if err != nil {
		return settings{}, err
	}
	get := func(key string) string {
		if v := os.Getenv(key); v != "" {
			return v
		}
		return dotEnv[key]
	}
	s := settings{
		kafkaImage:    get("KAFKA_IMAGE"),
		producerImage: get("PRODUCER_IMAGE"),
		consumerImage: get("CONSUMER_IMAGE"),
	}
	if s.kafkaImage == "" {
		return settings{}, fmt.Errorf("KAFKA_IMAGE is set neither in the environment nor in %s", filepath.Join(repoRoot, ".env"))
	}
	return s, nil
}

// readDotEnv parses KEY=VALUE lines; blank lines and # comments are skipped.
func readDotEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want KEY=VALUE, got %q", path, n, line)
		}
		vars[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return vars, nil
}

// composeKafka is the kafka service of docker-compose.yml: the suite starts
// its brokers with the same environment and healthcheck, so that what it
// proves holds for the broker users run.
type composeKafka struct {
	// Env is the service's environment with ${VAR:-default} resolved.
	Env map[string]string
	// Healthcheck is the healthcheck test, e.g. ["CMD", "/opt/kafka/bin/...", ...].
	Healthcheck []string
}

// composeFile is the part of docker-compose.yml the suite reads.
type composeFile struct {
	Volumes  map[string]any `yaml:"volumes"`
	Services map[string]struct {
		Environment map[string]string `yaml:"environment"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
}

// composePath is the compose file users run.
var composePath = filepath.Join(repoRoot, "docker-compose.yml")

// loadCompose parses the compose file.
func loadCompose() (composeFile, error) {
	var f composeFile
	b, err := os.ReadFile(composePath)
	if err != nil {
		return f, fmt.Errorf("read compose file: %w", err)
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("parse %s: %w", composePath, err)
	}
	return f, nil
}

// loadComposeKafka reads the kafka service of the compose file, resolving
// variables from vars first and then from the defaults the file gives.
func loadComposeKafka(vars map[string]string) (composeKafka, error) {
	f, err := loadCompose()
	if err != nil {
		return composeKafka{}, err
	}
	path := composePath
	svc, ok := f.Services["kafka"]
	if !ok || len(svc.Environment) == 0 {
		return composeKafka{}, fmt.Errorf("%s: no kafka service with an environment", path)
	}
	k := composeKafka{Env: map[string]string{}, Healthcheck: svc.Healthcheck.Test}
	for name, value := range svc.Environment {
		k.Env[name] = interpolate(value, vars)
	}
	return k, nil
}

// composeVar matches ${NAME}, ${NAME:-default} and ${NAME-default}.
var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

// interpolate resolves compose variables in s from vars, else their default.
func interpolate(s string, vars map[string]string) string {
	return composeVar.ReplaceAllStringFunc(s, func(m string) string {
		sub := composeVar.FindStringSubmatch(m)
		if v, ok := vars[sub[1]]; ok {
			return v
		}
		return sub[2]
	})
}

// envList turns a map into the NAME=value list Docker takes.
func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}
