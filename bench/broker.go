package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/event-driven-go/kafka-go/internal/stack"
	"github.com/event-driven-go/kafka-go/internal/topics"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// bench is one bench run: its broker, binaries, tools and payloads.
type bench struct {
	plan      plan
	setup     setup
	container string // the broker's container name
	bootstrap string
	cl        *kgo.Client
	adm       *kadm.Client
	producer  string // our binaries
	consumer  string
	kafkaBin  string // Kafka's tools from the broker's image
	nonce     string // makes this run's topic and group names unique
	source    string // what our producer puts in ce_source on this host
}

// setup is what a reader of the report needs to know about the run.
type setup struct {
	image, kafka, librdkafka, kcat, java, goVersion string
	network                                         string
	jvmStart                                        string // what one record costs kafka-producer-perf-test
	oursStart, kcatStart                            string // what one event costs our producer and kcat -P
	machine                                         []string
	loadBefore, loadAfter                           string
}

// newBench builds the services, starts the broker and gets Kafka's tools.
// On error the caller still closes what was started.
func newBench(ctx context.Context, p plan) (*bench, error) {
	b := &bench{plan: p, nonce: strconv.FormatInt(time.Now().Unix()%1_000_000, 36)}
	if err := os.MkdirAll(benchDir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s: %w", benchDir, err)
	}
	b.setup.loadBefore = loadAverage()
	var err error
	if b.setup.image, err = repo.Setting("KAFKA_IMAGE", ""); err != nil {
		return nil, err
	}
	if exec.Command("docker", "image", "inspect", b.setup.image).Run() != nil {
		return nil, fmt.Errorf("image %s (KAFKA_IMAGE) is not on this machine: pull it, or build the offline one with go tool mage image:kafka and set KAFKA_IMAGE=kafka-offline:<version>", b.setup.image)
	}
	for _, s := range []struct {
		name string
		path *string
	}{{"producer", &b.producer}, {"consumer", &b.consumer}} {
		*s.path = filepath.Join("build", "bin", s.name)
		fmt.Printf("go build -o %s ./%s\n", *s.path, s.name)
		if err := repo.Build(s.name, *s.path); err != nil {
			return nil, err
		}
	}
	if b.kafkaBin, err = kafkaTools(b.setup.image); err != nil {
		return nil, err
	}
	if err := b.startBroker(ctx); err != nil {
		return b, err
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	b.source = "/producer/" + host + "/0a1b2c3d"
	b.setup.machine = machine()
	b.setup.goVersion = strings.TrimPrefix(runtime.Version(), "go")
	b.setup.java = javaVersion()
	b.setup.kcat = kcatVersion()
	if b.setup.kafka, err = b.kafkaVersion(ctx); err != nil {
		return b, err
	}
	if b.setup.librdkafka, err = b.ourLibrdkafka(ctx); err != nil {
		return b, err
	}
	return b, nil
}

// close removes the broker container (with its anonymous volumes).
func (b *bench) close() {
	if b.cl != nil {
		b.cl.Close()
	}
	if b.container != "" {
		_ = exec.Command("docker", "rm", "--force", "--volumes", b.container).Run()
		fmt.Printf("Removed the bench broker %s.\n", b.container)
	}
}

// startBroker runs the compose file's Kafka node in the host's network
// namespace, its ports moved to free loopback ones, and waits for a
// metadata round trip.
func (b *bench) startBroker(ctx context.Context) error {
	ports, err := stack.FreePorts(1)
	if err != nil {
		return err
	}
	node, err := brokerNode(repo, ports[0])
	if err != nil {
		return err
	}
	b.bootstrap = fmt.Sprintf("localhost:%d", ports[0])
	b.container = fmt.Sprintf("bench-kafka-%d", os.Getpid())
	b.setup.network = fmt.Sprintf("host network namespace: the broker listens on %s, clients connect over loopback (no docker-proxy, bridge or NAT)", b.bootstrap)
	// The compose service's hostname names the node in its own settings.
	args := []string{"run", "--detach", "--name", b.container, "--network", "host", "--add-host", "kafka:127.0.0.1"}
	for _, kv := range slices.Sorted(slices.Values(node.EnvList())) {
		args = append(args, "--env", kv)
	}
	if err := docker(append(args, b.setup.image)...); err != nil {
		return fmt.Errorf("start the bench broker: %w", err)
	}
	if b.cl, err = kgo.NewClient(kgo.SeedBrokers(b.bootstrap)); err != nil {
		return fmt.Errorf("connect to %s: %w", b.bootstrap, err)
	}
	b.adm = kadm.NewClient(b.cl)
	fmt.Print("Waiting for the bench broker")
	defer fmt.Println()
	for deadline := time.Now().Add(2 * time.Minute); ; {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := b.adm.BrokerMetadata(rctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			logs, _ := exec.Command("docker", "logs", "--tail", "20", b.container).CombinedOutput()
			return fmt.Errorf("bench broker not answering at %s within 2 minutes; its last log lines:\n%s", b.bootstrap, logs)
		}
		fmt.Print(".")
		time.Sleep(time.Second)
	}
}

// brokerNode is the compose file's Kafka node on the host network, its
// host listener on hostPort: the broker users run, changed only in where it
// listens.
func brokerNode(r stack.Repo, hostPort int) (stack.Node, error) {
	node, err := r.KafkaNode(map[string]string{"KAFKA_HOST_PORT": fmt.Sprint(hostPort)})
	if err != nil {
		return stack.Node{}, err
	}
	return node.OnHostNetwork()
}

// docker runs a docker command, printing it first.
func docker(args ...string) error {
	fmt.Println("docker " + strings.Join(args, " "))
	cmd := exec.Command("docker", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("docker %s: %w", args[0], err)
	}
	return nil
}

// kafkaTools copies /opt/kafka (scripts, jars, configs) out of image once
// per image, so that the perf tools are those of the broker's own release,
// and returns the folder of their scripts.
func kafkaTools(image string) (string, error) {
	out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", image).Output()
	if err != nil {
		return "", fmt.Errorf("docker image inspect %s: %w", image, err)
	}
	id := strings.TrimSpace(string(out))
	dir := filepath.Join(benchDir, "kafka")
	stamp := dir + ".image"
	if got, err := os.ReadFile(stamp); err == nil && string(got) == id && exists(filepath.Join(dir, "bin")) {
		return filepath.Join(dir, "bin"), nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("clear %s: %w", dir, err)
	}
	name := fmt.Sprintf("bench-tools-%d", os.Getpid())
	if err := docker("create", "--name", name, image); err != nil {
		return "", fmt.Errorf("copy Kafka's tools out of %s: %w", image, err)
	}
	defer func() { _ = exec.Command("docker", "rm", "--force", name).Run() }()
	if err := docker("cp", name+":/opt/kafka", dir); err != nil {
		return "", fmt.Errorf("copy Kafka's tools out of %s: %w", image, err)
	}
	if err := os.WriteFile(stamp, []byte(id), 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", stamp, err)
	}
	return filepath.Join(dir, "bin"), nil
}

// createTopic creates a single-partition topic and waits until it has a leader.
func (b *bench) createTopic(ctx context.Context, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := b.adm.CreateTopic(ctx, 1, 1, nil, topic)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	for {
		md, err := b.adm.Metadata(ctx, topic)
		if err == nil {
			if t, ok := md.Topics[topic]; ok && t.Err == nil && len(t.Partitions) == 1 && t.Partitions[0].Leader >= 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("topic %s has no leader: %w", topic, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// createTopics creates topic and topic.dlq, each of one partition, as
// `go tool mage up` does for the services: they create none.
func (b *bench) createTopics(ctx context.Context, topic string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := topics.Ensure(ctx, b.cl, topics.Spec{Topic: topic, Partitions: 1, Replication: 1})
	return err
}

// deleteTopics deletes topics, so that the broker's disk does not fill up
// over a run; a failure only costs disk space, so it is reported, not returned.
func (b *bench) deleteTopics(ctx context.Context, topics ...string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := b.adm.DeleteTopics(ctx, topics...)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		fmt.Printf("  (could not delete %s: %v)\n", strings.Join(topics, ", "), err)
	}
}

// endOffset is the number of messages in partition 0 of topic.
func (b *bench) endOffset(ctx context.Context, topic string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ends, err := b.adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("end offset of %s: %w", topic, err)
	}
	o, ok := ends.Lookup(topic, 0)
	if !ok {
		return 0, fmt.Errorf("end offset of %s: no partition 0", topic)
	}
	return o.Offset, nil
}

// firstValue reads the value of the first message of topic.
func (b *bench) firstValue(ctx context.Context, topic string) ([]byte, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.bootstrap), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", topic, err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		fs := cl.PollRecords(ctx, 1)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read the first message of %s: %w", topic, err)
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return nil, fmt.Errorf("read %s: %w", topic, errs[0].Err)
		}
		if recs := fs.Records(); len(recs) > 0 {
			return recs[0].Value, nil
		}
	}
}

