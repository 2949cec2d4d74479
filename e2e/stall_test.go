package e2e

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// leaderDebug is the librdkafka debug setting under which the clients log
// each metadata answer, with each partition's leader; stallReport reads
// those lines (and the leader changes the client applied, which it logs
// with debug=topic too, a line per batch: too many to keep on in the
// restart scenario).
const leaderDebug = "debug=metadata"

var (
	// told: a metadata answer named this partition's leader.
	toldLeader = regexp.MustCompile(`Topic (\S+) \[(\d+)\] Leader (-?\d+) Epoch (-?\d+)`)
	// applied: the client changed its own view of the partition's leader.
	appliedLeader = regexp.MustCompile(`(\S+) \[(\d+)\]: leader (-?\d+) epoch (-?\d+) -> leader (-?\d+) epoch (-?\d+)`)
	// applying: the same change, as librdkafka also logs it (without epochs).
	applyingLeader = regexp.MustCompile(`(\S+) \[(\d+)\]: applying leader-id update (-?\d+) -> (-?\d+)`)
)

// progress is a client and the test of whether it moved on after a fault.
type progress struct {
	s     *service
	moved func() bool
}

// waitResumed waits until every client moved on after a fault. When one
// does not within timeout, it fails t naming that client and, for each
// partition of topic, the leader it was last told of, the leader it last
// applied, and the leader the broker reports now: a client that was told of
// a leader it never applied is librdkafka#5430, recognised here by name.
func waitResumed(t *testing.T, fault string, timeout time.Duration, bootstrap, topic string, clients ...progress) {
	t.Helper()
	for deadline := time.Now().Add(timeout); ; time.Sleep(50 * time.Millisecond) {
		var stalled []*service
		for _, c := range clients {
			if !c.moved() {
				stalled = append(stalled, c.s)
			}
		}
		if len(stalled) == 0 {
			return
		}
		if time.Now().Before(deadline) {
			continue
		}
		leaders, err := brokerLeaders(bootstrap, topic)
		var report []string
		for _, s := range stalled {
			if !s.running() {
				report = append(report, fmt.Sprintf("  %s exited: %v", s.name, s.waitErr))
				continue
			}
			report = append(report, stallReport(s.name, s.log(), topic, leaders, err))
		}
		t.Fatalf("after %s the broker serves new clients, but not every client resumed within %s:\n%s",
			fault, timeout, strings.Join(report, "\n"))
	}
}

// brokerLeaders asks the broker, with a fresh client, for the leader of
// each partition of topic.
func brokerLeaders(bootstrap, topic string) (map[int32]int32, error) {
	a, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap, "log_level": 0})
	if err != nil {
		return nil, err
	}
	defer a.Close()
	md, err := a.GetMetadata(&topic, false, 10_000)
	if err != nil {
		return nil, err
	}
	if err := md.Topics[topic].Error; err.Code() != kafka.ErrNoError {
		return nil, err
	}
	leaders := map[int32]int32{}
	for _, p := range md.Topics[topic].Partitions {
		leaders[p.ID] = p.Leader
	}
	return leaders, nil
}

