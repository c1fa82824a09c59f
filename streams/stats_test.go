package streams

import (
	"math"
	"strconv"
	"testing"
	"time"
)

func TestBucketOf(t *testing.T) {
	cases := []struct {
		name string
		d    time.Duration
		want int
	}{
		{"zero", 0, 0},
		{"80µs", 80 * time.Microsecond, 0},
		{"exactly 1ms", time.Millisecond, 3},
		{"just over 1ms", time.Millisecond + time.Microsecond, 4},
		{"7ms", 7 * time.Millisecond, 6},
		{"exactly 60s", time.Minute, len(DurationBuckets) - 1},
		{"over the last bound", 2 * time.Minute, len(DurationBuckets)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := bucketOf(tc.d); got != tc.want {
				t.Fatalf("bucketOf(%s) = %d, want %d", tc.d, got, tc.want)
			}
		})
	}
}

func hist(pairs ...int64) []int64 {
	h := make([]int64, len(DurationBuckets)+1)
	for i := 0; i+1 < len(pairs); i += 2 {
		h[pairs[i]] = pairs[i+1]
	}
	return h
}

func TestPercentile(t *testing.T) {
	cases := []struct {
		name string
		h    []int64
		q    float64
		want float64
	}{
		{"empty", hist(), 0.5, 0},
		{"all in the first bucket, median", hist(0, 10), 0.5, 0.05},
		{"all in 5..10ms, p50 interpolates", hist(6, 100), 0.5, 7.5},
		{"all in 5..10ms, p100 is the bound", hist(6, 100), 1, 10},
		{"split 90/10, p95 in the upper bucket", hist(0, 90, 9, 10), 0.95, 75},
		{"overflow bucket ends at twice the last bound", hist(int64(len(DurationBuckets)), 4), 1, 120000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.h, tc.q); math.Abs(got-tc.want) > 1e-9 {
				t.Fatalf("Percentile = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFinishStats(t *testing.T) {
	ms := MethodStats{Calls: 8, Errors: 2, Histogram: hist(6, 4)}
	finishStats(&ms, 4, 30000) // 4 runs, 30ms in all
	if ms.SuccessRate != 0.75 || ms.AvgMS != 7.5 || ms.P50MS != 7.5 {
		t.Fatalf("%+v", ms)
	}
	none := MethodStats{Histogram: hist()}
	finishStats(&none, 0, 0)
	if none.SuccessRate != 1 || none.AvgMS != 0 || none.P99MS != 0 {
		t.Fatalf("no calls: %+v", none)
	}
}

func TestRatePoints(t *testing.T) {
	now := time.UnixMilli(1_000_000_005_000) // 5s into a bucket
	cur := now.UnixMilli() / RateBucket.Milliseconds()
	rate := map[string]string{
		strconv.FormatInt(cur, 10):                    "5",
		strconv.FormatInt(cur-1, 10):                  "10",
		strconv.FormatInt(cur-RateBuckets, 10):        "999", // out of the window
		"echo:" + strconv.FormatInt(cur, 10):          "2",
		strconv.FormatInt(cur-int64(6), 10):           "7", // out of the last minute
		"echo:" + strconv.FormatInt(cur-int64(3), 10): "1",
	}
	pts, perSec := ratePoints("", rate, now)
	if len(pts) != RateBuckets || pts[RateBuckets-1].Calls != 5 || pts[RateBuckets-2].Calls != 10 || pts[0].Calls != 0 {
		t.Fatalf("points: first %+v, last two %+v", pts[0], pts[RateBuckets-2:])
	}
	if want := 15.0 / 55; math.Abs(perSec-want) > 1e-9 { // 5 full buckets + 5s of the current one
		t.Fatalf("calls/s = %v, want %v", perSec, want)
	}
	mpts, _ := ratePoints("echo", rate, now)
	if mpts[RateBuckets-1].Calls != 2 || mpts[RateBuckets-4].Calls != 1 {
		t.Fatalf("method points %+v", mpts[RateBuckets-4:])
	}
}

func TestOutcomeOf(t *testing.T) {
	cases := []struct {
		name  string
		mode  settleMode
		reply Reply
		want  string
	}{
		{"result", settleAnswer, ResultReply("a", []byte(`1`)), "ok"},
		{"handler error", settleAnswer, ErrorReply("a", NewError(CodeHandlerError, "x")), "error"},
		{"timeout", settleAnswer, ErrorReply("a", NewError(CodeTimeout, "x")), "timeout"},
		{"cancelled", settleAnswer, ErrorReply("a", NewError(CodeCancelled, "x")), "cancelled"},
		{"retry", settleRetry, Reply{ID: "a"}, "retry"},
		{"dead", settleDead, ErrorReply("a", NewError(CodeDeadLettered, "x")), "dead"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := outcomeOf(tc.mode, tc.reply).String(); got != tc.want {
				t.Fatalf("outcomeOf = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestOutcomeSpellings: one Outcome inside, two spellings outside — the API
// value (activity, stats, story) and the metrics/log label — each mapped once.
func TestOutcomeSpellings(t *testing.T) {
	cases := []struct {
		name       string
		o          Outcome
		api, label string
	}{
		{"result", OutcomeOf(nil), "ok", "ok"},
		{"handler error", OutcomeOf(NewError(CodeHandlerError, "x")), "error", "handler_error"},
		{"a handler's own code", OutcomeOf(NewError(4711, "x")), "error", "handler_error"},
		{"unknown method (edge)", OutcomeOf(NewError(CodeMethodNotFound, "x")), "error", "method_not_found"},
		{"timeout", OutcomeOf(NewError(CodeTimeout, "x")), "timeout", "timeout"},
		{"cancelled", OutcomeOf(NewError(CodeCancelled, "x")), "cancelled", "cancelled"},
		{"retry", outcomeOf(settleRetry, Reply{ID: "a"}), "retry", "retry"},
		{"dead letter", outcomeOf(settleDead, ErrorReply("a", NewError(CodeDeadLettered, "x"))), "dead", "dead_lettered"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.o.String(); got != tc.api {
				t.Errorf("String = %q, want %q", got, tc.api)
			}
			if got := tc.o.Label(); got != tc.label {
				t.Errorf("Label = %q, want %q", got, tc.label)
			}
		})
	}
}