// kafkaVersion asks Kafka's tools, which come from the broker's image.
func (b *bench) kafkaVersion(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(b.kafkaBin, "kafka-consumer-perf-test.sh"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("kafka-consumer-perf-test.sh --version: %w", err)
	}
	return firstLine(out), nil
}

// ourLibrdkafka is the librdkafka version our producer reports when it starts.
func (b *bench) ourLibrdkafka(ctx context.Context) (string, error) {
	topic := "bench-version-" + b.nonce
	if err := b.createTopic(ctx, topic); err != nil {
		return "", err
	}
	defer b.deleteTopics(ctx, topic)
	res, err := runChild(ctx, b.ourProducer(topic, 0, 1, 0, profile{}))
	if err != nil {
		return "", err
	}
	l, err := findJSONLine(res.stdout, "Producer started")
	if err != nil {
		return "", err
	}
	v, _ := l["librdkafka"].(string)
	return v, nil
}

// kcatVersionRe finds the librdkafka version in `kcat -V`.
var kcatVersionRe = regexp.MustCompile(`Version (\S+) .*librdkafka (\S+)`)

func kcatVersion() string {
	out, _ := exec.Command("kcat", "-V").CombinedOutput()
	if m := kcatVersionRe.FindSubmatch(out); m != nil {
		return fmt.Sprintf("kcat %s with librdkafka %s", m[1], m[2])
	}
	return "kcat (version unknown)"
}

