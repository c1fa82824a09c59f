package ui

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

// fakeSource is fixed test data for rendering: a plain struct, not a Redis.
type fakeSource struct {
	handlers []streams.HandlerDetail
	activity []streams.Activity
	calls    map[string]streams.CallStory
	dead     map[string][]streams.DeadLetter
	err      error // returned by every method when set
}

func (f *fakeSource) Handlers(context.Context) ([]streams.HandlerSummary, error) {
	if f.err != nil {
		return nil, f.err
	}
	out := make([]streams.HandlerSummary, len(f.handlers))
	for i, h := range f.handlers {
		out[i] = h.HandlerSummary
	}
	return out, nil
}

func (f *fakeSource) Handler(_ context.Context, name string) (streams.HandlerDetail, error) {
	if f.err != nil {
		return streams.HandlerDetail{}, f.err
	}
	for _, h := range f.handlers {
		if h.Name == name {
			return h, nil
		}
	}
	return streams.HandlerDetail{}, fmt.Errorf("handler %q: %w", name, streams.ErrNotFound)
}

func (f *fakeSource) Activity(_ context.Context, handler string, limit int) ([]streams.Activity, error) {
	if f.err != nil {
		return nil, f.err
	}
	var out []streams.Activity
	for _, a := range f.activity {
		if (handler == "" || a.Handler == handler) && len(out) < limit {
			out = append(out, a)
		}
	}
	return out, nil
}

func (f *fakeSource) Call(_ context.Context, id string) (streams.CallStory, error) {
	if f.err != nil {
		return streams.CallStory{}, f.err
	}
	s, ok := f.calls[id]
	if !ok {
		return streams.CallStory{}, streams.ErrNotFound
	}
	return s, nil
}

func (f *fakeSource) DeadLetters(_ context.Context, handler string, limit int) ([]streams.DeadLetter, int64, error) {
	if f.err != nil {
		return nil, 0, f.err
	}
	dl := f.dead[handler]
	total := int64(len(dl))
	if len(dl) > limit {
		dl = dl[:limit]
	}
	return dl, total, nil
}

var errRedisDown = errors.New("redis unavailable: connection refused")

// testNow is the clock of every rendering test.
var testNow = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func rate(start time.Time, calls ...int64) []streams.RatePoint {
	out := make([]streams.RatePoint, streams.RateBuckets)
	first := start.Add(-time.Duration(streams.RateBuckets-1) * streams.RateBucket).Truncate(streams.RateBucket)
	for i := range out {
		out[i].Start = first.Add(time.Duration(i) * streams.RateBucket)
		if j := i - (len(out) - len(calls)); j >= 0 {
			out[i].Calls = calls[j]
		}
	}
	return out
}

func hist(counts ...int64) []int64 {
	out := make([]int64, len(streams.DurationBuckets)+1)
	copy(out, counts)
	return out
}

