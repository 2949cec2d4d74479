package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ory/dockertest/v3"
	dc "github.com/ory/dockertest/v3/docker"
)

// runLabel marks every container, network and volume the suite creates. Its
// value is the run's id, so that a run removes its own resources and never
// anyone else's.
const runLabel = "io.github.event-driven-go.e2e.run"

// runID names this run's topics, groups and Docker resources.
var runID = func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// runLabels are the labels of every Docker resource of this run.
func runLabels() map[string]string { return map[string]string{runLabel: runID} }

// suite holds what the tests share. TestMain sets it up and tears it down.
var suite struct {
	start    time.Time
	settings settings
	pool     *dockertest.Pool
	noDocker error // why Docker cannot be used; nil when it answers

	kafkaOnce sync.Once
	kafka     *broker // the shared broker, started by the first test that needs it
	kafkaErr  error

	binOnce   sync.Once
	binDir    string
	producer  string // path of the producer binary
	consumer  string // path of the consumer binary
	binErr    error
	teardowns sync.Once

	runs  sync.Map // *testing.T -> its run of the test under -count (1, 2, ...)
	began sync.Map // *testing.T -> when its scenario began, for the figure line
	seen  sync.Map // test name -> runs so far
}

// TestMain connects to Docker, runs the tests, and removes what they created.
func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

// runSuite runs the tests and removes what they created, whatever their
// outcome; it returns the exit code.
func runSuite(m *testing.M) int {
	flag.Parse()
	suite.start = time.Now()
	allowCoreDumps()
	pool, err := dockertest.NewPool("")
	if err == nil {
		err = pool.Client.Ping()
	}
	if err != nil {
		if dockerRequired() {
			fmt.Fprintf(os.Stderr, "e2e: FAIL: Docker is required here (CI=true or E2E_REQUIRED=1) but does not answer: %v\n", err)
			return 1
		}
		fmt.Printf("e2e: skipping the tests that need Docker: it does not answer (%v); CI=true or E2E_REQUIRED=1 makes this a failure\n", err)
		suite.noDocker = err
		return m.Run()
	}
	pool.MaxWait = 2 * time.Minute
	suite.pool = pool
	if suite.settings, err = loadSettings(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer teardown()
	// Ctrl-C or a kill of `go test` would skip the deferred teardown.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "e2e: %v: removing this run's containers\n", sig)
		teardown()
		os.Exit(1)
	}()

	code := m.Run()
	if code != 0 && suite.kafka != nil && suite.kafka.res != nil {
		logs := suite.kafka.logs(0)
		fmt.Printf("=== logs of the shared Kafka broker %s (last 500 lines)\n%s=== end of Kafka logs\n",
			suite.kafka.name, lastLines(logs, 500))
		if err := os.MkdirAll(diagnosticsDir, 0o755); err == nil {
			_ = os.WriteFile(filepath.Join(diagnosticsDir, "shared-kafka.log"), []byte(logs), 0o644)
		}
	}
	if suite.binDir != "" && keepCores(suite.binDir, suite.producer, suite.consumer) > 0 && code == 0 {
		fmt.Println("e2e: FAIL: a service dumped core")
		code = 1
	}
	return code
}

// dockerRequired tells whether a missing Docker is a failure rather than a skip.
func dockerRequired() bool {
	return os.Getenv("CI") == "true" || os.Getenv("E2E_REQUIRED") == "1"
}

// suiteDeadline is when go test's -timeout ends this process.
func suiteDeadline() time.Time {
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > 0 {
			return suite.start.Add(d)
		}
	}
	return suite.start.Add(time.Hour)
}

// teardown purges the shared broker and then anything else that carries
// this run's label, and removes the built binaries. It runs once.
func teardown() {
	suite.teardowns.Do(func() {
		if err := suite.kafka.purge(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: purge shared broker:", err)
		}
		removeRunResources(suite.pool)
		if suite.binDir != "" {
			_ = os.RemoveAll(suite.binDir)
		}
	})
}

// teardownOnPanic is deferred by every test that uses Docker: a panic ends
// the test binary without running TestMain's deferred teardown.
func teardownOnPanic() {
	if r := recover(); r != nil {
		teardown()
		panic(r)
	}
}

