// Package consumers is the SDK for serving streamrpc handlers in Go. It reads
// like net/http: a Handler answers one call, a Mux routes calls to methods,
// middleware wraps handlers, and a Server reads calls from Redis and runs them
// with bounded concurrency.
//
//	mux := consumers.NewMux()
//	mux.HandleFunc("echo", func(ctx context.Context, r *consumers.Request) (any, error) {
//		return r.Params, nil
//	}, consumers.Describe("returns its params"))
//	srv, _ := consumers.NewServer(rdb, consumers.Config{Handler: "echo"}, mux)
//	srv.Run(ctx)
package consumers

import (
	"context"
	"encoding/json"
	"time"
)

// Request is one call as a handler sees it.
type Request struct {
	ID         string          // the call id, unique; also the caller's X-Request-Id
	Handler    string          // the handler name
	Method     string          // the method called
	Params     json.RawMessage // the caller's params, byte for byte, valid JSON; read-only
	Attempt    int             // 1 on the first delivery
	Deadline   time.Time       // also the deadline of the handler's context
	EnqueuedAt time.Time
	// RequestID is the caller's own X-Request-Id, if it sent one: a
	// correlation id for logs (the call id is ID).
	RequestID string

	trace envelopeTrace // the edge span's W3C trace context, from the envelope
}

// Bind decodes the params into v. A decoding failure is an invalid-params
// error, so a handler can return it as is.
func (r *Request) Bind(v any) error {
	if err := json.Unmarshal(r.Params, v); err != nil {
		return &Error{Code: CodeInvalidParams, Message: "invalid params: " + err.Error()}
	}
	return nil
}

// Handler answers one call. The result is encoded as JSON (a json.RawMessage
// is sent as it is). The context ends at the call's deadline or when the
// server stops.
type Handler interface {
	ServeRPC(ctx context.Context, req *Request) (any, error)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, req *Request) (any, error)

// ServeRPC calls f.
func (f HandlerFunc) ServeRPC(ctx context.Context, req *Request) (any, error) { return f(ctx, req) }

// Middleware wraps a Handler, like net/http middleware.
type Middleware func(Handler) Handler

// Chain applies middleware so that the first one given runs first.
func Chain(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}