// newFakeSource is a small but complete world: a busy echo handler, a
// billing handler with failures and dead letters, and a handler gone offline.
func newFakeSource() *fakeSource {
	now := testNow
	wave := make([]int64, 60)
	for i := range wave {
		wave[i] = int64(40 + 30*((i*7)%11)/10 + i)
	}
	echoStats := []streams.MethodStats{
		{Method: "echo", Calls: 18250, Errors: 0, SuccessRate: 1, AvgMS: 1.4, P50MS: 0.9, P95MS: 2.8, P99MS: 4.6, Histogram: hist(9200, 6100, 2400, 420, 100, 30), LastActivity: now.Add(-800 * time.Millisecond)},
		{Method: "sleep", Calls: 412, Errors: 3, Timeouts: 3, SuccessRate: 409.0 / 412, AvgMS: 212, P50MS: 180, P95MS: 480, P99MS: 950, Histogram: hist(0, 0, 0, 0, 12, 40, 90, 160, 80, 27, 3), LastActivity: now.Add(-12 * time.Second)},
		{Method: "fail", Calls: 37, Errors: 37, Retries: 12, DeadLetters: 2, SuccessRate: 0, AvgMS: 0.6, P50MS: 0.5, P95MS: 1.1, P99MS: 1.3, Histogram: hist(30, 7), LastActivity: now.Add(-3 * time.Minute)},
	}
	echo := streams.HandlerDetail{
		HandlerSummary: streams.HandlerSummary{
			Name: "echo", Description: "The example handler: echo, sleep and fail.", Kind: "go", Methods: 3,
			ConsumersOnline: 2, Backlog: 4, Pending: 3, Delayed: 1, DeadLetters: 2,
			Totals: streams.MethodStats{Method: "", Calls: 18699, Errors: 40, Retries: 12, DeadLetters: 2, Timeouts: 3,
				SuccessRate: 18659.0 / 18699, AvgMS: 6.1, P50MS: 0.9, P95MS: 12, P99MS: 310, LastActivity: now.Add(-800 * time.Millisecond)},
			CallsPerSecond: 31.4, Rate: rate(now, wave...), LastActivity: now.Add(-800 * time.Millisecond),
		},
		Info: streams.HandlerInfo{Name: "echo", Description: "The example handler: echo, sleep and fail.", Kind: "go", Version: "0.4.0", Concurrency: 16, MaxAttempts: 5,
			Methods: []streams.MethodInfo{
				{Name: "echo", Description: "returns its params unchanged",
					ParamsSchema: json.RawMessage(`{"type":"object","properties":{"msg":{"type":"string","examples":["hello"]}},"required":["msg"]}`),
					ResultSchema: json.RawMessage(`{"type":"object","properties":{"msg":{"type":"string"}}}`)},
				{Name: "sleep", Description: `sleeps {"ms":N} milliseconds, then returns {"slept":N}`,
					ParamsSchema: json.RawMessage(`{"type":"object","properties":{"ms":{"type":"integer","minimum":0,"default":100}}}`)},
				{Name: "fail", Description: `returns the error {"message":"…","retryable":bool}`},
			}},
		Methods: echoStats,
		Consumers: []streams.ConsumerInfo{
			{Name: "web-1-4211-a9f2", Kind: "go", Version: "0.4.0", Host: "web-1", Concurrency: 16, Running: 3, Started: now.Add(-3 * time.Hour), LastHeartbeat: now.Add(-2 * time.Second), Online: true},
			{Name: "web-2-977-c01d", Kind: "go", Version: "0.4.0", Host: "web-2", Concurrency: 16, Running: 0, Started: now.Add(-50 * time.Minute), LastHeartbeat: now.Add(-4 * time.Second), Online: true, State: streams.ConsumerWaitingForApp},
			{Name: "web-3-12-ffee", Kind: "go", Version: "0.3.9", Host: "web-3", Concurrency: 8, Started: now.Add(-26 * time.Hour), LastHeartbeat: now.Add(-40 * time.Minute)},
		},
	}
	billing := streams.HandlerDetail{
		HandlerSummary: streams.HandlerSummary{
			Name: "billing.v2", Description: "Charges and refunds.", Kind: "sidecar", Methods: 2, ConsumersOnline: 1,
			Backlog: 0, DeadLetters: 1,
			Totals:         streams.MethodStats{Calls: 932, Errors: 71, Retries: 40, DeadLetters: 1, SuccessRate: 861.0 / 932, AvgMS: 84, P50MS: 61, P95MS: 240, P99MS: 1800},
			CallsPerSecond: 0.35, Rate: rate(now, 0, 2, 5, 1, 0, 0, 3, 8, 4, 2, 1, 0, 6), LastActivity: now.Add(-14 * time.Second),
		},
		Info: streams.HandlerInfo{Name: "billing.v2", Kind: "sidecar", Methods: []streams.MethodInfo{{Name: "charge"}, {Name: "refund"}}},
		Methods: []streams.MethodStats{
			{Method: "charge", Calls: 880, Errors: 70, Retries: 40, DeadLetters: 1, SuccessRate: 810.0 / 880, AvgMS: 86, P50MS: 62, P95MS: 240, P99MS: 1800, Histogram: hist(0, 0, 0, 10, 90, 400, 300, 60, 10, 6, 4)},
			{Method: "refund", Calls: 52, Errors: 1, SuccessRate: 51.0 / 52, AvgMS: 40, P50MS: 38, P95MS: 70, P99MS: 90, Histogram: hist(0, 0, 0, 0, 20, 30, 2)},
		},
		Consumers: []streams.ConsumerInfo{{Name: "billing-0", Kind: "sidecar", Host: "pay-0", Concurrency: 4, Running: 1, Started: now.Add(-time.Hour), LastHeartbeat: now.Add(-time.Second), Online: true}},
	}
	reports := streams.HandlerDetail{
		HandlerSummary: streams.HandlerSummary{Name: "reports", Kind: "go", Methods: 1, Totals: streams.MethodStats{SuccessRate: 1}, Rate: rate(now)},
		Info:           streams.HandlerInfo{Name: "reports", Methods: []streams.MethodInfo{{Name: "monthly"}}},
	}
	f := &fakeSource{
		handlers: []streams.HandlerDetail{echo, billing, reports},
		calls:    map[string]streams.CallStory{},
		dead:     map[string][]streams.DeadLetter{},
	}
	outcomes := []struct {
		h, m, outcome, err string
		ms                 float64
		attempt            int
	}{
		{"echo", "echo", "ok", "", 0.8, 1}, {"echo", "sleep", "ok", "", 250, 1}, {"billing.v2", "charge", "error", "card declined", 93, 1},
		{"echo", "echo", "ok", "", 1.2, 1}, {"billing.v2", "charge", "retry", "gateway timeout", 5012, 2}, {"echo", "fail", "dead", "failed on request", 0.4, 5},
		{"echo", "echo", "ok", "", 0.6, 1}, {"billing.v2", "refund", "ok", "", 41, 1}, {"echo", "sleep", "timeout", "deadline exceeded", 30000, 1},
	}
	for i, o := range outcomes {
		f.activity = append(f.activity, streams.Activity{
			ID: fmt.Sprintf("01JPB3Z7K9%016d", 9000-i), Handler: o.h, Method: o.m, Outcome: o.outcome, DurationMS: o.ms,
			Attempt: o.attempt, Consumer: "web-1-4211-a9f2", Caller: "10.0.3.7", Time: now.Add(-time.Duration(i*1700+800) * time.Millisecond), Error: o.err,
		})
	}
	okID, deadID := "01JPB3Z7K90000000000009000", "01JPB3Z7K90000000000008995"
	t0 := now.Add(-900 * time.Millisecond)
	f.calls[okID] = streams.CallStory{
		CallStatus: streams.CallStatus{ID: okID, State: streams.StateDone, Handler: "echo",
			Reply: streams.ResultReply(okID, json.RawMessage(`{"msg":"hello","n":[1,2.5,-3e2],"ok":true,"none":null}`))},
		Method: "echo", Params: json.RawMessage(`{"msg":"hello","n":[1,2.5,-3e2],"ok":true,"none":null}`),
		Events: []streams.StoryEvent{
			{Time: t0, Event: "queued", Params: json.RawMessage(`{"msg":"hello"}`), Detail: "from 10.0.3.7"},
			{Time: t0.Add(2 * time.Millisecond), Event: "started", Attempt: 1, Consumer: "web-1-4211-a9f2"},
			{Time: t0.Add(3 * time.Millisecond), Event: "finished", Attempt: 1, Consumer: "web-1-4211-a9f2", Outcome: "ok"},
		},
	}
	derr := &streams.Error{Code: streams.CodeHandlerError, Message: "failed on request", Data: json.RawMessage(`{"retryable":true}`)}
	f.calls[deadID] = streams.CallStory{
		CallStatus: streams.CallStatus{ID: deadID, State: streams.StateDead, Handler: "echo", Reply: streams.ErrorReply(deadID, derr)},
		Method:     "fail", Params: json.RawMessage(`{"message":"failed on request","retryable":true}`),
		Events: []streams.StoryEvent{
			{Time: t0, Event: "queued"},
			{Time: t0.Add(1 * time.Millisecond), Event: "started", Attempt: 1, Consumer: "web-1-4211-a9f2"},
			{Time: t0.Add(2 * time.Millisecond), Event: "retried", Attempt: 1, Consumer: "web-1-4211-a9f2", Outcome: "retry", Detail: "failed on request; next attempt in 1s"},
			{Time: t0.Add(1020 * time.Millisecond), Event: "started", Attempt: 2, Consumer: "web-2-977-c01d"},
			{Time: t0.Add(1021 * time.Millisecond), Event: "dead_lettered", Attempt: 2, Consumer: "web-2-977-c01d", Outcome: "dead", Detail: "failed on request"},
		},
	}
	f.dead["echo"] = []streams.DeadLetter{
		{StreamID: "1773500965123-0", ID: deadID, Handler: "echo", Method: "fail", Params: json.RawMessage(`{"message":"failed on request","retryable":true}`),
			Error: derr, Attempts: 2, EnqueuedAt: t0, FailedAt: t0.Add(1021 * time.Millisecond), Consumer: "web-2-977-c01d"},
		{StreamID: "1773500900000-0", ID: "01JPB3Y0000000000000000001", Handler: "echo", Method: "fail", Params: json.RawMessage(`{"message":"upstream said no"}`),
			Error: &streams.Error{Code: 4001, Message: "upstream said no"}, Attempts: 5, EnqueuedAt: now.Add(-3 * time.Minute), FailedAt: now.Add(-3 * time.Minute), Consumer: "web-1-4211-a9f2"},
	}
	f.dead["billing.v2"] = []streams.DeadLetter{{StreamID: "1773500000000-0", ID: "01JPB3X0000000000000000002", Handler: "billing.v2", Method: "charge",
		Error: &streams.Error{Code: streams.CodeTimeout, Message: "gateway timeout"}, Attempts: 5, FailedAt: now.Add(-20 * time.Minute), Consumer: "billing-0"}}
	return f
}
