package latency

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestIndex_bucketsAreContiguousAndOrdered(t *testing.T) {
	// Each bucket's upper end is followed by the first value of the next.
	for i := range buckets - 1 {
		if got := index(upper(i)); got != i {
			t.Fatalf("upper(%d) = %d falls into bucket %d", i, upper(i), got)
		}
		if got := index(upper(i) + 1); got != i+1 {
			t.Fatalf("upper(%d)+1 = %d falls into bucket %d, want %d", i, upper(i)+1, got, i+1)
		}
	}
	if got := index(1<<63 - 1); got != buckets-1 {
		t.Fatalf("the largest int64 falls into bucket %d, want the last, %d", got, buckets-1)
	}
}

func TestHistogram(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name      string
		values    []time.Duration
		q         float64
		want      time.Duration
		wantMean  time.Duration
		wantMax   time.Duration
		wantCount uint64
	}{
		{name: "empty", q: 0.5},
		{name: "one value", values: []time.Duration{100}, q: 0.5, want: 100, wantMean: 100, wantMax: 100, wantCount: 1},
		{name: "small values are exact", values: []time.Duration{1, 2, 3, 4}, q: 0.5, want: 2, wantMean: 3, wantMax: 4, wantCount: 4},
		{name: "p99 of 100 is the 99th", values: seq(1, 100, ms), q: 0.99, want: 99 * ms, wantMean: 50*ms + ms/2, wantMax: 100 * ms, wantCount: 100},
		{name: "p100 is the max", values: seq(1, 100, ms), q: 1, want: 100 * ms, wantMean: 50*ms + ms/2, wantMax: 100 * ms, wantCount: 100},
		{name: "q below 0 is the smallest", values: []time.Duration{5, 7}, q: -1, want: 5, wantMean: 6, wantMax: 7, wantCount: 2},
		{name: "negatives count as 0", values: []time.Duration{-time.Second, 10}, q: 0.5, want: 0, wantMean: 5, wantMax: 10, wantCount: 2},
		{name: "never above max", values: []time.Duration{1000001}, q: 0.5, want: 1000001, wantMean: 1000001, wantMax: 1000001, wantCount: 1},
		{name: "an hour", values: []time.Duration{time.Hour}, q: 0.999, want: time.Hour, wantMean: time.Hour, wantMax: time.Hour, wantCount: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, v := range tt.values {
				h.Record(v)
			}
			if got := h.Quantile(tt.q); !within(got, tt.want) {
				t.Errorf("Quantile(%v) = %v, want %v (within 0.8%%)", tt.q, got, tt.want)
			}
			if h.Mean() != tt.wantMean || h.Max() != tt.wantMax || h.Count() != tt.wantCount {
				t.Errorf("mean %v max %v count %d, want %v %v %d", h.Mean(), h.Max(), h.Count(), tt.wantMean, tt.wantMax, tt.wantCount)
			}
		})
	}
}

// TestHistogram_quantilesWithinPrecision compares with exact quantiles of
// latencies spread over six orders of magnitude.
func TestHistogram_quantilesWithinPrecision(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	values := make([]time.Duration, 100_000)
	for i := range values {
		values[i] = time.Duration(r.ExpFloat64() * float64(r.IntN(1000)+1) * float64(time.Microsecond))
		h.Record(values[i])
	}
	slices.Sort(values)
	for _, q := range []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
		rank := int(float64(len(values))*q+0.999999) - 1
		exact := values[max(rank, 0)]
		got := h.Quantile(q)
		if got < exact || !within(got, exact) {
			t.Errorf("Quantile(%v) = %v, exact %v: want at or above it, within 0.8%%", q, got, exact)
		}
	}
}

func TestHistogram_recordAllocatesNothing(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(1000, func() { h.Record(1234567) }); n != 0 {
		t.Fatalf("Record allocates %v times", n)
	}
}

func seq(from, to int, unit time.Duration) []time.Duration {
	var s []time.Duration
	for i := from; i <= to; i++ {
		s = append(s, time.Duration(i)*unit)
	}
	return s
}

func within(got, want time.Duration) bool {
	return got >= want-want/128 && got <= want+want/128
}
