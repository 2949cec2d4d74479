package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// observation is what one scenario saw, the checker's input: what the
// producers and the test itself sent, what the consumers handled, and the
// whole topic read back at the end.
type observation struct {
	producers [][]logLine // the log lines of each producer run
	direct    []record    // messages the test wrote itself, each acknowledged
	consumers [][]logLine // the log lines of each consumer run, in the order they ran
	log       []record    // the topic, read to its end after everything stopped
	faults    []fault     // the faults the consumers went through, in order
}

// fault is what at-least-once allows a consumer group to handle again after
// one fault: per partition, the offsets after C, the last one it committed
// as handled before the fault, up to H, the highest one it handled before
// its position could go back (a killed consumer: when it died; a broker
// restart: when it was given its partitions again, or, if it kept them,
// when the broker was back).
type fault struct {
	at        time.Time       // when the fault began
	committed map[int32]int64 // the group's committed offset (the next to read, C+1) before the fault
	handled   map[int32]int64 // H
}

// window returns the offsets of partition p that may be redelivered after
// f: (C, H], with C the last offset committed as handled (committed-1).
func (f fault) window(p int32) (after, upTo int64) {
	c, ok := f.committed[p]
	if !ok || c < 0 {
		c = 0 // nothing committed: the group starts at the beginning
	}
	h, ok := f.handled[p]
	if !ok {
		h = c - 1
	}
	return c - 1, h
}

// bound is how many redeliveries f allows: the sum over partitions of H-C.
func (f fault) bound() int {
	n := 0
	for p := range f.handled {
		after, upTo := f.window(p)
		n += int(max(0, upTo-after))
	}
	return n
}

// figures are the checker's counts for one scenario.
type figures struct {
	Sent         int // events the producers accepted, plus the test's own writes
	Acked        int // events acknowledged by Kafka
	Failed       int // events the producers reported as not delivered
	Unknown      int // sent but unconfirmed when a producer was cut short: may have been written
	Unaccounted  int // accepted but neither delivered, failed nor unknown when a producer stopped
	Lost         int // acknowledged but not in the log, or in the log but never handled
	DupLog       int // extra copies of events in the log
	DupLogBound  int // copies a producer that re-created its client may have written twice: what it held then
	DupDelivered int // extra deliveries of messages to the consumers
	Reordered    int // events out of order in a partition, in the log or first deliveries
	Mismatched   int // deliveries or stored events whose content differs from what was sent
	Foreign      int // messages in the log that nobody in the scenario sent
	Received     int // deliveries logged by the consumers
	DeadLettered int // messages the consumers dead-lettered
	DupBound     int // redeliveries the faults allow: the sum over faults and partitions of H-C
	DupOutside   int // redeliveries outside the (C, H] window of the fault before them

	extra    []string // the scenario's own figures, key=value
	problems []string // what is wrong, one line each
}

// String is the scenario's line of figures.
func (f *figures) String() string {
	s := fmt.Sprintf("sent=%d acked=%d failed=%d lost=%d dup_log=%d dup_delivered=%d reordered=%d",
		f.Sent, f.Acked, f.Failed, f.Lost, f.DupLog, f.DupDelivered, f.Reordered)
	if f.Mismatched != 0 {
		s += fmt.Sprintf(" mismatched=%d", f.Mismatched)
	}
	if f.Unknown != 0 {
		s += fmt.Sprintf(" unknown=%d", f.Unknown)
	}
	if f.Unaccounted != 0 {
		s += fmt.Sprintf(" unaccounted=%d", f.Unaccounted)
	}
	if f.Foreign != 0 {
		s += fmt.Sprintf(" foreign=%d", f.Foreign)
	}
	if f.DeadLettered != 0 {
		s += fmt.Sprintf(" dead_lettered=%d", f.DeadLettered)
	}
	if f.DupLogBound != 0 {
		s += fmt.Sprintf(" dup_log_bound=%d", f.DupLogBound)
	}
	if f.DupBound != 0 || f.DupOutside != 0 {
		s += fmt.Sprintf(" dup_bound=%d dup_outside=%d", f.DupBound, f.DupOutside)
	}
	return strings.Join(append([]string{s}, f.extra...), " ")
}

