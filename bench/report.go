package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// report is everything one bench run measured.
type report struct {
	plan       plan
	setup      setup
	took       time.Duration
	producer   []*cell
	consumer   []*cell
	latency    []*cell
	oneAtATime *cell
}

// spread is the median of the counted rounds of one metric, with the
// smallest and the largest value.
type spread struct {
	median, min, max float64
	n                int
}

// spreadOf summarises metric over samples; ok is false when no sample has it.
func spreadOf(ss []sample, metric string) (spread, bool) {
	var v []float64
	for _, s := range ss {
		if x, ok := s[metric]; ok {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return spread{}, false
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return spread{median: m, min: v[0], max: v[len(v)-1], n: len(v)}, true
}

// figure is the median of a tool's metric in c.
func (c *cell) figure(tool, metric string) (spread, bool) {
	if c == nil {
		return spread{}, false
	}
	return spreadOf(c.samples[tool], metric)
}

// formatMetric writes a value the way its metric reads best.
func formatMetric(metric string, v float64) string {
	switch metric {
	case mMsgs, mOwn, mRate, mCount, mGCs:
		return thousands(int64(math.Round(v)))
	case mCPU:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case mMB:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default: // milliseconds
		switch {
		case v < 10:
			return strconv.FormatFloat(v, 'f', 2, 64)
		case v < 100:
			return strconv.FormatFloat(v, 'f', 1, 64)
		}
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

// thousands writes n with commas between groups of three digits.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

// formatSpread is "median (min–max)", or the value alone for one round.
func formatSpread(metric string, s spread, ok bool) string {
	if !ok {
		return "-"
	}
	if s.n == 1 || s.min == s.max {
		return formatMetric(metric, s.median)
	}
	return fmt.Sprintf("%s (%s–%s)", formatMetric(metric, s.median), formatMetric(metric, s.min), formatMetric(metric, s.max))
}

// ratio is ours / baseline of the medians.
func ratio(ours, base spread, ok1, ok2 bool) (float64, bool) {
	if !ok1 || !ok2 || base.median == 0 {
		return 0, false
	}
	return ours.median / base.median, true
}

func formatRatio(r float64, ok bool) string {
	if !ok {
		return "-"
	}
	return strconv.FormatFloat(r, 'f', 2, 64) + "x"
}

// table writes a Markdown table.
func table(w io.Writer, header []string, rows [][]string) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(header, " | "))
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = "---"
	}
	fmt.Fprintf(w, "|%s|\n", strings.Join(sep, "|"))
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
	fmt.Fprintln(w)
}

// sizeName is a payload size as people say it.
func sizeName(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

// throughputTable writes the rows of cells: per cell and metric, each
// tool's figure, then ours divided by each baseline.
func throughputTable(w io.Writer, cells []*cell, withProfile bool) {
	if len(cells) == 0 {
		return
	}
	tools := cells[0].tools
	header := []string{"payload"}
	if withProfile {
		header = append(header, "profile")
	}
	header = append(header, "metric")
	header = append(header, tools...)
	for _, t := range tools[1:] {
		header = append(header, "ours ÷ "+t)
	}
	var rows [][]string
	for _, c := range cells {
		for _, m := range []string{mMsgs, mOwn, mMB, mCPU} {
			if _, ok := c.figure(tOurs, m); m == mOwn && !ok {
				continue // only our producer measures itself
			}
			row := []string{sizeName(c.size)}
			if withProfile {
				row = append(row, c.profile)
			}
			row = append(row, m)
			for _, t := range tools {
				s, ok := c.figure(t, m)
				row = append(row, formatSpread(m, s, ok))
			}
			ours, ok := c.figure(tOurs, m)
			for _, t := range tools[1:] {
				base, bok := c.figure(t, m)
				row = append(row, formatRatio(ratio(ours, base, ok, bok)))
			}
			rows = append(rows, row)
		}
	}
	table(w, header, rows)
}

// write renders the report as Markdown.
func (r *report) write(w io.Writer) {
	s := r.setup
	fmt.Fprintf(w, "## Setup\n\n")
	mode := "full"
	if r.plan.quick {
		mode = "quick (BENCH_QUICK=1: a smoke run, not a measurement)"
	}
	fmt.Fprintf(w, "- Plan: %s; %d warm-up round(s) thrown away, then %d counted; figures are the median of the counted rounds (min–max). Took %s.\n", mode, r.plan.warmup, r.plan.rounds, r.took)
	fmt.Fprintf(w, "- Broker: Kafka %s, single node (KRaft), image %s; %s.\n", s.kafka, s.image, s.network)
	fmt.Fprintf(w, "- Our services: Go %s, confluent-kafka-go with librdkafka %s (kafka.LibraryVersion()).\n", s.goVersion, s.librdkafka)
	fmt.Fprintf(w, "- Baselines: Kafka %s's kafka-producer-perf-test, kafka-consumer-perf-test and EndToEndLatency from the broker's image, on %s; %s.\n", s.kafka, s.java, s.kcat)
	for _, m := range s.machine {
		fmt.Fprintf(w, "- %s\n", m)
	}
	fmt.Fprintf(w, "- Load average (1, 5, 15 min): %s before, %s after.\n\n", s.loadBefore, s.loadAfter)

	fmt.Fprintf(w, "## Producer throughput, to the last delivery report\n\n")
	fmt.Fprintf(w, "Messages per round: %s. Every producer sends with acks=all and idempotence. msg/s runs from exec to exit for ours and kcat (start-up and shutdown included), from the first send to the end of the flush for kafka-producer-perf-test; own msg/s is what our producer reports itself, from its first send to its last delivery report. CPU µs/msg: lower is better; a Java tool's includes its JVM start-up once per round. One record, start to exit: kafka-producer-perf-test %s, ours %s, kcat -P %s.\n\n",
		messagesPerSize(r.plan.producerMessages), s.jvmStart, s.oursStart, s.kcatStart)
	throughputTable(w, r.producer, true)

	fmt.Fprintf(w, "## Consumer throughput, over a pre-loaded topic\n\n")
	fmt.Fprintf(w, "Messages per round: %s, written by our producer (value and headers). CPU µs/msg: lower is better.\n\n", messagesPerSize(r.plan.consumerMessages))
	throughputTable(w, r.consumer, false)

	fmt.Fprintf(w, "## End-to-end latency at a steady rate (ours)\n\n")
	fmt.Fprintf(w, "From the scheduled send time (ce_time) to the consumer's handling; %s per round, the first %s left out; values of %s.\n\n",
		r.plan.latencyRun, r.plan.latencyDrop, sizeName(r.plan.latencyValueSize))
	var rows [][]string
	for _, c := range r.latency {
		row := []string{thousands(int64(c.rate)) + "/s", c.profile}
		for _, m := range latencyMetrics() {
			sp, ok := c.figure(tOurs, m)
			row = append(row, formatSpread(m, sp, ok))
		}
		rows = append(rows, row)
	}
	table(w, append([]string{"rate", "profile"}, latencyMetrics()...), rows)

	fmt.Fprintf(w, "## One event at a time\n\n")
	fmt.Fprintf(w, "Ours: %d events %s apart, linger.ms=0, nothing left out. EndToEndLatency: %d messages, each sent, acknowledged and polled back before the next; it truncates its percentiles to whole milliseconds.\n\n",
		r.plan.singleEvents, r.plan.singleInterval, r.plan.singleEvents)
	rows = nil
	for _, m := range []string{mMean, mP50, mP99, mP999, mGCs, mGCMax} {
		ours, ok := r.oneAtATime.figure(tOurs, m)
		base, bok := r.oneAtATime.figure(tEndToEnd, m)
		rt := formatRatio(ratio(ours, base, ok, bok))
		if m == mGCs || m == mGCMax {
			rt = "" // the broker's, not the clients'
		}
		rows = append(rows, []string{m, formatSpread(m, ours, ok), formatSpread(m, base, bok), rt})
	}
	table(w, []string{"metric", tOurs, tEndToEnd, "ours ÷ " + tEndToEnd}, rows)

	fmt.Fprintf(w, "## Goals\n\n")
	table(w, []string{"goal", "measured (median)", "result"}, r.goals())
}

// latencyMetrics are the columns of the steady latency table.
func latencyMetrics() []string {
	return []string{mRate, mP50, mP99, mP999, mMax, mMean, mCount, mGCs, mGCMax}
}

func messagesPerSize(m map[int]int) string {
	var parts []string
	for _, size := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s for %s", thousands(int64(m[size])), sizeName(size)))
	}
	return strings.Join(parts, ", ")
}

// find returns the cell of kind with size, profile and rate (0 and "" match any).
func find(cells []*cell, size int, profile string, rate int) *cell {
	for _, c := range cells {
		if (size == 0 || c.size == size) && (profile == "" || c.profile == profile) && (rate == 0 || c.rate == rate) {
			return c
		}
	}
	return nil
}

// goals are the targets, each with what was measured and whether
// it was met, or by how much it was missed.
func (r *report) goals() [][]string {
	var rows [][]string
	atLeast := func(goal string, c *cell, base string, want float64) {
		ours, ok := c.figure(tOurs, mMsgs)
		b, bok := c.figure(base, mMsgs)
		got, rok := ratio(ours, b, ok, bok)
		rows = append(rows, []string{goal, formatRatio(got, rok), verdict(got, want, rok, true)})
	}
	// The producer is held to kcat sending the same headers: the fair peer.
	p1k, p100 := find(r.producer, 1024, "throughput", 0), find(r.producer, 100, "throughput", 0)
	atLeast("producer 1 KiB ≥ 1.0x kcat -P + our headers (throughput profile)", p1k, tKcatPHeaders, 1.0)
	atLeast("producer 100 B ≥ 0.6x kcat -P + our headers (throughput profile)", p100, tKcatPHeaders, 0.6)
	atLeast("consumer 1 KiB ≥ 1.0x kcat -C -e", find(r.consumer, 1024, "", 0), tKcatC, 1.0)
	atLeast("consumer 100 B ≥ 0.6x kcat -C -e", find(r.consumer, 100, "", 0), tKcatC, 0.6)
	// The metrics' cost: with --http-addr (scraped every second) at most 3 % slower.
	for _, c := range []*cell{p1k, p100, find(r.consumer, 1024, "", 0), find(r.consumer, 100, "", 0)} {
		if c == nil {
			continue
		}
		with, ok := c.figure(tOursHTTP, mMsgs)
		without, bok := c.figure(tOurs, mMsgs)
		got, rok := ratio(with, without, ok, bok)
		goal := fmt.Sprintf("%s %s with --http-addr ≥ 0.97x without (metrics cost < 3 %%)", c.kind, sizeName(c.size))
		rows = append(rows, []string{goal, formatRatio(got, rok), verdict(got, 0.97, rok, true)})
	}
	// One event at a time: the goal holds in every round, so the worst counts.
	one, ok := r.oneAtATime.figure(tOurs, mP99)
	measured := "-"
	if ok {
		measured = formatMetric(mP99, one.max) + " ms (worst round)"
	}
	rows = append(rows, []string{"one event at a time: p99 ≤ 5 ms in every round", measured, verdict(one.max, 5, ok, false)})
	lat := find(r.latency, 0, "latency", 1000)
	for _, g := range []struct {
		metric string
		max    float64
	}{{mP50, 1}, {mP99, 3}, {mP999, 10}} {
		s, ok := lat.figure(tOurs, g.metric)
		goal := fmt.Sprintf("latency at 1,000/s, linger.ms=0: %s ≤ %g ms", strings.TrimSuffix(g.metric, " ms"), g.max)
		measured := "-"
		if ok {
			measured = formatMetric(g.metric, s.median) + " ms"
		}
		rows = append(rows, []string{goal, measured, verdict(s.median, g.max, ok, false)})
	}
	return rows
}

// verdict says whether got meets want (at least want when higher is
// better, at most otherwise) and by how much it misses.
func verdict(got, want float64, ok, higherBetter bool) string {
	switch {
	case !ok:
		return "not measured in this plan"
	case higherBetter && got >= want, !higherBetter && got <= want:
		return "met"
	case higherBetter:
		return fmt.Sprintf("missed by %.0f %% (%.2fx of the %sx wanted)", (1-got/want)*100, got, strconv.FormatFloat(want, 'f', -1, 64))
	default:
		return fmt.Sprintf("missed by %.0f %% (%s over)", (got/want-1)*100, strconv.FormatFloat(got-want, 'f', 2, 64)+" ms")
	}
}
