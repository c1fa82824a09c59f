package ui

import (
	"strconv"
	"strings"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

// The charts are SVG drawn on the server from small pure functions, so that
// a page shows the load with JS off; static/app.js redraws the same shapes
// with the same arithmetic when live numbers arrive.

// Sparkline is a line (and the area under it) through values, scaled into a
// w×h box: x from 0 to w, y from h-pad (the value 0) up to pad (the maximum).
type Sparkline struct {
	W, H float64
	Line string // SVG path data: M x,y L x,y …
	Area string // Line closed down to the baseline, for a fill
	Max  float64
	Last float64
}

// sparkline scales values into a w×h box with pad units of room above and
// below. All zeros (or no values) draw a flat line on the baseline; a single
// value draws a horizontal line across the box.
func sparkline(values []float64, w, h, pad float64) Sparkline {
	s := Sparkline{W: w, H: h}
	if len(values) == 0 {
		return s
	}
	for _, v := range values {
		s.Max = max(s.Max, v)
	}
	s.Last = values[len(values)-1]
	base := h - pad
	y := func(v float64) float64 {
		if s.Max <= 0 || v <= 0 {
			return base
		}
		return base - v/s.Max*(h-2*pad)
	}
	pts := values
	if len(pts) == 1 {
		pts = []float64{values[0], values[0]}
	}
	step := w / float64(len(pts)-1)
	var b strings.Builder
	for i, v := range pts {
		if i == 0 {
			b.WriteString("M")
		} else {
			b.WriteString(" L")
		}
		b.WriteString(num(float64(i) * step))
		b.WriteByte(',')
		b.WriteString(num(y(v)))
	}
	s.Line = b.String()
	s.Area = s.Line + " L" + num(w) + "," + num(base) + " L0," + num(base) + " Z"
	return s
}

// Bar is one bar of a bar chart, in SVG user units; Label and Title are
// text for the axis and the tooltip.
type Bar struct {
	X, Y, W, H float64
	Value      float64
	Label      string
	Title      string
}

// bars lays values out as len(values) bars side by side over width w with
// gap units between bars, their heights scaled so that the largest value is
// h tall, standing on the line y=h. A non-zero value is at least minH tall,
// so that a single call stays visible next to thousands.
func bars(values []float64, w, h, gap, minH float64) []Bar {
	n := len(values)
	if n == 0 {
		return nil
	}
	var top float64
	for _, v := range values {
		top = max(top, v)
	}
	bw := (w - gap*float64(n-1)) / float64(n)
	if bw < 0 {
		bw = 0
	}
	out := make([]Bar, n)
	for i, v := range values {
		var bh float64
		if top > 0 && v > 0 {
			bh = max(v/top*h, minH)
		}
		out[i] = Bar{X: round2(float64(i) * (bw + gap)), Y: round2(h - bh), W: round2(bw), H: round2(bh), Value: v}
	}
	return out
}

// Chart is a bar chart with its frame: the page draws Bars inside a box of
// W×H (plus room for the labels), with a top gridline labelled MaxLabel.
type Chart struct {
	W, H     float64
	Bars     []Bar
	MaxLabel string
	Ticks    []Tick // labels under the x axis
	Empty    bool   // every value is zero
	Class    string // an extra CSS class of the SVG
}

// Tick is a label on the x axis, centred on X.
type Tick struct {
	X     float64
	Label string
}

// rateChart draws the calls per RateBucket of rate (oldest first) as bars,
// with ticks every 2 minutes counted back from now.
func rateChart(rate []streams.RatePoint, w, h float64) Chart {
	vals := make([]float64, len(rate))
	var total float64
	for i, p := range rate {
		vals[i] = float64(p.Calls)
		total += vals[i]
	}
	c := Chart{W: w, H: h, Bars: bars(vals, w, h, 2, 1.5), Empty: total == 0}
	var top float64
	for i := range c.Bars {
		top = max(top, vals[i])
		p := rate[i]
		c.Bars[i].Title = p.Start.UTC().Format("15:04:05") + " · " + strconv.FormatInt(p.Calls, 10) + " calls (" +
			fmtRate(float64(p.Calls)/streams.RateBucket.Seconds()) + "/s)"
	}
	c.MaxLabel = fmtRate(top/streams.RateBucket.Seconds()) + "/s"
	n := len(c.Bars)
	perTick := int((2 * time.Minute) / streams.RateBucket)
	for back := 0; back < n; back += perTick {
		b := c.Bars[n-1-back]
		label := "now"
		if back > 0 {
			label = "−" + strconv.Itoa(int((time.Duration(back)*streams.RateBucket)/time.Minute)) + "m"
		}
		c.Ticks = append(c.Ticks, Tick{X: round2(b.X + b.W/2), Label: label})
	}
	return c
}

// histogramChart draws a duration histogram (counts per
// streams.DurationBuckets bucket, plus one overflow bucket) as bars labelled
// with each bucket's upper bound.
func histogramChart(hist []int64, w, h float64) Chart {
	n := len(streams.DurationBuckets) + 1
	vals := make([]float64, n)
	var total float64
	for i := 0; i < n && i < len(hist); i++ {
		vals[i] = float64(hist[i])
		total += vals[i]
	}
	c := Chart{W: w, H: h, Bars: bars(vals, w, h, 4, 1.5), Empty: total == 0, Class: "hist"}
	var top float64
	for i := range c.Bars {
		top = max(top, vals[i])
		label := bucketLabel(i)
		c.Bars[i].Label = label
		share := ""
		if total > 0 {
			share = " (" + fmtPct(vals[i]/total) + ")"
		}
		c.Bars[i].Title = label + ": " + strconv.FormatFloat(vals[i], 'f', -1, 64) + " runs" + share
		// Every other bucket is labelled: 19 labels side by side overlap
		// ("0.1ms0.25ms0.5ms"); each bar's tooltip names its bucket.
		if i%2 == 0 {
			c.Ticks = append(c.Ticks, Tick{X: round2(c.Bars[i].X + c.Bars[i].W/2), Label: strings.TrimPrefix(label, "≤")})
		}
	}
	c.MaxLabel = strconv.FormatFloat(top, 'f', -1, 64)
	return c
}

// bucketLabel names histogram bucket i by its upper bound: "≤5ms", "≤2.5s",
// and ">60s" for the overflow bucket.
func bucketLabel(i int) string {
	if i >= len(streams.DurationBuckets) {
		return ">" + shortMS(streams.DurationBuckets[len(streams.DurationBuckets)-1])
	}
	return "≤" + shortMS(streams.DurationBuckets[i])
}

func shortMS(ms float64) string {
	if ms >= 1000 {
		return strconv.FormatFloat(ms/1000, 'f', -1, 64) + "s"
	}
	return strconv.FormatFloat(ms, 'f', -1, 64) + "ms"
}

// mergeHistograms adds per-method histograms bucket by bucket.
func mergeHistograms(ms []streams.MethodStats) []int64 {
	out := make([]int64, len(streams.DurationBuckets)+1)
	for _, m := range ms {
		for i := 0; i < len(out) && i < len(m.Histogram); i++ {
			out[i] += m.Histogram[i]
		}
	}
	return out
}

func rateValues(rate []streams.RatePoint) []float64 {
	out := make([]float64, len(rate))
	for i, p := range rate {
		out[i] = float64(p.Calls)
	}
	return out
}

// num formats an SVG coordinate with at most two decimals.
func num(f float64) string { return strconv.FormatFloat(round2(f), 'f', -1, 64) }

func round2(f float64) float64 {
	if f < 0 {
		return -round2(-f)
	}
	return float64(int64(f*100+0.5)) / 100
}

// ViewBox is the chart's SVG viewBox: the bars' box plus room for the top
// label above it and the ticks below it.
func (c Chart) ViewBox() string {
	return "0 -16 " + num(c.W) + " " + num(c.H+16+18)
}

// TickY is the baseline of the tick labels.
func (c Chart) TickY() float64 { return c.H + 14 }