// add appends a scenario figure to the line.
func (f *figures) add(key string, value any) {
	f.extra = append(f.extra, fmt.Sprintf("%s=%v", key, value))
}

// problem records what is wrong, one line.
func (f *figures) problem(format string, args ...any) {
	f.problems = append(f.problems, fmt.Sprintf(format, args...))
}

// position is where a message is stored.
type position struct {
	partition int32
	offset    int64
}

// check compares what was sent, stored and handled.
func check(o observation) *figures {
	f := &figures{}
	// Events are keyed by source and id (eventKey): ids are unique only
	// within their source.
	sent := map[string]string{}     // event key -> timestamp the producer logged
	acked := map[string]*position{} // nil: acknowledged, position not logged
	for i, lines := range o.producers {
		checkProducer(f, i, lines, sent, acked)
	}
	direct := map[position]bool{}
	for _, r := range o.direct {
		f.Sent++
		f.Acked++
		direct[position{r.Partition, r.Offset}] = true
		if k := r.key(); k != "" {
			sent[k] = r.timestamp()
			acked[k] = &position{r.Partition, r.Offset}
		}
	}

	stored := map[position]record{}
	copies := map[string]int{}
	for _, r := range o.log {
		stored[position{r.Partition, r.Offset}] = r
		id := r.key()
		if id != "" {
			copies[id]++
			// A producer that re-created its client may write what it held
			// twice: then assertFigures holds dup_log to DupLogBound.
			if copies[id] == 2 && f.DupLogBound == 0 {
				f.problem("event %s is in the log more than once", id)
			}
			if copies[id] > 1 {
				f.DupLog++
			}
		}
		ts, known := sent[id]
		switch {
		case id != "" && known:
			if ts != r.timestamp() {
				f.Mismatched++
				f.problem("event %s was sent as %q but is stored as %q", id, ts, r.Value)
			}
		case !direct[position{r.Partition, r.Offset}]:
			f.Foreign++
		}
	}
	for id, pos := range acked {
		if copies[id] == 0 {
			f.Lost++
			f.problem("event %s was acknowledged but is not in the log", id)
		} else if pos == nil {
			continue
		} else if r, ok := stored[*pos]; !ok || r.key() != id {
			f.Mismatched++
			f.problem("event %s was acknowledged at %d@%d but is stored elsewhere", id, pos.partition, pos.offset)
		}
	}
	checkLogOrder(f, o.log)
	for _, flt := range o.faults {
		f.DupBound += flt.bound()
	}
	if len(o.consumers) > 0 {
		checkConsumers(f, o.consumers, o.log, stored, o.faults)
	}
	return f
}

