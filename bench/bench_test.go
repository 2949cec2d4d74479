package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/event-driven-go/kafka-go/internal/stack"
)

func TestParseProducerPerf(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		records int64
		perSec  float64
		wantErr bool
	}{
		{name: "progress lines, then the summary", out: `Reading payloads from: build/bench/payload-100.json
Number of records read: 1
252163 records sent, 50422.5 records/sec (4.81 MB/sec), 311.3 ms avg latency, 1034.0 ms max latency.
500000 records sent, 69468.565474 records/sec (6.63 MB/sec), 122.25 ms avg latency, 1656.00 ms max latency, 109 ms 50th, 262 ms 95th, 273 ms 99th, 280 ms 99.9th.
`, records: 500000, perSec: 69468.565474},
		{name: "no summary", out: "Exception in thread \"main\"\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			records, perSec, err := parseProducerPerf(tt.out)
			if (err != nil) != tt.wantErr || records != tt.records || perSec != tt.perSec {
				t.Errorf("got %d, %v, %v; want %d, %v, error %v", records, perSec, err, tt.records, tt.perSec, tt.wantErr)
			}
		})
	}
}

func TestParseConsumerPerf(t *testing.T) {
	const header = "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec"
	tests := []struct {
		name    string
		out     string
		want    map[string]string
		wantErr bool
	}{
		{name: "header and values", out: header + "\n2026-11-25 17:04:20:666, 2026-11-25 17:04:22:499, 19.0735, 10.4056, 200001, 109111.2930, 695, 1138, 16.7606, 175747.8032\n",
			want: map[string]string{"data.consumed.in.nMsg": "200001", "fetch.nMsg.sec": "175747.8032", "rebalance.time.ms": "695"}},
		{name: "values missing", out: header + "\n", wantErr: true},
		{name: "columns and values disagree", out: header + "\n1, 2, 3\n", wantErr: true},
		{name: "no result", out: "WARN something\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cols, err := parseConsumerPerf(tt.out)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			for k, v := range tt.want {
				if cols[k] != v {
					t.Errorf("column %s = %q, want %q", k, cols[k], v)
				}
			}
		})
	}
}

func TestParseEndToEnd(t *testing.T) {
	out := "0\t92.841784\nAvg latency: 5.1603 ms\nPercentiles: 50th = 3, 99th = 22, 99.9th = 92\n"
	avg, p50, p99, p999, err := parseEndToEnd(out)
	if err != nil || avg != 5.1603 || p50 != 3 || p99 != 22 || p999 != 92 {
		t.Errorf("got %v %v %v %v %v", avg, p50, p99, p999, err)
	}
	if _, _, _, _, err := parseEndToEnd("0\t92.8\n"); err == nil {
		t.Error("no error for output without a result")
	}
}

func TestKcatVersion(t *testing.T) {
	out := "kcat - Apache Kafka producer and consumer tool\nVersion 1.7.1 (JSON, Transactions, IncrementalAssign, librdkafka 2.0.2 builtin.features=gzip,snappy)\n"
	m := kcatVersionRe.FindStringSubmatch(out)
	if m == nil || m[1] != "1.7.1" || m[2] != "2.0.2" {
		t.Errorf("matched %q", m)
	}
}

