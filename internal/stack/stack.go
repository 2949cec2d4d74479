// Package stack knows this repository's Docker stack for the tools around the
// services: settings from .env, the compose file's Kafka node, the compose
// command, free ports and the go command. Mage, the e2e suite and the bench
// share it, so that a change to the compose file reaches all three; the
// services never import it.
package stack

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v2"
)

// Repo is the repository, found at its root directory.
type Repo struct{ Dir string }

// DotEnvFile holds the versions and image names shared with docker compose.
func (r Repo) DotEnvFile() string { return filepath.Join(r.Dir, ".env") }

// ComposeFile is the compose file users run.
func (r Repo) ComposeFile() string { return filepath.Join(r.Dir, "docker-compose.yml") }

// ClusterComposeFile is the compose file of the three-node cluster.
func (r Repo) ClusterComposeFile() string { return filepath.Join(r.Dir, "docker-compose.cluster.yml") }

// Setting returns a variable from the environment, else from .env, else
// def: the precedence docker compose applies.
func (r Repo) Setting(key, def string) (string, error) {
	if v := os.Getenv(key); v != "" {
		return v, nil
	}
	vars, err := r.DotEnv()
	if err != nil {
		return "", err
	}
	if v := vars[key]; v != "" {
		return v, nil
	}
	return def, nil
}

// DotEnv parses .env: KEY=VALUE lines; blank lines and # comments are skipped.
func (r Repo) DotEnv() (map[string]string, error) {
	path := r.DotEnvFile()
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

// Compose is the part of the compose file the tools read.
type Compose struct {
	Volumes  map[string]any `yaml:"volumes"`
	Services map[string]struct {
		Ports       []string          `yaml:"ports"`
		Environment map[string]string `yaml:"environment"`
		Healthcheck struct {
			Test []string `yaml:"test"`
		} `yaml:"healthcheck"`
	} `yaml:"services"`
}

// Compose parses the compose file.
func (r Repo) Compose() (Compose, error) { return ReadCompose(r.ComposeFile()) }

// ReadCompose parses a compose file.
func ReadCompose(path string) (Compose, error) {
	var c Compose
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read compose file: %w", err)
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("parse %s: %w", path, err)
	}
	return c, nil
}

// Node is the compose file's kafka service, as the e2e suite and the bench
// start it outside compose: what they prove holds for the broker users run.
type Node struct {
	// Env is the service's environment with ${VAR:-default} resolved.
	Env map[string]string
	// Healthcheck is its healthcheck test, e.g. ["CMD", "/opt/kafka/bin/...", ...].
	Healthcheck []string
	// Ports maps each published container port to the host port, e.g. 9092 -> 9092.
	Ports map[string]string
}

// KafkaNode reads the kafka service of the compose file, resolving
// variables from vars first and then from the defaults the file gives.
func (r Repo) KafkaNode(vars map[string]string) (Node, error) {
	c, err := r.Compose()
	if err != nil {
		return Node{}, err
	}
	svc, ok := c.Services["kafka"]
	if !ok || len(svc.Environment) == 0 {
		return Node{}, fmt.Errorf("%s: no kafka service with an environment", r.ComposeFile())
	}
	n := Node{Env: map[string]string{}, Healthcheck: svc.Healthcheck.Test, Ports: map[string]string{}}
	for name, value := range svc.Environment {
		n.Env[name] = Interpolate(value, vars)
	}
	for _, p := range svc.Ports {
		// [ip:]host:container, as the compose file writes them.
		parts := strings.Split(Interpolate(p, vars), ":")
		if len(parts) < 2 {
			return Node{}, fmt.Errorf("%s: kafka port %q: want [ip:]host:container", r.ComposeFile(), p)
		}
		n.Ports[parts[len(parts)-1]] = parts[len(parts)-2]
	}
	return n, nil
}

// EnvList is the node's environment as the NAME=value list Docker takes.
func (n Node) EnvList() []string {
	out := make([]string, 0, len(n.Env))
	for k, v := range n.Env {
		out = append(out, k+"="+v)
	}
	return out
}

var (
	// listenerPort matches the port of each listener in KAFKA_LISTENERS.
	listenerPort = regexp.MustCompile(`://[^:,]*:(\d+)`)
	// anyPort matches a port wherever a setting names one.
	anyPort = regexp.MustCompile(`:(\d+)\b`)
)

// OnHostNetwork returns the node as it runs in the host's network namespace,
// where its ports are the host's: each port it listens on moves to a free
// one (a published port to the host port it is published on), everywhere
// the environment names it. The caller maps the compose service's hostname
// to 127.0.0.1 in the container (docker run --add-host kafka:127.0.0.1).
// Listeners without an address bind 127.0.0.1.
func (n Node) OnHostNetwork() (Node, error) {
	listeners, ok := n.Env["KAFKA_LISTENERS"]
	if !ok {
		return Node{}, errors.New("the kafka service has no KAFKA_LISTENERS")
	}
	var inside []string // the ports it listens on that are not published
	moved := map[string]string{}
	for _, m := range listenerPort.FindAllStringSubmatch(listeners, -1) {
		if host, ok := n.Ports[m[1]]; ok {
			moved[m[1]] = host
		} else {
			inside = append(inside, m[1])
		}
	}
	for container, host := range n.Ports {
		if _, published := moved[host]; host != container && (published || slices.Contains(inside, host)) {
			return Node{}, fmt.Errorf("host port %s is also a port the node listens on inside its container: pick another", host)
		}
	}
	free, err := FreePorts(len(inside))
	if err != nil {
		return Node{}, err
	}
	for i, p := range inside {
		moved[p] = fmt.Sprint(free[i])
	}
	out := Node{Env: map[string]string{}, Healthcheck: n.Healthcheck, Ports: map[string]string{}}
	for k, v := range n.Env {
		out.Env[k] = anyPort.ReplaceAllStringFunc(v, func(s string) string {
			if to, ok := moved[s[1:]]; ok {
				return ":" + to
			}
			return s
		})
	}
	// Loopback only, as the compose file publishes: a development broker
	// has no authentication.
	out.Env["KAFKA_LISTENERS"] = strings.ReplaceAll(out.Env["KAFKA_LISTENERS"], "://:", "://127.0.0.1:")
	return out, nil
}

// composeVar matches ${NAME}, ${NAME:-default} and ${NAME-default}.
var composeVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}`)

// Interpolate resolves compose variables in s from vars, else their default.
func Interpolate(s string, vars map[string]string) string {
	return composeVar.ReplaceAllStringFunc(s, func(m string) string {
		sub := composeVar.FindStringSubmatch(m)
		if v, ok := vars[sub[1]]; ok {
			return v
		}
		return sub[2]
	})
}

// ComposeCommand is docker compose (v2) when it works, else docker-compose (v1).
func ComposeCommand() ([]string, error) {
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}, nil
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}, nil
	}
	return nil, errors.New("neither docker compose (v2) nor docker-compose (v1) found: install one (Debian/Ubuntu: apt-get install docker-compose)")
}

// FreePorts returns n distinct TCP ports of 127.0.0.1 that were free a
// moment ago; whoever binds them next may find one taken.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// GoCommand is the go command of the running toolchain (GOROOT's), so that
// what the tools build uses the same Go as they do.
func GoCommand() string {
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// Build builds the main package of module (a directory of the repository,
// such as producer) into out with the running toolchain; a failure carries
// the compiler's output.
func (r Repo) Build(module, out string) error {
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	cmd := exec.Command(GoCommand(), "build", "-o", abs, ".")
	cmd.Dir = filepath.Join(r.Dir, module)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", module, err, b)
	}
	return nil
}
