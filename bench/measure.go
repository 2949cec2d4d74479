package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/event-driven-go/kafka-go/internal/stack"
)

// Metrics of a sample.
const (
	mMsgs  = "msg/s"
	mMB    = "MB/s" // of values, 2^20 bytes
	mCPU   = "CPU µs/msg"
	mOwn   = "own msg/s" // what our services report themselves
	mRate  = "achieved events/s"
	mP50   = "p50 ms"
	mP99   = "p99 ms"
	mP999  = "p99.9 ms"
	mMax   = "max ms"
	mMean  = "mean ms"
	mCount = "events measured"
	mGCs   = "broker GC pauses"
	mGCMax = "longest broker GC pause ms"
)

// Tool names, as the report shows them.
const (
	tOurs         = "ours"
	tOursHTTP     = "ours, --http-addr"
	tProducerPerf = "kafka-producer-perf-test"
	tKcatP        = "kcat -P"
	tKcatPHeaders = "kcat -P + our headers"
	tConsumerPerf = "kafka-consumer-perf-test (fetch)"
	tKcatC        = "kcat -C -e"
	tEndToEnd     = "EndToEndLatency"
)

// sample is one round of one tool: a value per metric.
type sample map[string]float64

// cell is one measurement (say, producer, 1 KiB, throughput profile): the
// counted samples of each tool, tools in the order they ran.
type cell struct {
	kind    string // producer, consumer, latency, one at a time
	size    int    // payload bytes
	profile string
	rate    int // events/s of a steady latency run
	tools   []string
	samples map[string][]sample
}

// contender is one tool of a cell: it runs round r and returns its sample.
type contender struct {
	name string
	run  func(ctx context.Context, round int) (sample, error)
}

// rounds runs the contenders interleaved, A B C A B C ..., the warm-up
// rounds first, and keeps the samples of the counted rounds.
func (b *bench) rounds(ctx context.Context, c *cell, title string, cs []contender) error {
	c.samples = map[string][]sample{}
	total := b.plan.warmup + b.plan.rounds
	for r := range total {
		label := fmt.Sprintf("round %d/%d", r+1, total)
		if r < b.plan.warmup {
			label += " (warm-up)"
		}
		for _, ct := range cs {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s, err := ct.run(ctx, r)
			if err != nil {
				return fmt.Errorf("%s, %s, %s: %w", title, ct.name, label, err)
			}
			fmt.Printf("  %s  %-20s %-34s %s\n", title, label, ct.name, s.brief())
			if r >= b.plan.warmup {
				c.samples[ct.name] = append(c.samples[ct.name], s)
			}
		}
	}
	for _, ct := range cs {
		c.tools = append(c.tools, ct.name)
	}
	return nil
}

// brief is a sample in a few words, for the progress lines.
func (s sample) brief() string {
	var parts []string
	for _, k := range []string{mMsgs, mCPU, mRate, mP50, mP99, mP999, mMean, mGCs, mGCMax} {
		if v, ok := s[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %s", formatMetric(k, v), k))
		}
	}
	return strings.Join(parts, ", ")
}

// topic names a fresh topic of this run.
func (b *bench) topic(parts ...any) string {
	s := make([]string, 0, len(parts)+2)
	s = append(s, "bench")
	for _, p := range parts {
		s = append(s, strings.ReplaceAll(fmt.Sprint(p), " ", "-"))
	}
	return strings.Join(append(s, b.nonce), "-")
}

// props turns profile properties into repeated flags: -X k=v for
// librdkafka clients.
func props(flag string, ps [][2]string) []string {
	var out []string
	for _, p := range ps {
		out = append(out, flag, p[0]+"="+p[1])
	}
	return out
}