func TestStreamClock(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		chunks  []string
		end     string
		want    float64
		wantErr bool
	}{
		// 10 lines before the clock starts, 1,000 more in the half second to the end.
		{name: "rate after the first chunk", chunks: []string{strings.Repeat("1\n", 10), strings.Repeat("2\n", 600), strings.Repeat("3\n", 400)},
			end: "% Reached end of topic bench-c [0] at offset 1010: exiting", want: 2000},
		{name: "no end of topic", chunks: []string{"1\n", "2\n"}, end: "% ERROR: Local: Broker transport failure", wantErr: true},
		{name: "no output", end: "% Reached end of topic bench-c [0] at offset 0: exiting", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c streamClock
			for i, ch := range tt.chunks {
				c.chunk([]byte(ch), t0.Add(time.Duration(i)*time.Millisecond))
			}
			c.line(tt.end, t0.Add(500*time.Millisecond))
			got, err := c.rate()
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("rate %v, %v; want %v, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestSpreadOf(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		want   spread
		ok     bool
	}{
		{name: "none"},
		{name: "one", values: []float64{3}, want: spread{3, 3, 3, 1}, ok: true},
		{name: "odd", values: []float64{5, 1, 4, 2, 3}, want: spread{3, 1, 5, 5}, ok: true},
		{name: "even", values: []float64{4, 1, 3, 2}, want: spread{2.5, 1, 4, 4}, ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ss []sample
			for _, v := range tt.values {
				ss = append(ss, sample{mMsgs: v})
			}
			ss = append(ss, sample{mCPU: 99}) // a sample without the metric does not count
			got, ok := spreadOf(ss, mMsgs)
			if ok != tt.ok || got != tt.want {
				t.Errorf("got %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestFormatting(t *testing.T) {
	tests := []struct {
		metric string
		v      float64
		want   string
	}{
		{mMsgs, 1234567.4, "1,234,567"},
		{mMsgs, 999, "999"},
		{mMsgs, 1000, "1,000"},
		{mCount, 0, "0"},
		{mCPU, 7.456, "7.46"},
		{mMB, 97.66, "97.7"},
		{mP50, 0.8349, "0.83"},
		{mP99, 21.24, "21.2"},
		{mMax, 212.6, "213"},
	}
	for _, tt := range tests {
		if got := formatMetric(tt.metric, tt.v); got != tt.want {
			t.Errorf("formatMetric(%s, %v) = %q, want %q", tt.metric, tt.v, got, tt.want)
		}
	}
	if got := formatSpread(mMsgs, spread{2000, 1000, 3000, 5}, true); got != "2,000 (1,000–3,000)" {
		t.Errorf("formatSpread = %q", got)
	}
	if got := thousands(-1234); got != "-1,234" {
		t.Errorf("thousands(-1234) = %q", got)
	}
}

func TestVerdict(t *testing.T) {
	tests := []struct {
		got, want    float64
		ok, higher   bool
		wantContains string
	}{
		{1.2, 1.0, true, true, "met"},
		{1.0, 1.0, true, true, "met"},
		{0.45, 0.9, true, true, "missed by 50 % (0.45x of the 0.9x wanted)"},
		{0.8, 1.0, true, false, "met"},
		{4.5, 3, true, false, "missed by 50 % (1.50 ms over)"},
		{0, 1, false, true, "not measured"},
	}
	for _, tt := range tests {
		if got := verdict(tt.got, tt.want, tt.ok, tt.higher); !strings.Contains(got, tt.wantContains) {
			t.Errorf("verdict(%v, %v, %v, %v) = %q, want it to contain %q", tt.got, tt.want, tt.ok, tt.higher, got, tt.wantContains)
		}
	}
}

func TestPayload(t *testing.T) {
	at := time.Date(2026, 11, 25, 15, 4, 5, 0, time.UTC)
	for _, size := range []int{24, 25, 100, 1024} {
		p := payload(size, at)
		if len(p) != size || !payloadFormRe.Match(p) || !strings.HasPrefix(string(p), `{"timestamp":"15:04:05"`) {
			t.Errorf("payload(%d) = %d bytes %.40q", size, len(p), p)
		}
	}
	if payloadFormRe.MatchString(`{"timestamp":"15:04:05"  x}`) {
		t.Error("payloadFormRe matches a value that is not our producer's")
	}
}

func TestFindJSONLine(t *testing.T) {
	out := `{"level":"INFO","msg":"Producer started","librdkafka":"2.15.0"}
not json
{"level":"INFO","msg":"Producer stopped","delivered":1}
{"level":"INFO","msg":"Producer stopped","delivered":2}
`
	l, err := findJSONLine(out, "Producer stopped")
	if err != nil {
		t.Fatal(err)
	}
	if n, err := number(l, "delivered"); err != nil || n != 2 {
		t.Errorf("delivered %v, %v; want the last line's 2", n, err)
	}
	if _, err := number(l, "elapsed"); err == nil {
		t.Error("no error for a missing number")
	}
	if _, err := findJSONLine(out, "Consumer stopped"); err == nil {
		t.Error("no error for a missing line")
	}
}

func TestFind(t *testing.T) {
	cells := []*cell{
		{kind: "producer", size: 100, profile: "throughput"},
		{kind: "producer", size: 1024, profile: "throughput"},
		{kind: "latency", size: 100, profile: "latency", rate: 1000},
		{kind: "latency", size: 100, profile: "latency", rate: 10000},
	}
	if c := find(cells, 1024, "throughput", 0); c != cells[1] {
		t.Errorf("found %+v", c)
	}
	if c := find(cells[2:], 0, "latency", 10000); c != cells[3] {
		t.Errorf("found %+v", c)
	}
	if c := find(cells, 1024, "defaults", 0); c != nil {
		t.Errorf("found %+v for a profile that did not run", c)
	}
	// A cell that is not there has no figures: the goals say "not measured".
	if _, ok := (*cell)(nil).figure(tOurs, mMsgs); ok {
		t.Error("a missing cell has a figure")
	}
}

func TestParseGCPauses(t *testing.T) {
	log := `[2026-11-25T18:21:35.326+0000][gc,start    ] GC(13) Pause Young (Normal) (G1 Evacuation Pause)
[2026-11-25T18:21:35.379+0000][gc,heap     ] GC(13) Humongous regions: 144->144
[2026-11-25T18:21:35.379+0000][gc          ] GC(13) Pause Young (Normal) (G1 Evacuation Pause) 216M->169M(1024M) 53.160ms
[2026-11-25T18:21:35.379+0000][gc,cpu      ] GC(13) User=0.02s Sys=0.00s Real=0.05s
[2026-11-25T20:21:36.914+0200][gc          ] GC(14) Pause Remark 216M->169M(1024M) 1.5ms
[2026-12-03T16:36:43.310+0000][gc,phases   ] GC(15) Pause Mark Start 0.006ms
[2026-12-03T16:36:43.310+0000][gc,phases   ] GC(15) Concurrent Mark 12.345ms
`
	got := parseGCPauses(log)
	if len(got) != 3 {
		t.Fatalf("%d pauses, want 3 (two of G1, one of ZGC): %+v", len(got), got)
	}
	if got[2].d != 6*time.Microsecond {
		t.Errorf("ZGC's pause %+v", got[2])
	}
	if got[0].d != 53160*time.Microsecond || !got[0].at.Equal(time.Date(2026, 11, 25, 18, 21, 35, 379e6, time.UTC)) {
		t.Errorf("first pause %+v", got[0])
	}
	if got[1].d != 1500*time.Microsecond || !got[1].at.Equal(time.Date(2026, 11, 25, 18, 21, 36, 914e6, time.UTC)) {
		t.Errorf("second pause %+v (its zone is +0200)", got[1])
	}
}

// The bench broker is the compose file's node: the same settings, but for
// the ports it listens on and the loopback address it binds.
func TestBrokerNode_isTheComposeFiles(t *testing.T) {
	r := stack.Repo{Dir: ".."}
	compose, err := r.KafkaNode(map[string]string{"KAFKA_HOST_PORT": "31234"})
	if err != nil {
		t.Fatal(err)
	}
	bench, err := brokerNode(r, 31234)
	if err != nil {
		t.Fatal(err)
	}
	ports := regexp.MustCompile(`(127\.0\.0\.1)?:\d+`)
	for k, v := range compose.Env {
		got, ok := bench.Env[k]
		if !ok || ports.ReplaceAllString(got, ":N") != ports.ReplaceAllString(v, ":N") {
			t.Errorf("%s = %q on the bench broker; the compose file's is %q", k, got, v)
		}
	}
	if len(bench.Env) != len(compose.Env) {
		t.Errorf("the bench broker has %d settings, the compose file's node %d", len(bench.Env), len(compose.Env))
	}
	if !strings.Contains(bench.Env["KAFKA_LISTENERS"], "127.0.0.1:31234") {
		t.Errorf("KAFKA_LISTENERS = %q; want the host listener on 127.0.0.1:31234", bench.Env["KAFKA_LISTENERS"])
	}
}

func TestAddLatencies(t *testing.T) {
	var lat []time.Duration
	for i := 1000; i >= 1; i-- { // 1 ms to 1,000 ms, in reverse
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	s := sample{}
	addLatencies(s, lat)
	want := sample{mP50: 500, mP99: 990, mP999: 999, mMax: 1000, mMean: 500.5, mCount: 1000}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("%s = %v; want %v", k, s[k], v)
		}
	}
}