// removeRunResources removes the containers, networks and volumes labelled
// with this run's id that a test's own cleanup did not remove.
func removeRunResources(pool *dockertest.Pool) {
	if pool == nil {
		return
	}
	filter := map[string][]string{"label": {runLabel + "=" + runID}}
	cs, err := pool.Client.ListContainers(dc.ListContainersOptions{All: true, Filters: filter})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: list containers:", err)
	}
	for _, c := range cs {
		if err := pool.Client.RemoveContainer(dc.RemoveContainerOptions{ID: c.ID, Force: true, RemoveVolumes: true}); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: remove container %s: %v\n", c.ID, err)
		}
	}
	nets, err := pool.Client.FilteredListNetworks(dc.NetworkFilterOpts{"label": {runLabel + "=" + runID: true}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: list networks:", err)
	}
	for _, n := range nets {
		if err := pool.Client.RemoveNetwork(n.ID); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: remove network %s: %v\n", n.Name, err)
		}
	}
	vols, err := pool.Client.ListVolumes(dc.ListVolumesOptions{Filters: filter})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: list volumes:", err)
	}
	for _, v := range vols {
		if err := pool.Client.RemoveVolumeWithOptions(dc.RemoveVolumeOptions{Name: v.Name, Force: true}); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: remove volume %s: %v\n", v.Name, err)
		}
	}
}

// needDocker skips t when Docker does not answer (TestMain already failed
// the run if Docker is required), and skips long tests under -short.
func needDocker(t *testing.T, long bool) *dockertest.Pool {
	t.Helper()
	suite.began.LoadOrStore(t, time.Now())
	if long && testing.Short() {
		t.Skip("long scenario: skipped with -short")
	}
	if suite.noDocker != nil {
		t.Skip("needs Docker, which does not answer")
	}
	return suite.pool
}

// sharedKafka returns the broker the tests share, started on first use with
// the compose file's environment.
func sharedKafka(t *testing.T, long bool) *broker {
	t.Helper()
	pool := needDocker(t, long)
	suite.kafkaOnce.Do(func() {
		start := time.Now()
		suite.kafka, suite.kafkaErr = startBroker(pool, suite.settings.kafkaImage, "e2e-kafka-"+runID, true)
		if suite.kafkaErr == nil {
			fmt.Printf("e2e: shared Kafka broker %s (%s) ready at %s after %s\n", suite.kafka.name,
				suite.settings.kafkaImage, suite.kafka.bootstrap, time.Since(start).Round(100*time.Millisecond))
		}
	})
	if suite.kafkaErr != nil {
		t.Fatalf("shared Kafka broker: %v", suite.kafkaErr)
	}
	return suite.kafka
}

// binaries builds the producer and the consumer once per run and returns
// their paths.
func binaries(t *testing.T) (producer, consumer string) {
	t.Helper()
	suite.binOnce.Do(func() {
		suite.binDir, suite.binErr = os.MkdirTemp("", "e2e-bin-")
		if suite.binErr != nil {
			return
		}
		for _, name := range []string{"producer", "consumer"} {
			if suite.binErr = repo.Build(name, filepath.Join(suite.binDir, name)); suite.binErr != nil {
				return
			}
		}
		suite.producer = filepath.Join(suite.binDir, "producer")
		suite.consumer = filepath.Join(suite.binDir, "consumer")
	})
	if suite.binErr != nil {
		t.Fatal(suite.binErr)
	}
	return suite.producer, suite.consumer
}

// name returns a topic, group or container name unique to this run and test.
func name(t *testing.T, what string) string {
	t.Helper()
	suite.began.LoadOrStore(t, time.Now()) // a subtest's scenario begins with its first name
	base := strings.ToLower(t.Name())
	base = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.TrimPrefix(base, "test"))
	base = strings.Trim(base, "-")
	// Under -count=N a test runs N times in one process: each run gets
	// names of its own.
	if n := testRun(t); n > 1 {
		base += "-" + strconv.Itoa(n)
	}
	return fmt.Sprintf("e2e-%s-%s-%s", base, what, runID)
}

// took is how long t's scenario has run, to the second.
func took(t *testing.T) time.Duration {
	if at, ok := suite.began.Load(t); ok {
		return time.Since(at.(time.Time)).Round(time.Second)
	}
	return 0
}

// testRun numbers the runs of one test in this process: 1, 2, ...
func testRun(t *testing.T) int {
	if n, ok := suite.runs.Load(t); ok {
		return n.(int)
	}
	counter, _ := suite.seen.LoadOrStore(t.Name(), new(atomic.Int64))
	n, _ := suite.runs.LoadOrStore(t, int(counter.(*atomic.Int64).Add(1)))
	return n.(int)
}