// producerThroughput sends the same payloads with our producer,
// kafka-producer-perf-test and kcat -P (plain, and with headers like ours),
// to the last delivery report, for each size and profile.
func (b *bench) producerThroughput(ctx context.Context) ([]*cell, error) {
	fmt.Println("\nProducer throughput")
	var cells []*cell
	now := time.Now()
	if err := b.oneRecordCost(ctx, now); err != nil {
		return nil, err
	}
	for _, size := range b.plan.sizes {
		n := b.plan.producerMessages[size]
		one, lines, err := payloadFiles(size, n, now)
		if err != nil {
			return nil, err
		}
		for _, p := range b.plan.profiles {
			c := &cell{kind: "producer", size: size, profile: p.name}
			title := fmt.Sprintf("producer %d B %s", size, p.name)
			// run wraps one tool's round: a fresh topic, then the check that
			// it holds exactly n messages of the payload's form and size.
			run := func(key string, f func(ctx context.Context, topic string) (sample, error)) func(context.Context, int) (sample, error) {
				return func(ctx context.Context, round int) (sample, error) {
					topic := b.topic("p", size, p.name, key, round)
					if err := b.createTopic(ctx, topic); err != nil {
						return nil, err
					}
					defer b.deleteTopics(ctx, topic)
					s, err := f(ctx, topic)
					if err != nil {
						return nil, err
					}
					return s, b.checkProduced(ctx, topic, n, size)
				}
			}
			ours := func(withHTTP bool) func(ctx context.Context, topic string) (sample, error) {
				return func(ctx context.Context, topic string) (sample, error) {
					res, err := runScraped(ctx, b.ourProducer(topic, 0, n, size, p), withHTTP)
					if err != nil {
						return nil, err
					}
					l, err := findJSONLine(res.stdout, "Producer stopped")
					if err != nil {
						return nil, err
					}
					if d, _ := number(l, "delivered"); int(d) != n {
						return nil, fmt.Errorf("our producer delivered %v of %d events", l["delivered"], n)
					}
					own, _ := number(l, "events_per_s")
					s := throughput(n, size, res.wall, res.cpu)
					s[mOwn] = own
					return s, nil
				}
			}
			err := b.rounds(ctx, c, title, []contender{
				{tOurs, run("ours", ours(false))},
				{tOursHTTP, run("oursh", ours(true))},
				{tProducerPerf, run("perf", func(ctx context.Context, topic string) (sample, error) {
					args := []string{"--bootstrap-server", b.bootstrap, "--topic", topic, "--num-records", strconv.Itoa(n),
						"--throughput", "-1", "--payload-file", one, "--command-property"}
					args = append(args, flatten(append(guaranteeProps(), p.props...))...)
					res, err := runChild(ctx, child{name: filepath.Join(b.kafkaBin, "kafka-producer-perf-test.sh"), args: args})
					if err != nil {
						return nil, err
					}
					sent, perSec, err := parseProducerPerf(res.stdout)
					if err != nil {
						return nil, err
					}
					if sent != int64(n) {
						return nil, fmt.Errorf("kafka-producer-perf-test sent %d of %d records", sent, n)
					}
					s := throughput(n, size, 0, res.cpu)
					s[mMsgs], s[mMB] = perSec, perSec*float64(size)/(1<<20)
					return s, nil
				})},
				{tKcatP, run("kcat", func(ctx context.Context, topic string) (sample, error) {
					res, err := runChild(ctx, b.kcatProducer(topic, p, "-l", lines))
					if err != nil {
						return nil, err
					}
					return throughput(n, size, res.wall, res.cpu), nil
				})},
				{tKcatPHeaders, run("kcath", func(ctx context.Context, topic string) (sample, error) {
					headers := props("-H", b.sampleHeaders(now, n))
					res, err := runChild(ctx, b.kcatProducer(topic, p, append(headers, "-l", lines)...))
					if err != nil {
						return nil, err
					}
					return throughput(n, size, res.wall, res.cpu), nil
				})},
			})
			if err != nil {
				return nil, err
			}
			cells = append(cells, c)
		}
	}
	return cells, nil
}

