package ui

import (
	"strconv"
	"strings"

	"github.com/streamrpc/streamrpc/streams"
)

// The charts of a time window (streams.WindowStats): the error rate per
// bucket as bars, and p50 and p99 per bucket as lines.

// LineChart is lines through a W×H box, the value 0 on its bottom edge and
// Max on its top edge, with a top gridline labelled MaxLabel.
type LineChart struct {
	W, H     float64
	Lines    []ChartLine
	MaxLabel string
	Ticks    []Tick
	Empty    bool
}

// ChartLine is one line of a LineChart: its SVG path and its legend.
type ChartLine struct {
	Class, Path, Label string
}

// ViewBox is the chart's SVG viewBox, as Chart's.
func (c LineChart) ViewBox() string { return Chart{W: c.W, H: c.H}.ViewBox() }

// TickY is the baseline of the tick labels.
func (c LineChart) TickY() float64 { return c.H + 14 }

// windowTicks labels a window's first bucket, its middle one and "now".
func windowTicks(ws *streams.WindowStats, xOf func(i int) float64) []Tick {
	n := len(ws.Series)
	if n == 0 {
		return nil
	}
	label := func(i int) string {
		if i == n-1 {
			return "now"
		}
		return "−" + shortAgo(ws.Series[n-1].Start.Sub(ws.Series[i].Start).Minutes())
	}
	idx := []int{0, n / 2, n - 1}
	if n < 3 {
		idx = []int{0, n - 1}
	}
	var out []Tick
	for _, i := range idx {
		out = append(out, Tick{X: round2(xOf(i)), Label: label(i)})
	}
	return out
}

func shortAgo(minutes float64) string {
	if minutes >= 120 {
		return strconv.FormatFloat(minutes/60, 'f', 0, 64) + "h"
	}
	return strconv.FormatFloat(minutes, 'f', 0, 64) + "m"
}

// errorRateChart draws the error rate of each bucket of ws as bars.
func errorRateChart(ws *streams.WindowStats, w, h float64) Chart {
	vals := make([]float64, len(ws.Series))
	var top float64
	var calls int64
	for i, p := range ws.Series {
		vals[i] = p.ErrorRate
		top = max(top, p.ErrorRate)
		calls += p.Calls
	}
	c := Chart{W: w, H: h, Bars: bars(vals, w, h, 2, 1.5), Empty: calls == 0, Class: "errs"}
	for i, p := range ws.Series {
		c.Bars[i].Title = p.Start.UTC().Format("15:04") + " · " + strconv.FormatInt(p.Errors, 10) + " errors of " +
			strconv.FormatInt(p.Calls, 10) + " calls (" + fmtPct(p.ErrorRate) + ")"
	}
	c.MaxLabel = fmtPct(top)
	c.Ticks = windowTicks(ws, func(i int) float64 { return c.Bars[i].X + c.Bars[i].W/2 })
	return c
}

// latencyChart draws p50 and p99 of each bucket of ws as two lines; a
// bucket with no runs breaks the lines.
func latencyChart(ws *streams.WindowStats, w, h float64) LineChart {
	c := LineChart{W: w, H: h}
	var top float64
	for _, p := range ws.Series {
		top = max(top, p.P99MS, p.P50MS)
	}
	c.Empty = top == 0
	c.MaxLabel = fmtMS(top)
	n := len(ws.Series)
	x := func(i int) float64 {
		if n <= 1 {
			return w / 2
		}
		return float64(i) * w / float64(n-1)
	}
	path := func(v func(streams.WindowPoint) float64) string {
		var b strings.Builder
		pen := false
		for i, p := range ws.Series {
			val := v(p)
			if val <= 0 || top <= 0 {
				pen = false
				continue
			}
			pt := num(x(i)) + "," + num(h-val/top*h)
			if pen {
				b.WriteString(" L" + pt)
			} else {
				if b.Len() > 0 {
					b.WriteByte(' ')
				}
				// A segment starts with a zero-length line: a lone point
				// (a bucket between two without runs) shows as a dot.
				b.WriteString("M" + pt + " L" + pt)
			}
			pen = true
		}
		return b.String()
	}
	c.Lines = []ChartLine{
		{Class: "p50", Label: "p50", Path: path(func(p streams.WindowPoint) float64 { return p.P50MS })},
		{Class: "p99", Label: "p99", Path: path(func(p streams.WindowPoint) float64 { return p.P99MS })},
	}
	c.Ticks = windowTicks(ws, x)
	return c
}
