package ui

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

func TestSparkline(t *testing.T) {
	for _, tc := range []struct {
		name       string
		values     []float64
		line, area string
		max        float64
	}{
		// x steps w/(n-1); the max sits at pad, zero on h-pad.
		{"rise", []float64{0, 5, 10}, "M0,18 L50,10 L100,2", "M0,18 L50,10 L100,2 L100,18 L0,18 Z", 10},
		{"fall", []float64{4, 2, 1, 0}, "M0,2 L33.33,10 L66.67,14 L100,18", "M0,2 L33.33,10 L66.67,14 L100,18 L100,18 L0,18 Z", 4},
		{"all zero: flat on the baseline", []float64{0, 0, 0}, "M0,18 L50,18 L100,18", "M0,18 L50,18 L100,18 L100,18 L0,18 Z", 0},
		{"one value: across the box", []float64{7}, "M0,2 L100,2", "M0,2 L100,2 L100,18 L0,18 Z", 7},
		{"negative counts as zero", []float64{-3, 6}, "M0,18 L100,2", "M0,18 L100,2 L100,18 L0,18 Z", 6},
		{"empty", nil, "", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sparkline(tc.values, 100, 20, 2)
			if s.Line != tc.line || s.Area != tc.area || s.Max != tc.max {
				t.Errorf("sparkline(%v) = line %q area %q max %v; want %q %q %v", tc.values, s.Line, s.Area, s.Max, tc.line, tc.area, tc.max)
			}
			if s.W != 100 || s.H != 20 {
				t.Errorf("box %vx%v", s.W, s.H)
			}
		})
	}
}

func TestBars(t *testing.T) {
	bs := bars([]float64{2, 0, 8, 4}, 100, 40, 4, 1)
	// width per bar: (100 - 3 gaps·4) / 4 = 22; x = i·(22+4).
	want := []Bar{
		{X: 0, Y: 30, W: 22, H: 10, Value: 2},
		{X: 26, Y: 40, W: 22, H: 0, Value: 0},
		{X: 52, Y: 0, W: 22, H: 40, Value: 8},
		{X: 78, Y: 20, W: 22, H: 20, Value: 4},
	}
	if len(bs) != len(want) {
		t.Fatalf("%d bars", len(bs))
	}
	for i := range want {
		if bs[i] != want[i] {
			t.Errorf("bar %d = %+v, want %+v", i, bs[i], want[i])
		}
		if bs[i].Y+bs[i].H != 40 {
			t.Errorf("bar %d does not stand on the baseline", i)
		}
	}
	// The last bar ends at the right edge.
	if last := bs[3]; last.X+last.W != 100 {
		t.Errorf("bars span %v, want 100", last.X+last.W)
	}
	// A tiny non-zero value stays visible; zeros stay flat.
	bs = bars([]float64{1, 10000, 0}, 30, 50, 0, 1.5)
	if bs[0].H != 1.5 || bs[1].H != 50 || bs[2].H != 0 {
		t.Errorf("heights %v %v %v", bs[0].H, bs[1].H, bs[2].H)
	}
	if bars(nil, 10, 10, 1, 1) != nil {
		t.Error("bars(nil) not nil")
	}
	if bs := bars([]float64{0, 0}, 10, 10, 1, 1); bs[0].H != 0 || bs[1].H != 0 {
		t.Error("all-zero bars have height")
	}
}

