package stack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// repo is this repository: the tests read its real .env and compose file.
var repo = Repo{Dir: filepath.Join("..", "..")}

func TestSetting_environmentWinsOverDotEnv(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("# versions\nA=from-file\nB = 'quoted'\n\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := Repo{Dir: dir}
	t.Setenv("A", "from-env")
	tests := []struct{ key, def, want string }{
		{"A", "", "from-env"},
		{"B", "", "quoted"},
		{"C", "default", "default"},
	}
	for _, tt := range tests {
		if got, err := r.Setting(tt.key, tt.def); err != nil || got != tt.want {
			t.Errorf("Setting(%s) = %q, %v; want %q", tt.key, got, err, tt.want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("not a pair\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Setting("C", ""); err == nil || !strings.Contains(err.Error(), ".env:1") {
		t.Errorf("a malformed .env gave %v; want an error naming the line", err)
	}
}

// The Kafka node is the compose file's, with its variables resolved.
func TestKafkaNode_isTheComposeFiles(t *testing.T) {
	n, err := repo.KafkaNode(map[string]string{"KAFKA_HOST_PORT": "31234"})
	if err != nil {
		t.Fatal(err)
	}
	compose, err := repo.Compose()
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range compose.Services["kafka"].Environment {
		if strings.Contains(v, "${") {
			continue
		}
		if n.Env[k] != v {
			t.Errorf("%s = %q; the compose file says %q", k, n.Env[k], v)
		}
	}
	if got := n.Env["KAFKA_ADVERTISED_LISTENERS"]; !strings.Contains(got, "localhost:31234") {
		t.Errorf("KAFKA_ADVERTISED_LISTENERS = %q; want the host port 31234 advertised", got)
	}
	if n.Ports["9092"] != "31234" {
		t.Errorf("ports %v; want container port 9092 published on 31234", n.Ports)
	}
	if len(n.Healthcheck) == 0 {
		t.Error("no healthcheck")
	}
}

// On the host network every listener moves to a free loopback port, the
// published one to its host port, and every setting that names a port
// follows; nothing else changes.
func TestOnHostNetwork_movesEveryPortTogether(t *testing.T) {
	n := Node{
		Env: map[string]string{
			"KAFKA_LISTENERS":                "PLAINTEXT://:19092,PLAINTEXT_HOST://:9092,CONTROLLER://:9093",
			"KAFKA_ADVERTISED_LISTENERS":     "PLAINTEXT://kafka:19092,PLAINTEXT_HOST://localhost:31234",
			"KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka:9093",
			"KAFKA_NODE_ID":                  "1",
		},
		Ports: map[string]string{"9092": "31234"},
	}
	h, err := n.OnHostNetwork()
	if err != nil {
		t.Fatal(err)
	}
	listeners := strings.Split(h.Env["KAFKA_LISTENERS"], ",")
	if len(listeners) != 3 || listeners[1] != "PLAINTEXT_HOST://127.0.0.1:31234" {
		t.Fatalf("listeners %v; want three on loopback, the host one on 31234", listeners)
	}
	internal := strings.TrimPrefix(listeners[0], "PLAINTEXT://127.0.0.1:")
	controller := strings.TrimPrefix(listeners[2], "CONTROLLER://127.0.0.1:")
	if internal == "19092" || controller == "9093" || internal == controller {
		t.Errorf("listeners %v: the container's ports were not moved to distinct free ones", listeners)
	}
	want := map[string]string{
		"KAFKA_ADVERTISED_LISTENERS":     "PLAINTEXT://kafka:" + internal + ",PLAINTEXT_HOST://localhost:31234",
		"KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka:" + controller,
		"KAFKA_NODE_ID":                  "1",
	}
	for k, v := range want {
		if h.Env[k] != v {
			t.Errorf("%s = %q; want %q", k, h.Env[k], v)
		}
	}
}

func TestInterpolate(t *testing.T) {
	vars := map[string]string{"SET": "x"}
	tests := []struct{ in, want string }{
		{"${SET:-d}", "x"},
		{"${UNSET:-d}", "d"},
		{"${UNSET-d}", "d"},
		{"${UNSET}", ""},
		{"a${SET}b", "axb"},
	}
	for _, tt := range tests {
		if got := Interpolate(tt.in, vars); got != tt.want {
			t.Errorf("Interpolate(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

// A host port that the node also listens on inside its container cannot be
// told apart from that listener once both share the host's namespace.
func TestOnHostNetwork_refusesAClashingHostPort(t *testing.T) {
	n := Node{
		Env:   map[string]string{"KAFKA_LISTENERS": "PLAINTEXT://:19092,PLAINTEXT_HOST://:9092"},
		Ports: map[string]string{"9092": "19092"},
	}
	if _, err := n.OnHostNetwork(); err == nil || !strings.Contains(err.Error(), "19092") {
		t.Errorf("got %v; want an error naming port 19092", err)
	}
}
