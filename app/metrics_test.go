package app

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamrpc/streamrpc/streams"
)

// TestObserveCallLabels: outcomes and label values, including the stand-ins
// for names callers chose and the bound on series.
func TestObserveCallLabels(t *testing.T) {
	e := newTestEdge(t, Config{})
	m := e.metrics
	ok := streams.Reply{ID: "x", OK: true, Body: json.RawMessage(`1`), QueueWait: time.Millisecond, Processing: time.Millisecond}
	cases := []struct {
		name                     string
		req                      callRequest
		reply                    streams.Reply
		rerr                     *streams.Error
		handler, method, outcome string
	}{
		{name: "ok", req: callRequest{handler: "h", method: "m"}, reply: ok, handler: "h", method: "m", outcome: "ok"},
		{name: "handler's own code", req: callRequest{handler: "h", method: "m"}, reply: streams.ErrorReply("x", streams.NewError(4001, "no")), handler: "h", method: "m", outcome: "handler_error"},
		{name: "timeout", req: callRequest{handler: "h", method: "m"}, rerr: streams.NewError(streams.CodeTimeout, "late"), handler: "h", method: "m", outcome: "timeout"},
		{name: "notification", req: callRequest{handler: "h", method: "m", notify: true}, reply: streams.Reply{ID: "x"}, handler: "h", method: "m", outcome: "accepted"},
		{name: "unknown method", req: callRequest{handler: "h", method: "zzz"}, rerr: newError(streams.CodeMethodNotFound, `handler "h" has no method "zzz"`), handler: "h", method: labelUnknown, outcome: "method_not_found"},
		{name: "unknown handler", req: callRequest{handler: "zzz", method: "zzz"}, rerr: newError(streams.CodeMethodNotFound, unknownHandlerMsg+`"zzz"`), handler: labelUnknown, method: labelUnknown, outcome: "method_not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := m.calls.WithLabelValues(tc.handler, tc.method, tc.outcome)
			before := testutil.ToFloat64(c)
			m.observeCall(&tc.req, tc.reply, tc.rerr, time.Millisecond)
			if got := testutil.ToFloat64(c) - before; got != 1 {
				t.Fatalf("streamrpc_calls_total{%s,%s,%s} grew by %v, want 1", tc.handler, tc.method, tc.outcome, got)
			}
		})
	}
	t.Run("series bound", func(t *testing.T) {
		for i := range maxSeries + 10 {
			m.observeCall(&callRequest{handler: "h", method: fmt.Sprintf("m%d", i)}, ok, nil, time.Millisecond)
		}
		if got := testutil.ToFloat64(m.calls.WithLabelValues(labelOther, labelOther, OutcomeOK)); got < 10 {
			t.Fatalf("calls past the bound labelled _other: %v, want at least 10", got)
		}
	})
}

// TestObserveCallAllocs: recording an answered call allocates nothing once
// its handler/method series exist: the hot path stays cheap.
func TestObserveCallAllocs(t *testing.T) {
	e := newTestEdge(t, Config{})
	req := callRequest{handler: "h", method: "m"}
	reply := streams.Reply{ID: "x", OK: true, Body: json.RawMessage(`1`), QueueWait: time.Millisecond, Processing: time.Millisecond}
	e.metrics.observeCall(&req, reply, nil, time.Millisecond)
	if allocs := testing.AllocsPerRun(1000, func() { e.metrics.observeCall(&req, reply, nil, time.Millisecond) }); allocs != 0 {
		t.Fatalf("observeCall allocates %v times, want 0", allocs)
	}
}

func BenchmarkObserveCall(b *testing.B) {
	e, err := New(nil, Config{})
	if err != nil {
		b.Fatal(err)
	}
	req := callRequest{handler: "h", method: "m"}
	reply := streams.Reply{ID: "x", OK: true, Body: json.RawMessage(`1`), QueueWait: time.Millisecond, Processing: time.Millisecond}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.metrics.observeCall(&req, reply, nil, time.Millisecond)
		}
	})
}