// oneRecordCost measures what one record costs each producer: for
// kafka-producer-perf-test the JVM's start, class loading and compilation,
// which its CPU per message includes once per round; for ours and kcat the
// start-up and shutdown that their exec-to-exit rates include.
func (b *bench) oneRecordCost(ctx context.Context, at time.Time) error {
	topic := b.topic("one")
	if err := b.createTopic(ctx, topic); err != nil {
		return err
	}
	defer b.deleteTopics(ctx, topic)
	one, lines, err := payloadFiles(100, 1, at)
	if err != nil {
		return err
	}
	cost := func(c child) (string, error) {
		res, err := runChild(ctx, c)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d CPU-ms in %s", res.cpu.Milliseconds(), res.wall.Round(10*time.Millisecond)), nil
	}
	if b.setup.jvmStart, err = cost(child{name: filepath.Join(b.kafkaBin, "kafka-producer-perf-test.sh"), args: []string{
		"--bootstrap-server", b.bootstrap, "--topic", topic, "--num-records", "1", "--throughput", "-1", "--payload-file", one,
		"--command-property", "acks=all"}}); err != nil {
		return err
	}
	if b.setup.oursStart, err = cost(b.ourProducer(topic, 0, 1, 100, profile{})); err != nil {
		return err
	}
	if b.setup.kcatStart, err = cost(b.kcatProducer(topic, profile{}, "-l", lines)); err != nil {
		return err
	}
	fmt.Printf("  one record: kafka-producer-perf-test %s (JVM start-up), ours %s, kcat -P %s\n",
		b.setup.jvmStart, b.setup.oursStart, b.setup.kcatStart)
	return nil
}

// ourProducer is our producer sending n events of size bytes to topic, one
// every interval (0: as fast as it can), with the profile's properties.
func (b *bench) ourProducer(topic string, interval time.Duration, n, size int, p profile) child {
	args := []string{"--bootstrap-servers", b.bootstrap, "--topic", topic, "--interval", interval.String(),
		"--count", strconv.Itoa(n), "--value-size", strconv.Itoa(size), "--log-events=false", "--log-format", "json"}
	return child{name: b.producer, args: append(args, props("-X", p.props)...)}
}

// runScraped runs c; withHTTP, it runs it with --http-addr on a free port
// and scrapes /metrics every second meanwhile, as a demanding Prometheus
// would: what the metrics cost at full speed.
func runScraped(ctx context.Context, c child, withHTTP bool) (childResult, error) {
	if !withHTTP {
		return runChild(ctx, c)
	}
	ports, err := stack.FreePorts(1)
	if err != nil {
		return childResult{}, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	c.args = append(c.args, "--http-addr", addr)
	stop := make(chan struct{})
	var scraping sync.WaitGroup
	scraping.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
	})
	defer scraping.Wait()
	defer close(stop)
	return runChild(ctx, c)
}

// kcatProducer is kcat -P to topic with the guarantees and the profile's
// properties, then extra (headers, the input).
func (b *bench) kcatProducer(topic string, p profile, extra ...string) child {
	args := append([]string{"-P", "-b", b.bootstrap, "-t", topic}, props("-X", guaranteeProps())...)
	args = append(args, props("-X", p.props)...)
	return child{name: "kcat", args: append(args, extra...)}
}

// throughput is the sample of n messages of size bytes in wall time (zero:
// the tool reports its own rate) using cpu.
func throughput(n, size int, wall, cpu time.Duration) sample {
	s := sample{mCPU: float64(cpu.Microseconds()) / float64(n)}
	if wall > 0 {
		s[mMsgs] = float64(n) / wall.Seconds()
		s[mMB] = s[mMsgs] * float64(size) / (1 << 20)
	}
	return s
}

func flatten(ps [][2]string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p[0] + "=" + p[1]
	}
	return out
}

