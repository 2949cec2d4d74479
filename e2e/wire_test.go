package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// vector is one entry of the shared wire-format test vectors.
type vector struct {
	Name    string      `json:"name"`
	Value   string      `json:"value"`
	Headers [][2]string `json:"headers"`
	Event   struct {
		Timestamp string `json:"timestamp"`
	} `json:"event"`
	Error string `json:"error"` // invalid vectors: text the decoding error contains
}

// headers returns the vector's headers as they are.
func (v vector) headers() []kafka.Header {
	var hs []kafka.Header
	for _, h := range v.Headers {
		hs = append(hs, kafka.Header{Key: h[0], Value: []byte(h[1])})
	}
	return hs
}

// eventHeaders returns the headers of a valid vector with its ce_id, when
// present, replaced by a fresh one of the same kind: seq for a numeric id
// like our producer's, a new UUID for any other. The suite writes a vector
// more than once, as distinct events of one source.
func (v vector) eventHeaders(seq int) []kafka.Header {
	hs := v.headers()
	for i, h := range hs {
		if h.Key != "ce_id" {
			continue
		}
		if _, err := strconv.ParseUint(string(h.Value), 10, 64); err == nil {
			hs[i].Value = []byte(strconv.Itoa(seq))
		} else {
			hs[i].Value = []byte(newID())
		}
	}
	return hs
}