func javaVersion() string {
	out, _ := exec.Command("java", "-version").CombinedOutput()
	return firstLine(out)
}

// machine describes the host: CPU, cores, memory, kernel and Docker.
func machine() []string {
	cpu, mem := "unknown", "unknown"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.Atoi(f[1]); err == nil {
					mem = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
				}
			}
		}
	}
	kernel, _ := exec.Command("uname", "-sr").Output()
	dockerV, _ := exec.Command("docker", "version", "--format", "{{.Server.Version}}").Output()
	return []string{
		fmt.Sprintf("CPU: %s, %d logical cores", cpu, runtime.NumCPU()),
		"Memory: " + mem,
		"Kernel: " + firstLine(kernel),
		"Docker Engine: " + firstLine(dockerV),
	}
}

// loadAverage is the 1, 5 and 15 minute load average, from /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// printSetup shows what runs, before the first round.
func (b *bench) printSetup() {
	s := b.setup
	fmt.Printf("\nBench: %s plan, %d warm-up and %d counted rounds per measurement\n", map[bool]string{true: "quick", false: "full"}[b.plan.quick], b.plan.warmup, b.plan.rounds)
	fmt.Printf("Broker: %s from %s; %s\n", s.kafka, s.image, s.network)
	fmt.Printf("Clients: our services (Go %s, librdkafka %s), Kafka %s tools on %s, %s\n", s.goVersion, s.librdkafka, s.kafka, s.java, s.kcat)
	for _, m := range s.machine {
		fmt.Println("Machine: " + m)
	}
	fmt.Printf("Load average before: %s\n", s.loadBefore)
}

// gcPauseRe reads a pause from the broker JVM's GC log (unified logging,
// as kafka-server-start.sh sets it up):
// [2026-11-25T18:22:06.318+0000][gc          ] GC(19) Pause Young (Normal) (G1 Evacuation Pause) 218M->171M(1024M) 28.426ms
// [2026-12-03T16:36:43.369+0000][gc,phases   ] GC(11) Pause Mark End 0.011ms (ZGC)
var gcPauseRe = regexp.MustCompile(`(?m)^\[(\d{4}-\d\d-\d\dT[0-9:.]+[+-]\d{4})\]\[gc(?:,phases)?\s*\] GC\(\d+\) Pause .* ([0-9.]+)ms$`)

// gcPause is one stop-the-world pause of the broker's JVM.
type gcPause struct {
	at time.Time
	d  time.Duration
}

// parseGCPauses returns the pauses of a GC log, in order.
func parseGCPauses(log string) []gcPause {
	var out []gcPause
	for _, m := range gcPauseRe.FindAllStringSubmatch(log, -1) {
		at, err := time.Parse("2006-01-02T15:04:05.000-0700", m[1])
		ms, perr := strconv.ParseFloat(m[2], 64)
		if err != nil || perr != nil {
			continue
		}
		out = append(out, gcPause{at: at, d: time.Duration(ms * float64(time.Millisecond))})
	}
	return out
}

// brokerGC counts the broker's GC pauses that started between from and to,
// and finds the longest; ok is false when the image keeps no GC log there.
func (b *bench) brokerGC(ctx context.Context, from, to time.Time) (count int, longest time.Duration, ok bool) {
	out, err := exec.CommandContext(ctx, "docker", "exec", b.container, "cat", "/opt/kafka/logs/kafkaServer-gc.log").Output()
	if err != nil {
		return 0, 0, false
	}
	for _, p := range parseGCPauses(string(out)) {
		if !p.at.Before(from) && !p.at.After(to) {
			count++
			longest = max(longest, p.d)
		}
	}
	return count, longest, true
}

// exists tells whether path exists.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// firstLine is the first line of a command's output, trimmed.
func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}