// stallReport describes a client that stopped making progress, from its
// log lines and the broker's view of the partitions' leaders.
func stallReport(name string, lines []logLine, topic string, broker map[int32]int32, brokerErr error) string {
	type view struct {
		told, applied   string
		toldLeader      int
		appliedLeader   int
		toldAt, applyAt time.Time
	}
	views := map[int32]*view{}
	get := func(p string) *view {
		n, _ := strconv.Atoi(p)
		if views[int32(n)] == nil {
			views[int32(n)] = &view{toldLeader: -2, appliedLeader: -2}
		}
		return views[int32(n)]
	}
	for _, l := range lines {
		if m := toldLeader.FindStringSubmatch(l.Msg); m != nil && m[1] == topic {
			v := get(m[2])
			v.told, v.toldAt = "leader "+m[3]+" epoch "+m[4], l.Time
			v.toldLeader, _ = strconv.Atoi(m[3])
		}
		if m := appliedLeader.FindStringSubmatch(l.Msg); m != nil && m[1] == topic {
			v := get(m[2])
			v.applied, v.applyAt = "leader "+m[5]+" epoch "+m[6], l.Time
			v.appliedLeader, _ = strconv.Atoi(m[5])
		}
		if m := applyingLeader.FindStringSubmatch(l.Msg); m != nil && m[1] == topic {
			v := get(m[2])
			v.applied, v.applyAt = "leader "+m[4], l.Time
			v.appliedLeader, _ = strconv.Atoi(m[4])
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  %s stopped making progress", name)
	if len(views) == 0 {
		fmt.Fprintf(&b, "; it logged nothing about the leaders of %s (is %s set?)", topic, leaderDebug)
	}
	for p := range broker {
		get(strconv.Itoa(int(p)))
	}
	for _, p := range slices.Sorted(maps.Keys(views)) {
		v := views[p]
		fmt.Fprintf(&b, "\n    %s [%d]: last told %s; last applied %s; ", topic, p,
			orNone(v.told, v.toldAt), orNone(v.applied, v.applyAt))
		leader, ok := broker[p]
		switch {
		case brokerErr != nil:
			fmt.Fprintf(&b, "the broker's view could not be read: %v", brokerErr)
		case !ok:
			b.WriteString("the broker reports no such partition")
		default:
			fmt.Fprintf(&b, "the broker reports leader %d", leader)
		}
		holds := v.appliedLeader
		if holds == -2 {
			holds = v.toldLeader // no applied lines: what it was told is what it holds
		}
		if ok && brokerErr == nil && leader >= 0 && holds == -1 {
			how := "it was not told of the broker's leader since"
			if v.toldLeader >= 0 && v.toldAt.After(v.applyAt) && v.applied != "" {
				how = "it was told of a leader it did not apply"
			}
			fmt.Fprintf(&b, "\n    => the client holds no leader while the broker has one (%s): librdkafka#5430, "+
				"a leader update skipped after a broker restart; restarting the client recovers it", how)
		}
	}
	return b.String()
}

// orNone is what and when, or "nothing".
func orNone(what string, at time.Time) string {
	if what == "" {
		return "nothing"
	}
	return what + " at " + at.Format("15:04:05.000")
}

// The stall report names librdkafka#5430 from real librdkafka lines, and
// only when the client lost a leader that the broker has.
func TestStallReport_namesTheLeaderStall(t *testing.T) {
	at := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	line := func(sec int, msg string) logLine {
		return logLine{Time: at.Add(time.Duration(sec) * time.Second), Msg: "librdkafka: [thrd:main]: " + msg}
	}
	stuck := []logLine{
		line(1, "Topic t [0] Leader 1 Epoch 0"),
		line(1, "t [0]: leader -1 epoch -1 -> leader 1 epoch 0"),
		line(5, "t [0]: leader 1 epoch 0 -> leader -1 epoch 1"),
		line(9, "Topic t [0] Leader 1 Epoch 2"),
		line(9, "Topic other [0] Leader 1 Epoch 7"),
	}
	healthy := append(stuck[:4:4], line(9, "t [0]: leader -1 epoch 1 -> leader 1 epoch 2"))

	tests := []struct {
		name   string
		lines  []logLine
		broker map[int32]int32
		want   []string
		not    []string
	}{
		{"stalled on a lost leader", stuck, map[int32]int32{0: 1}, []string{
			"consumer stopped making progress",
			"t [0]: last told leader 1 epoch 2 at 10:00:09.000; last applied leader -1 epoch 1 at 10:00:05.000; the broker reports leader 1",
			"told of a leader it did not apply", "librdkafka#5430",
		}, nil},
		{"never told of the new leader", stuck[:3], map[int32]int32{0: 1}, []string{
			"last told leader 1 epoch 0", "not told of the broker's leader since", "librdkafka#5430",
		}, nil},
		{"applied through the other log line", append(stuck[:4:4], line(9, "t [0]: applying leader-id update -1 -> 1 (epoch 2)")),
			map[int32]int32{0: 1}, []string{"last applied leader 1 at 10:00:09.000"}, []string{"librdkafka#5430"}},
		{"only metadata lines, last told no leader", []logLine{stuck[0], line(5, "Topic t [0] Leader -1 Epoch 1")},
			map[int32]int32{0: 1}, []string{"last told leader -1 epoch 1", "last applied nothing", "librdkafka#5430"}, nil},
		{"only metadata lines, told the leader", []logLine{stuck[0]},
			map[int32]int32{0: 1}, []string{"last told leader 1 epoch 0"}, []string{"librdkafka#5430"}},
		{"broker without a leader too", stuck, map[int32]int32{0: -1}, []string{"the broker reports leader -1"}, []string{"librdkafka#5430"}},
		{"leader applied", healthy, map[int32]int32{0: 1}, []string{"last applied leader 1 epoch 2"}, []string{"librdkafka#5430"}},
		{"no debug lines", nil, map[int32]int32{0: 1}, []string{"logged nothing about the leaders", leaderDebug}, []string{"librdkafka#5430"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := stallReport("consumer", tt.lines, "t", tt.broker, nil)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("report lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(got, w) {
					t.Errorf("report says %q:\n%s", w, got)
				}
			}
		})
	}
}
