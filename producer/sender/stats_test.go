package sender

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestParseStats(t *testing.T) {
	const broker = `{"name":"localhost:9092/1","nodeid":1,
		"int_latency":{"avg":40,"p50":35,"p99":120,"max":130,"cnt":1000},
		"outbuf_latency":{"avg":5,"p50":4,"p99":9,"max":11,"cnt":20},
		"rtt":{"avg":700,"p50":650,"p99":2100,"max":2500,"cnt":20}}`
	tests := []struct {
		name    string
		doc     string
		want    []string // broker names
		wantErr bool
	}{
		{name: "a broker with traffic", doc: `{"brokers":{"localhost:9092/1":` + broker + `}}`, want: []string{"localhost:9092/1"}},
		{name: "bootstrap and idle brokers are left out", doc: `{"brokers":{
			"localhost:9092/bootstrap":{"name":"localhost:9092/bootstrap","nodeid":-1,"rtt":{"cnt":3}},
			"localhost:9093/2":{"name":"localhost:9093/2","nodeid":2},
			"localhost:9092/1":` + broker + `}}`, want: []string{"localhost:9092/1"}},
		{name: "no brokers", doc: `{"name":"rdkafka#producer-1","brokers":{}}`},
		{name: "not JSON", doc: `{"brokers":`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStats(tt.doc)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			var names []string
			for _, b := range got {
				names = append(names, b.Name)
			}
			if strings.Join(names, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("brokers %v, want %v", names, tt.want)
			}
			if len(got) == 1 && (got[0].IntLatency.P99 != 120 || got[0].RTT.Avg != 700 || got[0].OutbufLatency.Max != 11) {
				t.Errorf("windows not read: %+v", got[0])
			}
		})
	}
}

func TestLogStats_durations(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	logStats(log, `{"brokers":{"b/1":{"name":"b/1","nodeid":1,"int_latency":{"p50":1500,"cnt":1},"rtt":{"p99":250,"cnt":1}}}}`)
	for _, want := range []string{"Kafka statistics", "broker=b/1", "int_latency_p50=" + (1500 * time.Microsecond).String(), "rtt_p99=250µs"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("log %q lacks %q", out.String(), want)
		}
	}
}
