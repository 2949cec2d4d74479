package telemetry

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// statistics is the part of librdkafka's statistics (its STATISTICS.md) shown as metrics.
type statistics struct {
	Brokers map[string]struct {
		NodeID      int32  `json:"nodeid"` // -1: a bootstrap or logical entry
		State       string `json:"state"`  // UP while connected
		OutbufCnt   int64  `json:"outbuf_cnt"`
		WaitrespCnt int64  `json:"waitresp_cnt"`
		RTT         struct {
			Avg, P99 float64 // microseconds
		} `json:"rtt"`
	} `json:"brokers"`
	Topics map[string]struct {
		Partitions map[string]struct {
			Partition int32 `json:"partition"`    // -1: the client's internal "unassigned" entry
			Desired   bool  `json:"desired"`      // assigned to this consumer
			FetchqCnt int64 `json:"fetchq_cnt"`   // fetched, not yet handed to the application
			Lag       int64 `json:"consumer_lag"` // last offset minus committed; -1: not known yet
		} `json:"partitions"`
	} `json:"topics"`
}

// ClientStats holds the Kafka client's latest statistics; as a Prometheus collector it turns them into
// gauges at each scrape.
type ClientStats struct {
	mu    sync.Mutex
	last  statistics
	at    time.Time     // when they arrived; zero before the first
	every time.Duration // statistics.interval.ms; 0: none are asked for

	lag, fetchq, up, rttAvg, rttP99, inFlight, queued *prometheus.Desc
}

// NewClientStats returns the collector of statistics that come every every.
func NewClientStats(every time.Duration) *ClientStats {
	broker := []string{"broker"}
	return &ClientStats{every: every,
		lag: prometheus.NewDesc("consumer_lag_messages", "Events in a partition assigned to this consumer after its committed offset: "+
			"what a restart would read again or for the first time.", []string{"topic", "partition"}, nil),
		fetchq:   prometheus.NewDesc("consumer_kafka_fetch_queue_messages", "Events fetched by the Kafka client, not yet handed to the consumer.", nil, nil),
		up:       prometheus.NewDesc("consumer_kafka_broker_up", "1 while the Kafka client is connected to the broker, else 0.", broker, nil),
		rttAvg:   prometheus.NewDesc("consumer_kafka_request_rtt_avg_seconds", "Average time of the requests to the broker in the last statistics interval.", broker, nil),
		rttP99:   prometheus.NewDesc("consumer_kafka_request_rtt_p99_seconds", "99th percentile of the request times to the broker in the last statistics interval.", broker, nil),
		inFlight: prometheus.NewDesc("consumer_kafka_requests_in_flight", "Requests sent to the broker and waiting for its answer.", broker, nil),
		queued:   prometheus.NewDesc("consumer_kafka_requests_queued", "Requests waiting to be sent to the broker.", broker, nil),
	}
}

// Update takes a statistics event's JSON.
func (c *ClientStats) Update(js string, now time.Time) error {
	var s statistics
	if err := json.Unmarshal([]byte(js), &s); err != nil {
		return fmt.Errorf("librdkafka statistics: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last, c.at = s, now
	return nil
}

// BrokerUp tells whether the latest statistics have the client connected to a broker.
func (c *ClientStats) BrokerUp() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.last.Brokers {
		if b.NodeID >= 0 && b.State == "UP" {
			return true
		}
	}
	return false
}

// Describe implements prometheus.Collector.
func (c *ClientStats) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lag, c.fetchq, c.up, c.rttAvg, c.rttP99, c.inFlight, c.queued} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: the gauges of the latest statistics, none before the first nor once
// they stopped coming; lag only of the partitions assigned here whose lag the client knows.
func (c *ClientStats) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at.IsZero() || time.Since(c.at) > 3*c.every { // stale figures would hide that the client is stuck
		return
	}
	var fetchq int64
	for topic, t := range c.last.Topics {
		for _, p := range t.Partitions {
			fetchq += max(p.FetchqCnt, 0)
			if p.Desired && p.Partition >= 0 && p.Lag >= 0 {
				ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(p.Lag), topic, strconv.Itoa(int(p.Partition)))
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(c.fetchq, prometheus.GaugeValue, float64(fetchq))
	for _, b := range c.last.Brokers {
		if b.NodeID < 0 {
			continue
		}
		id, up := strconv.Itoa(int(b.NodeID)), 0.0
		if b.State == "UP" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, id)
		ch <- prometheus.MustNewConstMetric(c.rttAvg, prometheus.GaugeValue, b.RTT.Avg/1e6, id)
		ch <- prometheus.MustNewConstMetric(c.rttP99, prometheus.GaugeValue, b.RTT.P99/1e6, id)
		ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(b.WaitrespCnt), id)
		ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(b.OutbufCnt), id)
	}
}
