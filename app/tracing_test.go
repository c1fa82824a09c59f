package app

import (
	"testing"

	"github.com/streamrpc/streamrpc/streams"
)

// TestTracingOffPassesThrough: without a TracerProvider the edge starts no
// span, but the caller's trace context travels in the envelope as it came
// (a malformed one is dropped); with none, nothing is allocated.
func TestTracingOffPassesThrough(t *testing.T) {
	e := newTestEdge(t, Config{})
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	cases := []struct {
		name    string
		headers map[string]string
		want    traceContext
	}{
		{"traceparent and tracestate", map[string]string{headerTraceParent: tp, headerTraceState: "congo=t61rcWkgMzE"}, traceContext{parent: tp, state: "congo=t61rcWkgMzE"}},
		{"traceparent alone", map[string]string{headerTraceParent: tp}, traceContext{parent: tp}},
		{"malformed traceparent dropped", map[string]string{headerTraceParent: "00-xyz", headerTraceState: "a=b"}, traceContext{}},
		{"tracestate without traceparent dropped", map[string]string{headerTraceState: "a=b"}, traceContext{}},
		{"bad tracestate dropped", map[string]string{headerTraceParent: tp, headerTraceState: "a=\x01"}, traceContext{parent: tp}},
		{"none", nil, traceContext{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			get := func(k string, _ ...string) string { return tc.headers[k] }
			req := callRequest{handler: "h", method: "m", trace: e.traceHeaders(get)}
			if span := e.startSpan("ID", &req, false); span != nil {
				t.Fatal("a span started with tracing off")
			}
			if req.trace != tc.want {
				t.Fatalf("envelope trace %+v, want %+v", req.trace, tc.want)
			}
		})
	}
	none := func(string, ...string) string { return "" }
	allocs := testing.AllocsPerRun(100, func() {
		r := callRequest{handler: "h", method: "m", trace: e.traceHeaders(none)}
		endSpan(e.startSpan("ID", &r, false), streamsReplyOK, nil, false)
	})
	if allocs != 0 {
		t.Fatalf("tracing off allocates %v times per call without trace headers, want 0", allocs)
	}
}

var streamsReplyOK = streams.ResultReply("ID", []byte("1"))
