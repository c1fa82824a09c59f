package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

// unknownHandlerMsg begins the message of an unknown handler's error; the
// metrics tell it from an unknown method by it.
const unknownHandlerMsg = "unknown handler "

// call is the one door of every call the edge waits on (POST /rpc, JSON-RPC
// over HTTP and WebSocket): it runs roundTrip and records the call's
// metrics and its log line.
func (e *Edge) call(id string, req callRequest) (streams.Reply, *streams.Error) {
	start := time.Now()
	span := e.startSpan(id, &req, false)
	e.metrics.inFlight.Inc()
	reply, rerr := e.roundTrip(id, req)
	e.metrics.inFlight.Dec()
	took := time.Since(start)
	endSpan(span, reply, rerr, req.notify && rerr == nil)
	e.metrics.observeCall(&req, reply, rerr, took)
	e.logCall(id, &req, reply, rerr, took)
	return reply, rerr
}

// acceptAsync enqueues an async call (Prefer: respond-async) and records it.
func (e *Edge) acceptAsync(id string, req callRequest) (streams.Enqueued, *streams.Error) {
	span := e.startSpan(id, &req, true)
	enq, rerr := e.enqueueAsync(id, req)
	endSpan(span, streams.Reply{}, rerr, rerr == nil)
	e.metrics.observeAsync(&req, rerr)
	e.logCall(id, &req, streams.Reply{}, rerr, 0)
	return enq, rerr
}

// logCall writes a call's line at debug level: its id, names, outcome and
// time, never its params or result (they may hold secrets). Checked before
// any attribute is built: at the default level it costs nothing.
func (e *Edge) logCall(id string, req *callRequest, reply streams.Reply, rerr *streams.Error, took time.Duration) {
	ctx := context.Background()
	if !e.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	attrs := []slog.Attr{
		slog.String("call_id", id), slog.String("handler", req.handler), slog.String("method", req.method),
	}
	if req.requestID != "" {
		attrs = append(attrs, slog.String("request_id", req.requestID))
	}
	switch {
	case rerr != nil:
		attrs = append(attrs, slog.String("outcome", outcomeLabel(rerr)), slog.String("err", rerr.Message))
	case req.notify || took == 0:
		attrs = append(attrs, slog.String("outcome", OutcomeAccepted))
	case reply.OK:
		attrs = append(attrs, slog.String("outcome", OutcomeOK))
	default:
		attrs = append(attrs, slog.String("outcome", outcomeLabel(reply.Err())))
	}
	if took > 0 {
		attrs = append(attrs, slog.Duration("took", took))
	}
	if reply.ID != "" && reply.ID != id {
		attrs = append(attrs, slog.String("first_call_id", reply.ID)) // an Idempotency-Key repeat
	}
	e.log.LogAttrs(ctx, slog.LevelDebug, "call", attrs...)
}