// loadVectors reads testdata/wire/vectors.json of the repository.
func loadVectors(t *testing.T) (valid, invalid []vector) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "wire", "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Valid   []vector `json:"valid"`
		Invalid []vector `json:"invalid"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("vectors.json: %v", err)
	}
	if len(v.Valid) == 0 || len(v.Invalid) == 0 {
		t.Fatal("vectors.json has no valid or no invalid vectors")
	}
	return v.Valid, v.Invalid
}

// bigMessage is the size of the undecodable message that scenario 5 writes:
// near the most a topic takes by default.
const bigMessage = 1_040_000

// Scenario 5: malformed messages between good ones, one of them as big as
// the topic takes. The consumer never stops; each bad message lands in the
// dead-letter topic byte for byte, with its error and origin in headers;
// every good one is handled.
func TestConsumer_badInputGoesToDLQ(t *testing.T) {
	defer teardownOnPanic()
	k := sharedKafka(t, false)
	_, consumerBin := binaries(t)
	topic, group := provision(t, k.bootstrap, name(t, "topic")), name(t, "group")
	dlqTopic := topic + ".dlq"
	valid, invalid := loadVectors(t)

	w := newWriter(t, k.bootstrap)
	c := startService(t, consumerBin, "consumer", consumerArgs(k.bootstrap, topic, group)...)
	c.waitCount(msgPartitionsAsg, 1, time.Minute)

	var good, bad []record
	wantErr := map[position]string{}
	for i, v := range invalid {
		g := valid[i%len(valid)]
		good = append(good, w.write(topic, nil, []byte(g.Value), g.eventHeaders(len(good)+1)))
		// Keys and headers of bad messages must survive the trip as well.
		r := w.write(topic, []byte("bad-"+strconv.Itoa(i)), []byte(v.Value), append(v.headers(),
			kafka.Header{Key: "origin", Value: []byte(v.Name)}))
		bad = append(bad, r)
		wantErr[position{r.Partition, r.Offset}] = v.Error
	}
	// As big as the topic takes (its limit is 1,048,588 bytes a batch): the
	// dead-letter topic must take it too, with the dead-letter headers.
	big := w.write(topic, []byte("big"), bytes.Repeat([]byte("x"), bigMessage), nil)
	bad = append(bad, big)
	wantErr[position{big.Partition, big.Offset}] = "invalid event"
	g := valid[0]
	good = append(good, w.write(topic, nil, []byte(g.Value), g.eventHeaders(len(good)+1)))

	c.waitCount(msgReceived, len(good), time.Minute)
	c.waitCount(msgDeadLettered, len(bad), time.Minute)
	if !c.running() {
		t.Fatal("consumer stopped on bad input")
	}
	c.stop(15 * time.Second)
	if stop, ok := c.last(msgConsumerStop); !ok || stop.DeadLettered == nil || int(*stop.DeadLettered) != len(bad) {
		t.Errorf("final line %+v; want dead_lettered=%d", stop, len(bad))
	}
	for _, l := range c.log() {
		if l.is(msgDeadLettered) && l.Partition != nil && l.Offset != nil {
			want := wantErr[position{*l.Partition, *l.Offset}]
			if !strings.Contains(l.Reason, want) || l.DLQ != dlqTopic {
				t.Errorf("offset %d dead-lettered to %q for %q; want %q for a reason containing %q",
					*l.Offset, l.DLQ, l.Reason, dlqTopic, want)
			}
		}
	}

	dead := readTopic(t, k.bootstrap, dlqTopic)
	checkDeadLetters(t, topic, bad, wantErr, dead)

	f := check(observation{
		direct:    append(slices.Clone(good), bad...),
		consumers: logsOf(c),
		log:       readTopic(t, k.bootstrap, topic),
	})
	f.add("good", len(good))
	f.add("bad", len(bad))
	f.add("in_dlq", len(dead))
	f.add("biggest", bigMessage)
	assertFigures(t, f, limits{})
}

// Scenario 5b: a dead-letter topic that refuses a message is a problem of
// configuration, not of the message: the consumer stops with exit 1 well
// within max.poll.interval.ms, with a line naming the topic and the
// broker's error, and its group has not committed past the message.
func TestConsumer_refusedDeadLetterStops(t *testing.T) {
	defer teardownOnPanic()
	k := sharedKafka(t, false)
	_, consumerBin := binaries(t)
	topic, group := provision(t, k.bootstrap, name(t, "topic")), name(t, "group")
	dlqTopic := topic + ".dlq"
	valid, _ := loadVectors(t)
	const pollInterval = 20 * time.Second

	w := newWriter(t, k.bootstrap)
	c := startService(t, consumerBin, "consumer", consumerArgs(k.bootstrap, topic, group,
		"-X", fmt.Sprintf("max.poll.interval.ms=%d", pollInterval.Milliseconds()),
		// Classic: librdkafka wants its session timeout no longer than the poll interval.
		"--group-protocol", "classic", "-X", "session.timeout.ms=10000")...)
	c.waitCount(msgPartitionsAsg, 1, time.Minute)
	g := valid[0]
	w.write(topic, nil, []byte(g.Value), g.eventHeaders(1))
	c.waitCount(msgReceived, 1, time.Minute)

	// The consumer created the dead-letter topic; now it takes 1 KiB at most.
	err := withAdmin(k.bootstrap, func(a *kafka.AdminClient) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := a.IncrementalAlterConfigs(ctx, []kafka.ConfigResource{{
			Type: kafka.ResourceTopic, Name: dlqTopic,
			Config: []kafka.ConfigEntry{{Name: "max.message.bytes", Value: "1024", IncrementalOperation: kafka.AlterConfigOpTypeSet}},
		}})
		if err == nil && res[0].Error.Code() != kafka.ErrNoError {
			err = res[0].Error
		}
		return err
	})
	if err != nil {
		t.Fatalf("limit %s: %v", dlqTopic, err)
	}
	bad := w.write(topic, []byte("bad"), bytes.Repeat([]byte("x"), 4096), nil)
	written := time.Now()
	code := c.wait(pollInterval)
	exitAfter := time.Since(written)
	if code != 1 {
		t.Errorf("consumer exited with %d; want 1", code)
	}
	stop, _ := c.last(msgConsumerStop)
	if !strings.Contains(stop.Err, strconv.Quote(dlqTopic)) || !strings.Contains(stop.Err, "too large") {
		t.Errorf("final line says %q; want the dead-letter topic %q and the broker's error", stop.Err, dlqTopic)
	}
	committed, err := committedOffsets(k.bootstrap, group, topic)
	if err != nil {
		t.Fatal(err)
	}
	if committed[bad.Partition] > bad.Offset {
		t.Errorf("group committed offset %d, past the message at %d that was never dead-lettered",
			committed[bad.Partition], bad.Offset)
	}
	t.Logf("FIGURE refused dead letter: took=%s exit=%d exit_after=%s committed=%d refused_offset=%d max_poll_interval=%s: %s",
		took(t), code, exitAfter.Round(time.Millisecond), committed[bad.Partition], bad.Offset, pollInterval, stop.Err)
}

// checkDeadLetters compares each dead letter with the message it copies:
// key, value and headers byte for byte, followed by the dead-letter headers.
func checkDeadLetters(t *testing.T, topic string, bad []record, wantErr map[position]string, dead []record) {
	t.Helper()
	if len(dead) != len(bad) {
		t.Errorf("%d messages in the dead-letter topic; want %d", len(dead), len(bad))
	}
	byOffset := map[string]record{}
	for _, r := range bad {
		byOffset[strconv.FormatInt(r.Offset, 10)] = r
	}
	for _, d := range dead {
		off, _ := d.header("dlq.offset")
		orig, ok := byOffset[off]
		if !ok {
			t.Errorf("dead letter at offset %d names source offset %q, which is not a bad message", d.Offset, off)
			continue
		}
		delete(byOffset, off)
		what := fmt.Sprintf("dead letter of offset %s", off)
		if !bytes.Equal(d.Key, orig.Key) || !bytes.Equal(d.Value, orig.Value) || (d.Value == nil) != (orig.Value == nil) {
			t.Errorf("%s: key %q value %q; want key %q value %q", what, d.Key, d.Value, orig.Key, orig.Value)
		}
		n := len(orig.Headers)
		if len(d.Headers) < n || !slices.EqualFunc(d.Headers[:n], orig.Headers, func(a, b kafka.Header) bool {
			return a.Key == b.Key && bytes.Equal(a.Value, b.Value)
		}) {
			t.Errorf("%s: headers %v; want the original %v first", what, d.Headers, orig.Headers)
		}
		want := map[string]string{
			"dlq.topic":     topic,
			"dlq.partition": strconv.Itoa(int(orig.Partition)),
			"dlq.offset":    off,
		}
		for key, v := range want {
			if got, _ := d.header(key); got != v {
				t.Errorf("%s: header %s = %q; want %q", what, key, got, v)
			}
		}
		wantText := wantErr[position{orig.Partition, orig.Offset}]
		if got, _ := d.header("dlq.error"); !strings.Contains(got, wantText) {
			t.Errorf("%s: dlq.error %q; want it to contain %q", what, got, wantText)
		}
	}
	for off := range byOffset {
		t.Errorf("bad message at offset %s is not in the dead-letter topic", off)
	}
}

// Scenario 6: the tutorial's Python services and ours understand each
// other. Events in the Python producer's formats, written by a plain client
// without headers, are received and printed; events of our producer are
// read by a plain client as the Python consumer reads them.
func TestWire_tutorialFormatsInterop(t *testing.T) {
	defer teardownOnPanic()
	k := sharedKafka(t, false)
	producerBin, consumerBin := binaries(t)
	valid, _ := loadVectors(t)

	t.Run("python producer to our consumer", func(t *testing.T) {
		topic, group := provision(t, k.bootstrap, name(t, "topic")), name(t, "group")
		var cases []vector
		for _, v := range valid {
			if len(v.Headers) == 0 {
				cases = append(cases, v)
			}
		}
		if len(cases) < 2 {
			t.Fatalf("vectors.json has %d header-less valid vectors; want the Python object and string forms", len(cases))
		}
		w := newWriter(t, k.bootstrap)
		var written []record
		for _, v := range cases {
			written = append(written, w.write(topic, nil, []byte(v.Value), nil))
		}
		c := startService(t, consumerBin, "consumer", consumerArgs(k.bootstrap, topic, group,
			"--count", strconv.Itoa(len(cases)))...)
		if code := c.wait(time.Minute); code != 0 {
			t.Errorf("consumer exited with %d; want 0", code)
		}
		var got []logLine
		for _, l := range c.log() {
			if l.is(msgReceived) {
				got = append(got, l)
			}
		}
		if len(got) != len(cases) {
			t.Fatalf("consumer received %d events; want %d", len(got), len(cases))
		}
		for i, v := range cases {
			t.Run(v.Name, func(t *testing.T) {
				l := got[i]
				if want := msgReceived + v.Event.Timestamp; l.Msg != want {
					t.Errorf("consumer printed %q; want %q", l.Msg, want)
				}
				if l.Latency != nil || l.ID != "" {
					t.Errorf("latency %v, id %q for an event without headers; want none", l.Latency, l.ID)
				}
			})
		}
		f := check(observation{direct: written, consumers: logsOf(c), log: readTopic(t, k.bootstrap, topic)})
		assertFigures(t, f, limits{})
	})

	t.Run("our producer to a plain consumer", func(t *testing.T) {
		topic := provision(t, k.bootstrap, name(t, "topic"))
		const n = 3
		p := startService(t, producerBin, "producer", producerArgs(k.bootstrap, topic,
			"--interval", "10ms", "--count", strconv.Itoa(n))...)
		if code := p.wait(time.Minute); code != 0 {
			t.Fatalf("producer exited with %d; want 0", code)
		}
		log := readTopic(t, k.bootstrap, topic)
		if len(log) != n {
			t.Fatalf("%d messages in the topic; want %d", len(log), n)
		}
		traceparent := regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$`)
		// What the Python consumer does: json.loads(value)["timestamp"].
		exact := regexp.MustCompile(`^\{"timestamp":"[0-2][0-9]:[0-5][0-9]:[0-5][0-9]"\}$`)
		for i, r := range log {
			if !exact.Match(r.Value) {
				t.Errorf("value %q; want exactly {\"timestamp\":\"HH:MM:SS\"}", r.Value)
			}
			want := map[string]string{
				"ce_specversion": "1.0",
				"ce_id":          strconv.Itoa(i + 1),
				"content-type":   "application/json",
			}
			for key, v := range want {
				if got, _ := r.header(key); got != v {
					t.Errorf("offset %d: header %s = %q; want %q", r.Offset, key, got, v)
				}
			}
			if len(r.Headers) != 7 {
				t.Errorf("offset %d: %d headers; want the 6 of the CloudEvents binding and traceparent", r.Offset, len(r.Headers))
			}
			if got, _ := r.header("traceparent"); !traceparent.MatchString(got) {
				t.Errorf("offset %d: traceparent %q; want W3C trace context", r.Offset, got)
			}
			for _, key := range []string{"ce_source", "ce_type"} {
				if got, _ := r.header(key); got == "" {
					t.Errorf("offset %d: header %s missing", r.Offset, key)
				}
			}
			ceTime, _ := r.header("ce_time")
			sentAt, err := time.Parse(time.RFC3339Nano, ceTime)
			if err != nil || sentAt.Format(time.TimeOnly) != r.timestamp() {
				t.Errorf("offset %d: ce_time %q does not match the value's timestamp %q", r.Offset, ceTime, r.timestamp())
			}
		}
		f := check(observation{producers: logsOf(p), log: log})
		assertFigures(t, f, limits{})
	})
}
