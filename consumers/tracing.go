package consumers

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamrpc/streamrpc/streams"
)

// tracerName names the consumer's tracer (the instrumentation scope).
const tracerName = "github.com/streamrpc/streamrpc/consumers"

// propagator reads the W3C trace context the edge put in the envelope, and
// writes it on the sidecar's requests to its upstream.
var propagator = propagation.TraceContext{}

// envelopeTrace is a call's trace context as the envelope carries it; it is
// the carrier the propagator reads, with no map to allocate.
type envelopeTrace struct{ parent, state string }

func (t *envelopeTrace) Get(key string) string {
	switch key {
	case "traceparent":
		return t.parent
	case "tracestate":
		return t.state
	}
	return ""
}

func (t *envelopeTrace) Set(string, string) {}

func (t *envelopeTrace) Keys() []string { return []string{"traceparent", "tracestate"} }

// startSpan starts the span of one handler run, as the child of the edge's
// span whose context came in the envelope (a new trace if none did). The
// handler's context carries it, so the handler's own spans nest under it.
func (o *observer) startSpan(ctx context.Context, req *Request) (context.Context, trace.Span) {
	if req.trace.parent != "" {
		ctx = propagator.Extract(ctx, &req.trace)
	}
	return o.tracer.Start(ctx, req.Handler+"/"+req.Method,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("rpc.system", "streamrpc"),
			attribute.String("rpc.service", req.Handler),
			attribute.String("rpc.method", req.Method),
			attribute.String("streamrpc.call_id", req.ID),
			attribute.Int("streamrpc.attempt", req.Attempt),
		))
}

// endSpan ends a run's span with its outcome.
func endSpan(span trace.Span, err error, outcome string) {
	span.SetAttributes(attribute.String("streamrpc.outcome", outcome))
	if err != nil {
		span.SetAttributes(attribute.Int("rpc.jsonrpc.error_code", errorCode(err)), attribute.Bool("streamrpc.retryable", IsRetryable(err)))
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// injectTrace writes ctx's span context as traceparent/tracestate headers
// on a request to the upstream, so that its spans join the call's trace.
// Nothing without a span (tracing off).
func injectTrace(ctx context.Context, h interface{ Set(string, string) }) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagator.Inject(ctx, headerSetter{h})
}

type headerSetter struct {
	h interface{ Set(string, string) }
}

func (s headerSetter) Get(string) string     { return "" }
func (s headerSetter) Set(key, value string) { s.h.Set(key, value) }
func (s headerSetter) Keys() []string        { return nil }

// requestTrace copies a call's trace context for its Request.
func requestTrace(call *streams.Call) envelopeTrace {
	return envelopeTrace{parent: call.TraceParent, state: call.TraceState}
}
