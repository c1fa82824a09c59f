package app

import (
	"context"
	"net/textproto"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamrpc/streamrpc/streams"
)

// tracerName names the edge's tracer (the instrumentation scope).
const tracerName = "github.com/streamrpc/streamrpc/app"

// W3C trace context headers.
const (
	headerTraceParent = "traceparent"
	headerTraceState  = "tracestate"
)

// traceContext is a W3C trace context as two strings: what came with a call
// (headers of the request, or of the WebSocket upgrade) and, once the edge's
// span started, what travels in the call's envelope. It is the carrier the
// propagator reads and writes, with no map to allocate.
type traceContext struct{ parent, state string }

func (t *traceContext) Get(key string) string {
	switch key {
	case headerTraceParent:
		return t.parent
	case headerTraceState:
		return t.state
	}
	return ""
}

func (t *traceContext) Set(key, value string) {
	switch key {
	case headerTraceParent:
		t.parent = value
	case headerTraceState:
		t.state = value
	}
}

func (t *traceContext) Keys() []string { return []string{headerTraceParent, headerTraceState} }

// propagator reads and writes W3C traceparent/tracestate only: that is what
// travels in the envelope (streams.Call.TraceParent/TraceState).
var propagator = propagation.TraceContext{}

// traceHeaders copies a request's trace context headers (get is Fiber's
// c.Get or the WebSocket's Headers), tracing on or off: with tracing off the
// caller's context travels in the envelope as it came, so that the
// consumer's handler and the sidecar's upstream continue the caller's trace
// (propagation is not exporting). Nothing is allocated when the caller sends
// none.
func (e *Edge) traceHeaders(get func(string, ...string) string) traceContext {
	return validTrace(get(headerTraceParent), get(headerTraceState))
}

// validTrace keeps a W3C trace context the envelope may carry: a
// version-00 traceparent, and a tracestate only with one; anything else is
// dropped (the call then starts a new trace), never refused. It copies:
// Fiber reuses the request's buffers once the handler returns.
func validTrace(parent, state string) traceContext {
	if !streams.ValidTraceParent(parent) {
		return traceContext{}
	}
	t := traceContext{parent: strings.Clone(parent)}
	if streams.ValidTraceState(state) {
		t.state = strings.Clone(state)
	}
	return t
}

// canonicalKeys adapts the WebSocket's header lookup, whose keys are
// fasthttp's normalized names ("Traceparent"), to lower-case W3C names.
func canonicalKeys(get func(string, ...string) string) func(string, ...string) string {
	return func(key string, def ...string) string { return get(textproto.CanonicalMIMEHeaderKey(key), def...) }
}

// startSpan starts the edge's server span of a call, as a child of the
// caller's trace context if it sent one, and puts the span's own context on
// req, for the envelope: the consumer's span becomes its child. With
// tracing off it does nothing and allocates nothing.
func (e *Edge) startSpan(id string, req *callRequest, async bool) trace.Span {
	if e.tracer == nil {
		return nil
	}
	ctx := context.Background()
	if req.trace.parent != "" {
		in := req.trace // a copy: req must not escape to the heap (it would on every call, tracing or not)
		ctx = propagator.Extract(ctx, &in)
	}
	_, span := e.tracer.Start(ctx, req.handler+"/"+req.method,
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(
			attribute.String("rpc.system", "streamrpc"),
			attribute.String("rpc.service", req.handler),
			attribute.String("rpc.method", req.method),
			attribute.String("streamrpc.call_id", id),
			attribute.Bool("streamrpc.async", async),
			attribute.Bool("streamrpc.notification", req.notify),
		))
	out := &traceContext{}
	if span.SpanContext().IsValid() {
		propagator.Inject(trace.ContextWithSpan(context.Background(), span), out)
	}
	req.trace = *out
	return span
}

// endSpan ends a call's span with its outcome; accepted: the call was only
// enqueued (async, notification), its outcome is the consumer's span's.
func endSpan(span trace.Span, reply streams.Reply, rerr *streams.Error, accepted bool) {
	if span == nil {
		return
	}
	switch {
	case rerr != nil:
		span.SetAttributes(attribute.Int("rpc.jsonrpc.error_code", rerr.Code), attribute.String("streamrpc.outcome", outcomeLabel(rerr)))
		span.SetStatus(codes.Error, rerr.Message)
	case accepted:
		span.SetAttributes(attribute.String("streamrpc.outcome", OutcomeAccepted))
	case !reply.OK:
		we := reply.Err()
		span.SetAttributes(attribute.Int("rpc.jsonrpc.error_code", we.Code), attribute.String("streamrpc.outcome", outcomeLabel(we)))
		span.SetStatus(codes.Error, we.Message)
	default:
		span.SetAttributes(attribute.String("streamrpc.outcome", OutcomeOK))
	}
	span.End()
}