func TestRateChart(t *testing.T) {
	now := time.Date(2026, 3, 14, 15, 9, 20, 0, time.UTC)
	pts := rate(now, 10, 0, 30) // the last three buckets of 60
	c := rateChart(pts, 600, 120)
	if len(c.Bars) != streams.RateBuckets || c.Empty {
		t.Fatalf("%d bars, empty %v", len(c.Bars), c.Empty)
	}
	last := c.Bars[len(c.Bars)-1]
	if last.H != 120 || last.Y != 0 {
		t.Errorf("the largest bucket is not full height: %+v", last)
	}
	if c.Bars[57].H != 40 { // 10 of 30
		t.Errorf("bar 57 height %v, want 40", c.Bars[57].H)
	}
	if c.MaxLabel != "3/s" { // 30 calls in 10 s
		t.Errorf("max label %q", c.MaxLabel)
	}
	if !strings.HasSuffix(last.Title, "30 calls (3/s)") || !strings.HasPrefix(last.Title, "15:09:20") {
		t.Errorf("title %q", last.Title)
	}
	// A tick every 2 minutes counted back from now: now, −2m … −8m.
	var labels []string
	for _, tk := range c.Ticks {
		labels = append(labels, tk.Label)
	}
	if got := strings.Join(labels, " "); got != "now −2m −4m −6m −8m" {
		t.Errorf("ticks %q", got)
	}
	if c.Ticks[0].X != round2(last.X+last.W/2) {
		t.Errorf("the 'now' tick is not under the last bar")
	}
	if !rateChart(rate(now), 600, 120).Empty {
		t.Error("no calls is not Empty")
	}
	if c.ViewBox() != "0 -16 600 154" || c.TickY() != 134 {
		t.Errorf("viewBox %q tickY %v", c.ViewBox(), c.TickY())
	}
}

func TestHistogramChart(t *testing.T) {
	c := histogramChart(hist(0, 0, 0, 5, 15, 0, 30), 600, 100)
	n := len(streams.DurationBuckets) + 1
	if len(c.Bars) != n || len(c.Ticks) != (n+1)/2 {
		t.Fatalf("%d bars, %d ticks, want %d bars and a tick every other one", len(c.Bars), len(c.Ticks), n)
	}
	if c.Bars[6].H != 100 || c.Bars[4].H != 50 || c.Bars[5].H != 0 {
		t.Errorf("heights %v %v %v", c.Bars[6].H, c.Bars[4].H, c.Bars[5].H)
	}
	if c.Bars[4].Title != "≤2ms: 15 runs (30%)" {
		t.Errorf("title %q", c.Bars[4].Title)
	}
	last := len(c.Ticks) - 1
	if c.Ticks[2].Label != "2ms" || c.Ticks[6].Label != "1s" || c.Ticks[last].Label != ">60s" {
		t.Errorf("ticks %q %q %q", c.Ticks[2].Label, c.Ticks[6].Label, c.Ticks[last].Label)
	}
	if c.MaxLabel != "30" {
		t.Errorf("max label %q", c.MaxLabel)
	}
	// A short or missing histogram draws empty buckets, not a panic.
	if e := histogramChart(nil, 600, 100); !e.Empty || len(e.Bars) != n {
		t.Errorf("empty histogram: %+v", e)
	}
}

func TestMergeHistograms(t *testing.T) {
	got := mergeHistograms([]streams.MethodStats{{Histogram: hist(1, 2)}, {Histogram: []int64{10}}, {}})
	if got[0] != 11 || got[1] != 2 || len(got) != len(streams.DurationBuckets)+1 {
		t.Errorf("%v", got)
	}
}

func TestBucketLabel(t *testing.T) {
	for i, want := range map[int]string{0: "≤0.1ms", 3: "≤1ms", 9: "≤100ms", 12: "≤1s", 13: "≤2.5s", 17: "≤60s", 18: ">60s"} {
		if got := bucketLabel(i); got != want {
			t.Errorf("bucketLabel(%d) = %q, want %q", i, got, want)
		}
	}
}

func TestRound2(t *testing.T) {
	for in, want := range map[float64]float64{1.006: 1.01, 33.333: 33.33, -2.345: -2.35, 0: 0, 66.666: 66.67} {
		if got := round2(in); math.Abs(got-want) > 1e-9 {
			t.Errorf("round2(%v) = %v, want %v", in, got, want)
		}
	}
}
