package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

func TestResultReply(t *testing.T) {
	tests := []struct {
		name     string
		res      any
		wantBody string
		wantCode int // 0: an OK reply
	}{
		{name: "raw message as is", res: json.RawMessage(` {"a" : 1} `), wantBody: ` {"a" : 1} `},
		{name: "empty raw message is null", res: json.RawMessage(nil), wantBody: `null`},
		{name: "invalid raw message", res: json.RawMessage(`{`), wantCode: CodeInternal},
		{name: "struct", res: struct {
			N int `json:"n"`
		}{7}, wantBody: `{"n":7}`},
		{name: "nil", res: nil, wantBody: `null`},
		{name: "string", res: "hi", wantBody: `"hi"`},
		{name: "unencodable", res: math.Inf(1), wantCode: CodeInternal},
		{name: "channel", res: make(chan int), wantCode: CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := resultReply("id-1", nil, tt.res)
			if tt.wantCode != 0 {
				var e *Error
				if !errors.As(err, &e) || e.Code != tt.wantCode {
					t.Fatalf("resultReply error = %v, want *Error with code %d", err, tt.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatalf("resultReply: %v", err)
			}
			if !r.OK || r.ID != "id-1" || string(r.Body) != tt.wantBody {
				t.Fatalf("resultReply = %+v (body %s), want OK id-1 with body %s", r, r.Body, tt.wantBody)
			}
		})
	}
}

// A handler that returns the call's params as they are returns JSON the
// decoder has checked; anything else, even a slice of them, is checked.
func TestResultReplyOfParams(t *testing.T) {
	params := json.RawMessage(`{"a":1}`)
	if r, err := resultReply("id-1", params, params); err != nil || string(r.Body) != `{"a":1}` {
		t.Fatalf("params returned as they are: %+v %v", r, err)
	}
	if _, err := resultReply("id-1", params, params[:3]); err == nil {
		t.Fatal("a prefix of the params (invalid JSON) was not checked")
	}
	invalid := json.RawMessage(`{`)
	if _, err := resultReply("id-1", params, invalid); err == nil {
		t.Fatal("invalid JSON other than the params was not checked")
	}
}

func TestServeRecoversPanic(t *testing.T) {
	s := &Server{
		log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		handler: HandlerFunc(func(context.Context, *Request) (any, error) {
			panic("boom")
		}),
	}
	res, err := s.serve(context.Background(), &Request{ID: "x", Method: "m"})
	if res != nil {
		t.Errorf("serve result = %v, want nil", res)
	}
	if !errors.Is(err, errPanic) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("serve error = %v, want errPanic naming the panic value", err)
	}
	if w := wireError(err); w.Code != CodeInternal {
		t.Fatalf("wire code = %d, want %d", w.Code, CodeInternal)
	}
}

func TestStatsSnapshot(t *testing.T) {
	k := newStatsKeeper()
	k.record("b", 10*time.Millisecond, nil)
	k.record("b", 30*time.Millisecond, streams.NewError(CodeHandlerError, "first"))
	k.record("b", 20*time.Millisecond, streams.NewError(CodeHandlerError, "latest"))
	k.expired("a")
	k.poisoned()
	k.poisoned()

	s := k.snapshot("h", "c1")
	if s.Handler != "h" || s.Consumer != "c1" || s.Poisoned != 2 {
		t.Fatalf("snapshot = %+v, want handler h, consumer c1, 2 poisoned", s)
	}
	if len(s.Methods) != 2 || s.Methods[0].Method != "a" || s.Methods[1].Method != "b" {
		t.Fatalf("methods = %+v, want a then b", s.Methods)
	}
	a, b := s.Methods[0], s.Methods[1]
	if a.Expired != 1 || a.Calls != 0 || a.AverageTime != 0 {
		t.Errorf("a = %+v, want 1 expired, no calls", a)
	}
	if b.Calls != 3 || b.Errors != 2 || b.ProcessingTime != 60*time.Millisecond ||
		b.AverageTime != 20*time.Millisecond || b.LastError != "latest" {
		t.Errorf("b = %+v, want 3 calls, 2 errors, 60ms total, 20ms average, last error %q", b, "latest")
	}
	// A snapshot is a copy.
	s.Methods[1].Calls = 100
	if again := k.snapshot("h", "c1"); again.Methods[1].Calls != 3 {
		t.Errorf("changing a snapshot changed the keeper: %d calls", again.Methods[1].Calls)
	}
}

func TestIsRetryable(t *testing.T) {
	base := errors.New("db hiccup")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "nil", err: nil, want: false},
		{name: "plain error", err: base, want: false},
		{name: "retryable wrapper", err: Retryable(base), want: true},
		{name: "wrapped retryable", err: fmt.Errorf("saving: %w", Retryable(base)), want: true},
		{name: "*Error final", err: Errorf(4001, "no"), want: false},
		{name: "*Error retryable", err: &Error{Code: 4001, Message: "later", Retryable: true}, want: true},
		{name: "Retryable of *Error", err: Retryable(Errorf(4001, "no")), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsRetryable(tt.err); got != tt.want {
				t.Fatalf("IsRetryable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
	if Retryable(nil) != nil {
		t.Error("Retryable(nil) != nil")
	}
	r := Retryable(base)
	if !errors.Is(r, base) || r.Error() != base.Error() {
		t.Errorf("Retryable(err) = %v; want it to wrap err and keep its text", r)
	}
	// Retrying does not change what the caller finally sees.
	if w := wireError(Retryable(Errorf(4001, "no"))); w.Code != 4001 || w.Message != "no" {
		t.Errorf("wireError(Retryable(*Error)) = %+v, want code 4001 message %q", w, "no")
	}
	if w := wireError(Retryable(base)); w.Code != CodeHandlerError || w.Message != base.Error() {
		t.Errorf("wireError(Retryable(plain)) = %+v, want code %d", w, CodeHandlerError)
	}
}
