// Package latency summarises latencies in fixed memory: a log-linear
// histogram in the manner of HdrHistogram, exact below 128 ns and within
// 1/128 (0.8 %) of the true value above, from nanoseconds to centuries.
// It holds about 57 KiB whatever the number of values, so a consumer can
// record every event's latency for as long as it runs.
package latency

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the precision: each power of two is split into 2^subBits
// buckets of equal width.
const subBits = 7

const (
	subCount = 1 << subBits
	// buckets covers every int64: 128 exact ones, then 128 per power of two
	// from 2^7 to 2^63.
	buckets = subCount * (64 - subBits)
)

// Histogram counts latencies. The zero value is empty and ready to use; it
// is not safe for concurrent use.
type Histogram struct {
	counts [buckets]uint64
	n      uint64
	sum    float64 // nanoseconds; a float, so that it cannot overflow
	max    time.Duration
}

// Record adds one latency. A negative one, which clocks that disagree can
// produce, counts as 0.
func (h *Histogram) Record(d time.Duration) {
	d = max(d, 0)
	h.counts[index(uint64(d))]++
	h.n++
	h.sum += float64(d)
	h.max = max(h.max, d)
}

// Count is the number of latencies recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Max is the largest latency recorded, exactly; 0 when empty.
func (h *Histogram) Max() time.Duration { return h.max }

// Mean is the average latency, exactly (to the nanosecond); 0 when empty.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(math.Round(h.sum / float64(h.n)))
}

// Quantile returns the latency at or below which a fraction q (0 to 1) of
// the recorded latencies fall: Quantile(0.99) is the 99th percentile. It is
// the upper end of the bucket that holds it, never above Max, so it errs
// high by at most 0.8 %. It is 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(min(max(q, 0), 1) * float64(h.n)))
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(upper(i)), h.max)
		}
	}
	return h.max
}

// index is the bucket of v.
func index(v uint64) int {
	if v < subCount {
		return int(v)
	}
	// v has k significant bits; keep its top subBits+1 bits.
	shift := bits.Len64(v) - subBits - 1
	return subCount*(shift+1) + int(v>>shift) - subCount
}

// upper is the largest value that falls into bucket i.
func upper(i int) uint64 {
	if i < subCount {
		return uint64(i)
	}
	shift := i/subCount - 1
	m := uint64(i%subCount + subCount)
	return (m+1)<<shift - 1
}
