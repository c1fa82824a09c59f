package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram records latencies in log-linear buckets (as HDR histograms do):
// exact below 256 ns, then 128 buckets per power of two, so a reported value
// is within 1/128 (0.8%) of the true one. Its memory is fixed (~36 KiB)
// whatever the number of samples, and Record is lock-free.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64 // ns
	max    atomic.Uint64 // ns
}

const (
	histSubBits  = 8
	histDirect   = 1 << histSubBits       // values below this have a bucket each
	histHalf     = 1 << (histSubBits - 1) // buckets per power of two above
	histMaxShift = 34                     // up to 2^42 ns (~73 min); above is clamped
	histBuckets  = histDirect + histMaxShift*histHalf
	histMaxValue = 1<<(histMaxShift+histSubBits) - 1
)

func bucketOf(v uint64) int {
	if v < histDirect {
		return int(v)
	}
	if v > histMaxValue {
		v = histMaxValue
	}
	shift := bits.Len64(v) - histSubBits
	top := v >> shift // in [histHalf, histDirect)
	return histDirect + (shift-1)*histHalf + int(top-histHalf)
}

// bucketUpper is the largest value that falls in bucket i.
func bucketUpper(i int) uint64 {
	if i < histDirect {
		return uint64(i)
	}
	k := i - histDirect
	shift := k/histHalf + 1
	top := uint64(k%histHalf + histHalf)
	return (top+1)<<shift - 1
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count is the number of latencies recorded.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Max is the largest latency recorded.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean is the mean latency.
func (h *Histogram) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Quantile returns the latency at or below which a fraction q (0..1] of the
// samples lie: the upper edge of the bucket holding the ceil(q*n)-th sample,
// never more than Max. 0 with no samples.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(min(bucketUpper(i), h.max.Load()))
		}
	}
	return h.Max()
}
