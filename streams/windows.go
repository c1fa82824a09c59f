package streams

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Honest time windows: the stats hash counts since stats began, which an
// incident skews for good. The recorder's flush (one script run per handler
// at most every 0.5 s, not per call) also adds each handler's calls, errors
// and duration histogram to time buckets: per minute for the last hour
// (srpc:{h}:win-m) and per quarter hour for the last day (srpc:{h}:win-q).
// The windows read from them recover after an incident.
//
// Fields are "<bucket>:c" (calls answered), "<bucket>:e" (errors) and
// "<bucket>:h<i>" (runs in DurationBuckets bucket i), bucket being the
// Unix time divided by the bucket width.

// WindowDef is one time window over one bucket resolution.
type WindowDef struct {
	Name    string        `json:"name"`
	Bucket  time.Duration `json:"-"`
	Buckets int           `json:"-"`
}

// Resolutions of the window buckets, and how many of each are kept (one more
// than a window spans, for the bucket under way).
const (
	WindowMinute      = time.Minute
	WindowQuarter     = 15 * time.Minute
	windowMinuteKeep  = 61
	windowQuarterKeep = 97
)

// Windows are the windows the API and the dashboard offer. A window is its
// last Buckets buckets, the current one (partly elapsed) included: "5m"
// covers between 4 and 5 minutes.
var Windows = []WindowDef{
	{Name: "5m", Bucket: WindowMinute, Buckets: 5},
	{Name: "1h", Bucket: WindowMinute, Buckets: 60},
	{Name: "24h", Bucket: WindowQuarter, Buckets: 96},
}

// DefaultWindow is the window when none is asked for.
const DefaultWindow = "1h"

// ParseWindow returns the window named s ("" for DefaultWindow).
func ParseWindow(s string) (WindowDef, error) {
	if s == "" {
		s = DefaultWindow
	}
	names := make([]string, len(Windows))
	for i, w := range Windows {
		if w.Name == s {
			return w, nil
		}
		names[i] = w.Name
	}
	return WindowDef{}, fmt.Errorf("%w: window %q is not one of %s", ErrBadQuery, s, strings.Join(names, ", "))
}

func (w WindowDef) key(handler string) string {
	if w.Bucket == WindowQuarter {
		return windowQuarterKey(handler)
	}
	return windowMinuteKey(handler)
}

// WindowPoint is one bucket of a window.
type WindowPoint struct {
	Start     time.Time `json:"start"`
	Calls     int64     `json:"calls"`
	Errors    int64     `json:"errors"`
	ErrorRate float64   `json:"error_rate"` // 0 when no calls
	P50MS     float64   `json:"p50_ms"`
	P99MS     float64   `json:"p99_ms"`
}

// WindowStats are a handler's numbers over one window.
type WindowStats struct {
	Name           string    `json:"name"`
	Since          time.Time `json:"since"` // start of the oldest bucket
	Calls          int64     `json:"calls"`
	Errors         int64     `json:"errors"`
	SuccessRate    float64   `json:"success_rate"` // 1 when no calls
	CallsPerSecond float64   `json:"calls_per_second"`
	P50MS          float64   `json:"p50_ms"`
	P95MS          float64   `json:"p95_ms"`
	P99MS          float64   `json:"p99_ms"`
	// Histogram and Series are left out of the handler summaries (the
	// overview and the stats events need neither).
	Histogram []int64       `json:"histogram,omitempty"`
	Series    []WindowPoint `json:"series,omitempty"` // oldest first, one point per bucket
}

// buildWindow reads window w from its bucket hash's fields at now.
func buildWindow(w WindowDef, fields map[string]string, now time.Time) WindowStats {
	width := w.Bucket.Milliseconds()
	cur := now.UnixMilli() / width
	first := cur - int64(w.Buckets) + 1
	ws := WindowStats{Name: w.Name, Since: time.UnixMilli(first * width), Histogram: make([]int64, len(DurationBuckets)+1)}
	n := func(b int64, f string) int64 {
		v, _ := strconv.ParseInt(fields[strconv.FormatInt(b, 10)+":"+f], 10, 64)
		return v
	}
	hist := make([]int64, len(DurationBuckets)+1)
	for b := first; b <= cur; b++ {
		p := WindowPoint{Start: time.UnixMilli(b * width), Calls: n(b, "c"), Errors: n(b, "e")}
		for i := range hist {
			hist[i] = n(b, "h"+strconv.Itoa(i))
			ws.Histogram[i] += hist[i]
		}
		if p.Calls > 0 {
			p.ErrorRate = float64(p.Errors) / float64(p.Calls)
		}
		p.P50MS, p.P99MS = Percentile(hist, 0.50), Percentile(hist, 0.99)
		ws.Calls += p.Calls
		ws.Errors += p.Errors
		ws.Series = append(ws.Series, p)
	}
	ws.SuccessRate = 1
	if ws.Calls > 0 {
		ws.SuccessRate = float64(ws.Calls-ws.Errors) / float64(ws.Calls)
	}
	if span := now.Sub(ws.Since).Seconds(); span > 0 {
		ws.CallsPerSecond = float64(ws.Calls) / span
	}
	ws.P50MS = Percentile(ws.Histogram, 0.50)
	ws.P95MS = Percentile(ws.Histogram, 0.95)
	ws.P99MS = Percentile(ws.Histogram, 0.99)
	return ws
}

// windowTally is what one flush adds to the window buckets. Its keys are
// structs, not the hash's field names, so that counting a call allocates
// nothing: the names are built once per flush (args).
type windowTally struct {
	minute, quarter map[windowField]int64
}

// windowField is one field of a window hash: bucket b's calls (f = fieldCalls),
// errors (fieldErrors), or runs in duration bucket f (f >= 0).
type windowField struct {
	b int64
	f int16
}

const (
	fieldCalls  = -1
	fieldErrors = -2
)

func (t *windowTally) init() {
	if t.minute == nil {
		t.minute, t.quarter = map[windowField]int64{}, map[windowField]int64{}
	}
}

func (t *windowTally) add(at time.Time, answered, failed, ran bool, bucket int) {
	t.init()
	ms := at.UnixMilli()
	for _, r := range [2]struct {
		m     map[windowField]int64
		width int64
	}{{t.minute, WindowMinute.Milliseconds()}, {t.quarter, WindowQuarter.Milliseconds()}} {
		b := ms / r.width
		if answered {
			r.m[windowField{b, fieldCalls}]++
		}
		if failed {
			r.m[windowField{b, fieldErrors}]++
		}
		if ran {
			r.m[windowField{b, int16(bucket)}]++
		}
	}
}

func (t *windowTally) merge(old windowTally) {
	t.init()
	for k, v := range old.minute {
		t.minute[k] += v
	}
	for k, v := range old.quarter {
		t.quarter[k] += v
	}
}

// appendWindow appends m's field/increment pairs, in a stable order.
func appendWindow(args []any, m map[windowField]int64) []any {
	keys := make([]windowField, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].b != keys[j].b {
			return keys[i].b < keys[j].b
		}
		return keys[i].f < keys[j].f
	})
	for _, k := range keys {
		name := strconv.FormatInt(k.b, 10) + ":"
		switch k.f {
		case fieldCalls:
			name += "c"
		case fieldErrors:
			name += "e"
		default:
			name += "h" + strconv.Itoa(int(k.f))
		}
		args = append(args, name, m[k])
	}
	return args
}
