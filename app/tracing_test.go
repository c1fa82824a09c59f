package app

import (
	"testing"

	"github.com/streamrpc/streamrpc/streams"
)

// TestTracingOffIsInert: without a TracerProvider the edge keeps no trace
// context, starts no span and puts nothing in the envelope, even when the
// caller sends a traceparent.
func TestTracingOffIsInert(t *testing.T) {
	e := newTestEdge(t, Config{})
	headers := func(k string, _ ...string) string {
		return map[string]string{headerTraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}[k]
	}
	req := callRequest{handler: "h", method: "m", trace: e.traceHeaders(headers)}
	if req.trace != (traceContext{}) {
		t.Fatalf("trace context kept with tracing off: %+v", req.trace)
	}
	if span := e.startSpan("ID", &req, false); span != nil {
		t.Fatal("a span started with tracing off")
	}
	allocs := testing.AllocsPerRun(100, func() {
		r := callRequest{handler: "h", method: "m", trace: e.traceHeaders(headers)}
		endSpan(e.startSpan("ID", &r, false), streamsReplyOK, nil, false)
	})
	if allocs != 0 {
		t.Fatalf("tracing off allocates %v times per call, want 0", allocs)
	}
}

var streamsReplyOK = streams.ResultReply("ID", []byte("1"))
