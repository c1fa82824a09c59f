// Package consumers is the SDK for serving streamrpc handlers in Go. It reads
// like net/http: a Handler answers one call, a Mux routes calls to methods,
// middleware wraps handlers, and a Server reads calls from Redis and runs them
// with bounded concurrency.
//
// The package's examples (Example, ExampleMux, ExampleSidecar, …; in
// example_test.go) are compiled and, where they need no Redis, run by go test.
package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
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

	// Streaming (stream.go): set by the Server; the stream is made on the
	// first Progress or Partial.
	srv       *Server
	ctx       context.Context // the handler's context
	replyTo   string          // the edge waiting, "" for an async call
	resultTTL time.Duration   // the edge's result TTL, 0: the consumer's
	streamMu  sync.Mutex
	stream    *resultStream
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

// Prober is a Handler that knows whether the app behind it can take calls:
// the Sidecar asks its upstream's ready path. A Server whose handler is a
// Prober asks it every ProbeInterval, and after a call fails with
// ErrAppUnavailable; while the app is down the server takes no calls (its
// State, shown in the registry, is "waiting_for_app"), holds the call that
// failed without counting the attempt, and resumes once Ready answers nil.
type Prober interface {
	Handler
	// Ready returns nil while the app can take calls.
	Ready(ctx context.Context) error
	// ProbeInterval is how often Ready is asked.
	ProbeInterval() time.Duration
}

// ErrAppUnavailable marks a handler error meaning the app cannot take any
// call now (a Sidecar's upstream refuses connections), as opposed to this
// call failing. With a Prober handler the call is held and run again when the
// app is back; otherwise it is an ordinary error.
var ErrAppUnavailable = errors.New("consumers: the app is unavailable")

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