// sampleHeaders are headers of the same names and sizes as those our
// producer sends with event n, for kcat -P -H.
func (b *bench) sampleHeaders(at time.Time, n int) [][2]string {
	return [][2]string{
		{"ce_specversion", "1.0"},
		{"ce_id", strconv.Itoa(n)},
		{"ce_source", b.source},
		{"ce_type", "io.github.event-driven-go.timestamp.v1"},
		{"ce_time", at.Format(time.RFC3339Nano)},
		{"content-type", "application/json"},
		{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"}, // the publish span, not recorded without an exporter
	}
}

// checkProduced checks that topic holds exactly n messages and that the
// first is a payload of our producer's form and of size bytes.
func (b *bench) checkProduced(ctx context.Context, topic string, n, size int) error {
	end, err := b.endOffset(ctx, topic)
	if err != nil {
		return err
	}
	if end != int64(n) {
		return fmt.Errorf("topic %s holds %d messages, want %d", topic, end, n)
	}
	v, err := b.firstValue(ctx, topic)
	if err != nil {
		return err
	}
	if len(v) != size || !payloadFormRe.Match(v) {
		return fmt.Errorf("topic %s: first value is %d bytes, %.40q...; want the event padded to %d", topic, len(v), v, size)
	}
	return nil
}

// consumerThroughput reads one topic our producer filled, per size, with
// our consumer, kafka-consumer-perf-test and kcat -C -e.
func (b *bench) consumerThroughput(ctx context.Context) ([]*cell, error) {
	fmt.Println("\nConsumer throughput")
	var cells []*cell
	for _, size := range b.plan.sizes {
		n := b.plan.consumerMessages[size]
		topic := b.topic("c", size)
		if err := b.createTopics(ctx, topic); err != nil {
			return nil, err
		}
		if _, err := runChild(ctx, b.ourProducer(topic, 0, n, size, throughputProfile())); err != nil {
			return nil, err
		}
		if err := b.checkProduced(ctx, topic, n, size); err != nil {
			return nil, err
		}
		c := &cell{kind: "consumer", size: size}
		title := fmt.Sprintf("consumer %d B", size)
		group := func(tool string, round int) string { return b.topic("g", size, tool, round) }
		ours := func(tool string, withHTTP bool) func(ctx context.Context, round int) (sample, error) {
			return func(ctx context.Context, round int) (sample, error) {
				res, err := runScraped(ctx, child{name: b.consumer, args: []string{"--bootstrap-servers", b.bootstrap, "--topic", topic,
					"--group", group(tool, round), "--count", strconv.Itoa(n), "--log-events=false", "--log-format", "json"}}, withHTTP)
				if err != nil {
					return nil, err
				}
				l, err := findJSONLine(res.stdout, "Consumer stopped")
				if err != nil {
					return nil, err
				}
				if got, _ := number(l, "received"); int(got) != n {
					return nil, fmt.Errorf("our consumer received %v of %d events", l["received"], n)
				}
				rate, err := number(l, "events_per_s")
				if err != nil {
					return nil, err
				}
				s := throughput(n, size, 0, res.cpu)
				s[mMsgs], s[mMB] = rate, rate*float64(size)/(1<<20)
				return s, nil
			}
		}
		err := b.rounds(ctx, c, title, []contender{
			{tOurs, ours("ours", false)},
			{tOursHTTP, ours("oursh", true)},
			{tConsumerPerf, func(ctx context.Context, round int) (sample, error) {
				res, err := runChild(ctx, child{name: filepath.Join(b.kafkaBin, "kafka-consumer-perf-test.sh"), args: []string{
					"--bootstrap-server", b.bootstrap, "--topic", topic, "--num-records", strconv.Itoa(n),
					"--group", group("perf", round), "--timeout", "60000"}})
				if err != nil {
					return nil, err
				}
				cols, err := parseConsumerPerf(res.stdout)
				if err != nil {
					return nil, err
				}
				got, _ := strconv.ParseFloat(cols["data.consumed.in.nMsg"], 64)
				rate, rerr := strconv.ParseFloat(cols["fetch.nMsg.sec"], 64)
				if rerr != nil || int(got) < n {
					return nil, fmt.Errorf("kafka-consumer-perf-test read %s records at %s/s; want %d", cols["data.consumed.in.nMsg"], cols["fetch.nMsg.sec"], n)
				}
				s := throughput(n, size, 0, res.cpu)
				s[mMsgs], s[mMB] = rate, rate*float64(size)/(1<<20)
				return s, nil
			}},
			{tKcatC, func(ctx context.Context, round int) (sample, error) {
				var clock streamClock
				args := []string{"-C", "-b", b.bootstrap, "-t", topic, "-o", "beginning", "-e", "-f", `%o\n`}
				res, err := runChild(ctx, child{name: "kcat", args: args, onChunk: clock.chunk, onLine: clock.line})
				if err != nil {
					return nil, err
				}
				if clock.lines != n {
					return nil, fmt.Errorf("kcat -C read %d messages, want %d", clock.lines, n)
				}
				rate, err := clock.rate()
				if err != nil {
					return nil, err
				}
				s := throughput(n, size, 0, res.cpu)
				s[mMsgs], s[mMB] = rate, rate*float64(size)/(1<<20)
				return s, nil
			}},
		})
		if err != nil {
			return nil, err
		}
		b.deleteTopics(ctx, topic, topic+".dlq")
		cells = append(cells, c)
	}
	return cells, nil
}

// steadyLatency runs our producer at a steady rate and our consumer beside
// it, and reads the consumer's latency percentiles (the first seconds left
// out), per rate and profile; the configurations are interleaved.
func (b *bench) steadyLatency(ctx context.Context) ([]*cell, error) {
	fmt.Println("\nEnd-to-end latency at a steady rate")
	var cells []*cell
	for _, rate := range b.plan.rates {
		for _, p := range b.plan.latencyProfiles {
			cells = append(cells, &cell{kind: "latency", size: b.plan.latencyValueSize, profile: p.name, rate: rate})
		}
	}
	// One cell per configuration, their rounds interleaved: a "tool" here is
	// a configuration, so rounds() runs each in turn.
	all := &cell{}
	var cs []contender
	for _, c := range cells {
		interval := time.Second / time.Duration(c.rate)
		n := int(b.plan.latencyRun / interval)
		p := profileNamed(b.plan.latencyProfiles, c.profile)
		cs = append(cs, contender{fmt.Sprintf("%d/s %s", c.rate, c.profile), func(ctx context.Context, round int) (sample, error) {
			return b.ourLatency(ctx, interval, n, b.plan.latencyDrop, p, round)
		}})
	}
	if err := b.rounds(ctx, all, "latency", cs); err != nil {
		return nil, err
	}
	for i, c := range cells {
		c.tools = []string{tOurs}
		c.samples = map[string][]sample{tOurs: all.samples[cs[i].name]}
	}
	return cells, nil
}

func profileNamed(ps []profile, name string) profile {
	for _, p := range ps {
		if p.name == name {
			return p
		}
	}
	return profile{name: name}
}

// ourLatency runs one round of our consumer and producer: n events, one
// every interval. Each "Received:" line of the consumer carries the
// event's latency (from its ce_time to its handling); the events of the
// first drop are left out.
func (b *bench) ourLatency(ctx context.Context, interval time.Duration, n int, drop time.Duration, p profile, round int) (sample, error) {
	topic := b.topic("l", p.name, interval.Microseconds(), round)
	if err := b.createTopics(ctx, topic); err != nil {
		return nil, err
	}
	defer b.deleteTopics(ctx, topic, topic+".dlq")
	assigned := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	var lat []time.Duration
	cons, err := startChild(ctx, child{name: b.consumer, args: []string{"--bootstrap-servers", b.bootstrap, "--topic", topic,
		"--group", topic, "--count", strconv.Itoa(n), "--log-format", "json"},
		onLine: func(l string, _ time.Time) {
			switch {
			case strings.Contains(l, `"msg":"Partitions assigned"`):
				once.Do(func() { close(assigned) })
			case strings.Contains(l, `"msg":"Received: `):
				var r struct {
					Latency *int64 `json:"latency"` // nanoseconds
				}
				if json.Unmarshal([]byte(l), &r) == nil && r.Latency != nil {
					mu.Lock()
					lat = append(lat, time.Duration(*r.Latency))
					mu.Unlock()
				}
			}
		}})
	if err != nil {
		return nil, err
	}
	type result struct {
		res childResult
		err error
	}
	consDone := make(chan result, 1)
	go func() {
		res, err := cons.wait()
		consDone <- result{res, err}
	}()
	select {
	case <-assigned:
	case r := <-consDone:
		return nil, fmt.Errorf("our consumer stopped before it got its partition: %w", r.err)
	case <-time.After(time.Minute):
		_ = cons.cmd.Cancel()
		r := <-consDone
		return nil, fmt.Errorf("our consumer got no partition within a minute: %v", r.err)
	case <-ctx.Done():
		<-consDone
		return nil, ctx.Err()
	}
	from := time.Now()
	pres, perr := runChild(ctx, b.ourProducer(topic, interval, n, b.plan.latencyValueSize, p))
	var cr result
	select {
	case cr = <-consDone:
	case <-time.After(30 * time.Second): // the producer is done: what has not arrived by now will not
		_ = cons.cmd.Cancel()
		cr = <-consDone
	}
	cres, cerr := cr.res, cr.err
	if perr != nil {
		return nil, perr
	}
	if cerr != nil {
		return nil, cerr
	}
	pl, err := findJSONLine(pres.stdout, "Producer stopped")
	if err != nil {
		return nil, err
	}
	cl, err := findJSONLine(cres.stdout, "Consumer stopped")
	if err != nil {
		return nil, err
	}
	if got, _ := number(cl, "received"); int(got) != n {
		return nil, fmt.Errorf("our consumer received %v of %d events", cl["received"], n)
	}
	s := sample{}
	if s[mRate], err = number(pl, "events_per_s"); err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	if skip := int(drop / interval); skip < len(lat) {
		lat = lat[skip:]
	} else {
		return nil, fmt.Errorf("%d latencies in the consumer's lines, all in the first %s", len(lat), drop)
	}
	addLatencies(s, lat)
	b.addBrokerGC(ctx, s, from.Add(drop), time.Now())
	return s, nil
}

// addBrokerGC adds to s the broker's GC pauses between from and to, when
// its image keeps a GC log: each one stops every request in the broker.
func (b *bench) addBrokerGC(ctx context.Context, s sample, from, to time.Time) {
	if n, longest, ok := b.brokerGC(ctx, from, to); ok {
		s[mGCs], s[mGCMax] = float64(n), float64(longest)/float64(time.Millisecond)
	}
}

// oneAtATime compares our services sending one event at a time (each alone
// on the wire) with Kafka's EndToEndLatency, which sends a message, waits
// for its acknowledgement and polls until it is back.
func (b *bench) oneAtATime(ctx context.Context) (*cell, error) {
	fmt.Println("\nOne event at a time")
	c := &cell{kind: "one at a time", size: b.plan.latencyValueSize, profile: latencyProfile().name}
	n := b.plan.singleEvents
	err := b.rounds(ctx, c, "one at a time", []contender{
		{tOurs, func(ctx context.Context, round int) (sample, error) {
			return b.ourLatency(ctx, b.plan.singleInterval, n, 0, latencyProfile(), round)
		}},
		{tEndToEnd, func(ctx context.Context, round int) (sample, error) {
			topic := b.topic("e", round)
			if err := b.createTopic(ctx, topic); err != nil {
				return nil, err
			}
			defer b.deleteTopics(ctx, topic)
			from := time.Now()
			res, err := runChild(ctx, child{name: filepath.Join(b.kafkaBin, "kafka-e2e-latency.sh"),
				args: []string{b.bootstrap, topic, strconv.Itoa(n), "all", strconv.Itoa(b.plan.latencyValueSize)}})
			if err != nil {
				return nil, err
			}
			avg, p50, p99, p999, err := parseEndToEnd(res.stdout)
			if err != nil {
				return nil, err
			}
			s := sample{mMean: avg, mP50: p50, mP99: p99, mP999: p999, mCount: float64(n)}
			b.addBrokerGC(ctx, s, from, time.Now())
			return s, nil
		}},
	})
	return c, err
}

// addLatencies adds to s the percentiles, maximum, mean and count of lat.
func addLatencies(s sample, lat []time.Duration) {
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	// The nearest rank: the smallest latency at or above which a fraction q lies.
	at := func(q float64) float64 { return ms(lat[max(0, int(math.Ceil(q*float64(len(lat))))-1)]) }
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	s[mP50], s[mP99], s[mP999] = at(0.50), at(0.99), at(0.999)
	s[mMax], s[mMean], s[mCount] = ms(lat[len(lat)-1]), ms(sum)/float64(len(lat)), float64(len(lat))
}