// checkProducer accounts for one producer run: every event it accepted was
// either delivered or reported failed, and its final counts agree with its
// lines. A producer at info level logs no delivery reports: only when its
// final counts say that everything it sent was delivered do they vouch for
// each event.
func checkProducer(f *figures, run int, lines []logLine, sent map[string]string, acked map[string]*position) {
	var sending, delivered, failed, unconfirmed int
	var stop *logLine
	var ids []string
	source := fmt.Sprintf("producer run %d", run) // until its start line names it
	for _, l := range lines {
		if l.is(msgProducerStart) && l.Source != "" {
			source = l.Source
		}
	}
	for i, l := range lines {
		key := eventKey(source, l.ID)
		switch {
		case l.is(msgSending):
			sending++
			sent[key] = l.timestamp()
			ids = append(ids, key)
		case l.is(msgDelivered):
			delivered++
			if l.Partition == nil || l.Offset == nil {
				f.problem("producer run %d: delivery of %s without partition and offset", run, l.ID)
				continue
			}
			acked[key] = &position{*l.Partition, *l.Offset}
		case l.is(msgNotDelivered):
			failed++
		case l.is(msgUnconfirmed):
			unconfirmed++
		case l.is(msgProducerStop):
			stop = &lines[i]
		case l.is(msgLeaderStall) && l.Resent != nil:
			// The events the old client held are sent again by the new one: it may have written them.
			f.DupLogBound += int(*l.Resent)
		}
	}
	for _, l := range lines {
		if (l.is(msgDelivered) || l.is(msgNotDelivered) || l.is(msgUnconfirmed)) && sent[eventKey(source, l.ID)] == "" {
			f.problem("producer run %d: %q for an event it never logged as sent", run, l.Msg)
		}
	}
	f.Sent += sending
	f.Acked += delivered
	f.Failed += failed
	if stop == nil || stop.Attempted == nil || stop.Delivered == nil || stop.Failed == nil {
		f.problem("producer run %d: no final %q line with its counts", run, msgProducerStop)
		return
	}
	a, d, x, u := int(*stop.Attempted), int(*stop.Delivered), int(*stop.Failed), 0
	if stop.Unknown != nil {
		u = int(*stop.Unknown)
	}
	f.Unknown += u
	if quiet := delivered == 0 && failed == 0 && unconfirmed == 0 && a == sending && d == a && x == 0 && u == 0; quiet {
		for _, id := range ids {
			acked[id] = nil
		}
		f.Acked += d
		return
	}
	if a != sending || d != delivered || x != failed || u != unconfirmed {
		f.problem("producer run %d: says attempted=%d delivered=%d failed=%d unknown=%d but logged %d sent, %d delivered, %d not delivered, %d unconfirmed",
			run, a, d, x, u, sending, delivered, failed, unconfirmed)
	}
	if left := a - d - x - u; left != 0 {
		f.Unaccounted += left
		f.problem("producer run %d: attempted=%d != delivered=%d + failed=%d + unknown=%d", run, a, d, x, u)
	}
}

