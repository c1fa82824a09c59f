// Package echo is the echo handler that `streamrpc dev`, the benchmarks and the
// tests serve: echo returns its params, sleep waits, fail returns the error it
// is asked for. examples/echo is the same handler written as a user would, a
// program of its own against the public SDK only; this copy lives inside the
// module so that product code never depends on an example.
package echo

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/streamrpc/streamrpc/consumers"
)

// Name is the handler name the example serves.
const Name = "echo"

// The sleep method's JSON Schemas: the edge rejects params that do not match
// (422, -32602) before they are enqueued.
var (
	sleepParams = json.RawMessage(`{"type":"object","properties":{"ms":{"type":"integer","minimum":0,"maximum":600000}},"required":["ms"]}`)
	sleepResult = json.RawMessage(`{"type":"object","properties":{"slept":{"type":"integer"}},"required":["slept"]}`)
)

// Mux returns the example's methods.
func Mux() *consumers.Mux {
	mux := consumers.NewMux()
	mux.HandleFunc("echo", func(_ context.Context, r *consumers.Request) (any, error) {
		return r.Params, nil // raw: the caller gets its bytes back exactly
	}, consumers.Describe("returns its params unchanged"))

	mux.HandleFunc("sleep", func(ctx context.Context, r *consumers.Request) (any, error) {
		var p struct {
			MS int64 `json:"ms"`
		}
		if err := r.Bind(&p); err != nil {
			return nil, err
		}
		if p.MS < 0 {
			return nil, consumers.Errorf(consumers.CodeInvalidParams, "ms must not be negative")
		}
		t := time.NewTimer(time.Duration(p.MS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return map[string]int64{"slept": p.MS}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, consumers.Describe(`sleeps {"ms":N} milliseconds, then returns {"slept":N}`),
		consumers.Schemas(sleepParams, sleepResult))

	mux.HandleFunc("fail", func(_ context.Context, r *consumers.Request) (any, error) {
		var p struct {
			Message   string `json:"message"`
			Retryable bool   `json:"retryable"`
		}
		if err := r.Bind(&p); err != nil {
			return nil, err
		}
		if p.Message == "" {
			p.Message = "failed on request"
		}
		return nil, &consumers.Error{Code: consumers.CodeHandlerError, Message: p.Message, Retryable: p.Retryable}
	}, consumers.Describe(`returns the error {"message":"…","retryable":bool}`))

	mux.HandleFunc("count", Count, consumers.Describe(`streams {"n":N,"ms":M}: N progress values {"i":k} M ms apart (partial results with "partial":true; "pad":B bytes of padding in each), then {"counted":N}`),
		consumers.Schemas(countParams, nil))
	return mux
}

var countParams = json.RawMessage(`{"type":"object","properties":{"n":{"type":"integer","minimum":0,"maximum":1000000},"ms":{"type":"integer","minimum":0,"maximum":60000},"partial":{"type":"boolean"},"pad":{"type":"integer","minimum":0,"maximum":65536}},"required":["n"]}`)

// Count is the count method: a streaming handler (docs/streaming.md).
func Count(ctx context.Context, r *consumers.Request) (any, error) {
	var p struct {
		N       int  `json:"n"`
		MS      int  `json:"ms"`
		Partial bool `json:"partial"`
		Pad     int  `json:"pad"` // a string of this many bytes in each value
	}
	if err := r.Bind(&p); err != nil {
		return nil, err
	}
	pad := strings.Repeat("x", p.Pad)
	send := r.Progress
	if p.Partial {
		send = r.Partial
	}
	for i := 1; i <= p.N; i++ {
		if p.MS > 0 && i > 1 {
			t := time.NewTimer(time.Duration(p.MS) * time.Millisecond)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			}
		}
		var v any = map[string]int{"i": i}
		if pad != "" {
			v = map[string]any{"i": i, "pad": pad}
		}
		if err := send(v); err != nil {
			return nil, err
		}
	}
	return map[string]int{"counted": p.N}, nil
}
