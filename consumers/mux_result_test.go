package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

var sleptSchema = json.RawMessage(`{"type":"object","properties":{"slept":{"type":"integer","minimum":0}},"required":["slept"]}`)

// TestEnforceResult: with EnforceResult a result that does not match the
// method's result schema becomes a -32603 that says why and is never sent;
// one that matches goes out encoded once; without it nothing is checked.
func TestEnforceResult(t *testing.T) {
	returns := func(v any) func(context.Context, *Request) (any, error) {
		return func(context.Context, *Request) (any, error) { return v, nil }
	}
	tests := []struct {
		name     string
		result   any
		enforce  bool
		wantErr  string // "" for a result
		wantBody string // the result as it goes out
	}{
		{name: "matching struct", result: map[string]int{"slept": 5}, enforce: true, wantBody: `{"slept":5}`},
		{name: "matching raw JSON", result: json.RawMessage(`{"slept":1}`), enforce: true, wantBody: `{"slept":1}`},
		{name: "missing property", result: map[string]int{"other": 1}, enforce: true, wantErr: "missing property 'slept'"},
		{name: "wrong type", result: map[string]string{"slept": "five"}, enforce: true, wantErr: "want integer"},
		{name: "below minimum", result: map[string]int{"slept": -1}, enforce: true, wantErr: "minimum"},
		{name: "nil result", result: nil, enforce: true, wantErr: "want object"},
		{name: "invalid raw JSON", result: json.RawMessage(`{"slept":`), enforce: true, wantErr: "invalid JSON"},
		{name: "not enforced: anything goes", result: map[string]string{"slept": "five"}, wantBody: `{"slept":"five"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := []MethodOption{Schemas(nil, sleptSchema)}
			if tt.enforce {
				opts = append(opts, EnforceResult())
			}
			mux := NewMux()
			mux.HandleFunc("sleep", returns(tt.result), opts...)
			res, err := mux.ServeRPC(context.Background(), &Request{Method: "sleep", Params: json.RawMessage(`null`)})
			if tt.wantErr != "" {
				var e *Error
				if !errors.As(err, &e) || e.Code != CodeInternal {
					t.Fatalf("ServeRPC = %v, %v; want a -32603 *Error", res, err)
				}
				if !strings.Contains(e.Message, tt.wantErr) {
					t.Fatalf("error %q does not say %q", e.Message, tt.wantErr)
				}
				if res != nil {
					t.Fatalf("the result %v came back with the error: it must never be sent", res)
				}
				if w := wireError(err); w.Code != CodeInternal || IsRetryable(err) {
					t.Fatalf("wire error %+v (retryable %v): want a final -32603", w, IsRetryable(err))
				}
				return
			}
			if err != nil {
				t.Fatalf("ServeRPC: %v", err)
			}
			reply, err := resultReply("id", nil, res)
			if err != nil {
				t.Fatal(err)
			}
			if string(reply.Body) != tt.wantBody {
				t.Fatalf("result sent = %s, want %s", reply.Body, tt.wantBody)
			}
			if tt.enforce {
				if _, raw := res.(json.RawMessage); !raw {
					t.Fatalf("an enforced result comes back as %T; want the json.RawMessage it was checked as (encoded once)", res)
				}
			}
		})
	}
}

// TestEnforceResultAfterMiddleware: the result checked is the one that goes
// out, after the middleware changed it.
func TestEnforceResultAfterMiddleware(t *testing.T) {
	mux := NewMux()
	mux.HandleFunc("sleep", func(context.Context, *Request) (any, error) { return map[string]int{"slept": 1}, nil },
		Schemas(nil, sleptSchema), EnforceResult())
	mux.Use(func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, r *Request) (any, error) {
			if _, err := next.ServeRPC(ctx, r); err != nil {
				return nil, err
			}
			return "rewritten", nil
		})
	})
	_, err := mux.ServeRPC(context.Background(), &Request{Method: "sleep"})
	if w := wireError(err); w.Code != CodeInternal {
		t.Fatalf("a middleware's non-matching result gave %v; want -32603", err)
	}
}

func TestEnforceResultRegistration(t *testing.T) {
	tests := []struct {
		name    string
		opts    []MethodOption
		mention string // "" when Handle must not panic
	}{
		{name: "no result schema", opts: []MethodOption{EnforceResult()}, mention: "no result schema"},
		{name: "schema does not compile", opts: []MethodOption{Schemas(nil, json.RawMessage(`{"type":7}`)), EnforceResult()}, mention: "does not compile"},
		{name: "registered as enforced", opts: []MethodOption{Schemas(nil, sleptSchema), EnforceResult()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux := NewMux()
			msg := panicMessage(func() { mux.HandleFunc("sleep", echo, tt.opts...) })
			if tt.mention == "" {
				if msg != "" {
					t.Fatalf("Handle panicked: %s", msg)
				}
				if m := mux.Methods(); len(m) != 1 || !m[0].ResultEnforced {
					t.Fatalf("Methods() = %+v; want sleep with result_enforced (the registry shows it)", m)
				}
				return
			}
			if !strings.Contains(msg, tt.mention) {
				t.Fatalf("panic %q does not mention %q", msg, tt.mention)
			}
		})
	}
}