// checkLogOrder counts events stored out of their producer's sequence
// within a partition. Only an event's first copy counts: a producer that
// re-created its client may write the events it had in flight again, after
// later ones, and those copies are counted as dup_log.
func checkLogOrder(f *figures, log []record) {
	type key struct {
		partition int32
		source    string
	}
	last := map[key]record{}
	stored := map[string]bool{} // event keys seen: later copies are dup_log, not disorder
	sorted := slices.Clone(log)
	slices.SortStableFunc(sorted, func(a, b record) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	for _, r := range sorted {
		seq := r.seq()
		if seq == 0 || stored[r.key()] {
			continue
		}
		stored[r.key()] = true
		k := key{r.Partition, r.source()}
		if prev, ok := last[k]; ok && seq <= prev.seq() {
			f.Reordered++
			f.problem("partition %d: id %d of %s stored at offset %d, after id %d at offset %d",
				r.Partition, seq, k.source, r.Offset, prev.seq(), prev.Offset)
		}
		last[k] = r
	}
}

// checkConsumers compares what the consumers handled with the log: every
// message handled or dead-lettered, first deliveries in offset order, each
// redelivery inside the window of the fault before it, each delivery the
// stored event, and the consumers' own duplicate flags right.
func checkConsumers(f *figures, runs [][]logLine, log []record, stored map[position]record, faults []fault) {
	redelivered := func(run int, l logLine, pos position) {
		f.DupDelivered++
		i := len(faults) - 1
		for i >= 0 && !faults[i].at.Before(l.Time) {
			i--
		}
		if i < 0 {
			f.DupOutside++
			f.problem("consumer run %d: %d@%d handled again at %s, before any fault", run, pos.partition, pos.offset,
				l.Time.Format("15:04:05.000"))
			return
		}
		if after, upTo := faults[i].window(pos.partition); pos.offset <= after || pos.offset > upTo {
			f.DupOutside++
			f.problem("consumer run %d: %d@%d handled again after fault %d, outside its window (%d, %d]",
				run, pos.partition, pos.offset, i+1, after, upTo)
		}
	}
	handled := map[position]int{}
	dead := map[position]int{}
	firstUpTo := map[int32]int64{} // highest offset delivered for the first time
	// The consumer flags an event duplicate when its numeric id is at or
	// below the highest it handled from the same source and partition in
	// this run; its flags must follow that rule.
	type from struct {
		run       int
		partition int32
		source    string
	}
	highest := map[from]uint64{}
	// Runs of one group may overlap, a partition moving between them: what
	// they handled is judged in the order it happened.
	type entry struct {
		run int
		l   logLine
	}
	var all []entry
	for run, lines := range runs {
		for _, l := range lines {
			all = append(all, entry{run, l})
		}
	}
	slices.SortStableFunc(all, func(a, b entry) int { return a.l.Time.Compare(b.l.Time) })
	for _, e := range all {
		run, l := e.run, e.l
		isReceipt, isDead := l.is(msgReceived), l.is(msgDeadLettered)
		if !isReceipt && !isDead {
			continue
		}
		if l.Partition == nil || l.Offset == nil {
			f.problem("consumer run %d: %q without partition and offset", run, l.Msg)
			continue
		}
		pos := position{*l.Partition, *l.Offset}
		r, ok := stored[pos]
		if !ok {
			f.Mismatched++
			f.problem("consumer run %d: %q at %d@%d, where the log holds nothing", run, l.Msg, pos.partition, pos.offset)
			continue
		}
		if isDead {
			f.DeadLettered++
			dead[pos]++
			if dead[pos] > 1 {
				redelivered(run, l, pos)
			}
			continue
		}
		f.Received++
		handled[pos]++
		if handled[pos] > 1 {
			redelivered(run, l, pos)
		} else {
			if last, ok := firstUpTo[pos.partition]; ok && pos.offset < last {
				f.Reordered++
				f.problem("consumer run %d: offset %d of partition %d delivered for the first time after offset %d",
					run, pos.offset, pos.partition, last)
			}
			firstUpTo[pos.partition] = max(firstUpTo[pos.partition], pos.offset)
		}
		if l.ID != r.id() || l.timestamp() != r.timestamp() {
			f.Mismatched++
			f.problem("consumer run %d: received %q id %q at %d@%d, where the log holds %q id %q",
				run, l.timestamp(), l.ID, pos.partition, pos.offset, r.timestamp(), r.id())
		}
		if id := r.seq(); id != 0 {
			k := from{run, pos.partition, r.source()}
			want := id <= highest[k]
			if l.Duplicate != want {
				f.Mismatched++
				f.problem("consumer run %d: event %s at %d@%d flagged duplicate=%v, want %v",
					run, l.ID, pos.partition, pos.offset, l.Duplicate, want)
			}
			highest[k] = max(highest[k], id)
		}
	}
	for _, r := range log {
		pos := position{r.Partition, r.Offset}
		if handled[pos] == 0 && dead[pos] == 0 {
			f.Lost++
			f.problem("message %d@%d (id %q) is in the log but no consumer handled it", pos.partition, pos.offset, r.id())
		}
	}
}

// limits are what a scenario allows beyond the invariants. Redeliveries
// are allowed only by the faults of the observation (figures.DupBound).
type limits struct {
	foreign   int // messages the scenario put in the topic beside the producers'
	maxFailed int // events the producer may report as not delivered
}

// assertFigures logs the scenario's line of figures and fails t when an
// invariant or a limit does not hold.
func assertFigures(t *testing.T, f *figures, lim limits) {
	t.Helper()
	f.add("took", took(t))
	t.Logf("%s", f)
	if f.Sent == 0 {
		t.Error("nothing was sent")
	}
	checks := []struct {
		what      string
		got, want int
		atMost    bool
	}{
		{"lost (acknowledged but absent, or never handled)", f.Lost, 0, false},
		{"dup_log (events stored twice)", f.DupLog, f.DupLogBound, true},
		{"reordered", f.Reordered, 0, false},
		{"mismatched", f.Mismatched, 0, false},
		{"unknown (sent, unconfirmed when the producer was cut short)", f.Unknown, 0, false},
		{"unaccounted (attempted != delivered + failed + unknown)", f.Unaccounted, 0, false},
		{"foreign messages in the log", f.Foreign, lim.foreign, false},
		{"failed", f.Failed, lim.maxFailed, true},
		{"dup_outside (redelivered outside the window of a fault)", f.DupOutside, 0, false},
		{"dup_delivered", f.DupDelivered, f.DupBound, true},
	}
	for _, c := range checks {
		if c.atMost && c.got > c.want {
			t.Errorf("%s = %d; want at most %d", c.what, c.got, c.want)
		}
		if !c.atMost && c.got != c.want {
			t.Errorf("%s = %d; want %d", c.what, c.got, c.want)
		}
	}
	for i, p := range f.problems {
		if i == 20 {
			t.Errorf("... and %d more problems", len(f.problems)-i)
			break
		}
		t.Error(p)
	}
}

// The checker itself must be able to fail: each case breaks one guarantee.
func TestCheck_findsEachViolation(t *testing.T) {
	ev := func(id uint64, offset int64) record {
		return record{Offset: offset, Value: []byte(`{"timestamp":"10:00:0` + fmt.Sprint(id) + `"}`),
			Headers: kafkaHeaders("ce_id", fmt.Sprint(id), "ce_source", "src")}
	}
	a, b, c := ev(1, 0), ev(2, 1), ev(3, 2)
	sending := func(rs ...record) []logLine {
		out := []logLine{{Msg: msgProducerStart, Source: "src"}}
		for _, r := range rs {
			out = append(out, logLine{Msg: msgSending + r.timestamp(), ID: r.id()})
		}
		for _, r := range rs {
			out = append(out, logLine{Msg: msgDelivered + r.timestamp(), ID: r.id(), Partition: ptr(r.Partition), Offset: ptr(r.Offset)})
		}
		n := int64(len(rs))
		return append(out, logLine{Msg: msgProducerStop, Attempted: &n, Delivered: &n, Failed: ptr(int64(0))})
	}
	receiving := func(rs ...record) []logLine {
		var out []logLine
		var highest uint64
		for _, r := range rs {
			out = append(out, logLine{Msg: msgReceived + r.timestamp(), ID: r.id(), Duplicate: r.seq() <= highest,
				Partition: ptr(r.Partition), Offset: ptr(r.Offset)})
			highest = max(highest, r.seq())
		}
		return out
	}
	b3 := b
	b3.Offset = 3
	unconfirmed := sending(a, b, c)
	unconfirmed[len(unconfirmed)-1].Delivered = ptr(int64(2))
	wrongFlag := receiving(a, b, c)
	wrongFlag = append(wrongFlag, wrongFlag[0])
	quiet := func(rs ...record) []logLine { // a producer at info level
		var out []logLine
		for _, l := range sending(rs...) {
			if !l.is(msgDelivered) {
				out = append(out, l)
			}
		}
		return out
	}
	changed := receiving(a, b, c)
	changed[1].Msg = msgReceived + "23:59:59"
	// A fault after a and b were handled and a was committed: b, and only
	// b, may come again.
	faultAt := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	afterFault := func(lines []logLine) []logLine {
		for i := range lines {
			lines[i].Time = faultAt.Add(time.Second)
		}
		return lines
	}
	faultAfterB := []fault{{at: faultAt, committed: map[int32]int64{0: 1}, handled: map[int32]int64{0: 1}}}

	tests := []struct {
		name string
		obs  observation
		want figures
	}{
		{"all delivered once", observation{
			producers: [][]logLine{sending(a, b, c)}, log: []record{a, b, c},
			consumers: [][]logLine{receiving(a, b, c)},
		}, figures{}},
		{"acknowledged event missing from the log", observation{
			producers: [][]logLine{sending(a, b, c)}, log: []record{a, c},
			consumers: [][]logLine{receiving(a, c)},
		}, figures{Lost: 1}},
		{"stored event never handled", observation{
			producers: [][]logLine{sending(a, b, c)}, log: []record{a, b, c},
			consumers: [][]logLine{receiving(a, c)},
		}, figures{Lost: 1}},
		{"event stored twice", observation{
			producers: [][]logLine{sending(a, b, c)}, log: []record{a, b, c, b3},
			consumers: [][]logLine{receiving(a, b, c, b3)},
		}, figures{DupLog: 1}},
		{"redelivered without a fault", observation{
			producers: [][]logLine{sending(a, b, c)}, log: []record{a, b, c},
			consumers: [][]logLine{receiving(a, b), receiving(b, c)},
		}, figures{DupDelivered: 1, DupOutside: 1}},
		{"redelivered inside the fault's window", observation{
			producers: [][]logLine{sending(a, b, c)}, log: []record{a, b, c},
			consumers: [][]logLine{receiving(a, b), afterFault(receiving(b, c))},
			faults:    faultAfterB,
		}, figures{DupDelivered: 1}},
		{"committed event redelivered after a fault", observation{
			producers: [][]logLine{sending(a, b, c)}, log: []record{a, b, c},
			consumers: [][]logLine{receiving(a, b), afterFault(receiving(a, b, c))},
			faults:    faultAfterB,
		}, figures{DupDelivered: 2, DupOutside: 1}},
		{"event handled after the fault redelivered", observation{
			producers: [][]logLine{sending(a, b, c)}, log: []record{a, b, c},
			consumers: [][]logLine{receiving(a, b), afterFault(receiving(b, c, c))},
			faults:    faultAfterB,
		}, figures{DupDelivered: 2, DupOutside: 1}},
		{"first delivery out of order", observation{
			producers: [][]logLine{sending(a, b, c)}, log: []record{a, b, c},
			consumers: [][]logLine{receiving(a, c, b)},
		}, figures{Reordered: 1}},
		{"producer lost track of an event", observation{
			producers: [][]logLine{unconfirmed}, log: []record{a, b, c},
			consumers: [][]logLine{receiving(a, b, c)},
		}, figures{Unaccounted: 1}},
		{"redelivery not flagged as duplicate", observation{
			producers: [][]logLine{sending(a, b, c)}, log: []record{a, b, c},
			consumers: [][]logLine{wrongFlag},
		}, figures{DupDelivered: 1, DupOutside: 1, Mismatched: 1}},
		{"delivered timestamp differs from the stored one", observation{
			producers: [][]logLine{sending(a, b, c)}, log: []record{a, b, c},
			consumers: [][]logLine{changed},
		}, figures{Mismatched: 1}},
		{"info-level producer's final counts vouch for its events", observation{
			producers: [][]logLine{quiet(a, b, c)}, log: []record{a, c},
			consumers: [][]logLine{receiving(a, c)},
		}, figures{Lost: 1}},
		{"message nobody sent", observation{
			producers: [][]logLine{sending(a, b)}, log: []record{a, b, c},
			consumers: [][]logLine{receiving(a, b, c)},
		}, figures{Foreign: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := check(tt.obs)
			type counts struct {
				Lost, DupLog, DupDelivered, DupOutside, Reordered, Mismatched, Unaccounted, Foreign int
			}
			g := counts{got.Lost, got.DupLog, got.DupDelivered, got.DupOutside, got.Reordered, got.Mismatched, got.Unaccounted, got.Foreign}
			w := counts{tt.want.Lost, tt.want.DupLog, tt.want.DupDelivered, tt.want.DupOutside, tt.want.Reordered, tt.want.Mismatched, tt.want.Unaccounted, tt.want.Foreign}
			if g != w {
				t.Errorf("got %+v, want %+v\nproblems:\n  %s", g, w, strings.Join(got.problems, "\n  "))
			}
		})
	}
}

// ptr returns a pointer to a copy of v.
func ptr[T any](v T) *T { return &v }

// kafkaHeaders builds headers from key, value pairs.
func kafkaHeaders(kv ...string) []kafka.Header {
	var hs []kafka.Header
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, kafka.Header{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return hs
}
