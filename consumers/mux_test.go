package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamrpc/streamrpc/streams"
)

func echo(_ context.Context, r *Request) (any, error) { return r.Params, nil }

func TestMuxDispatch(t *testing.T) {
	mux := NewMux()
	mux.HandleFunc("echo", echo)
	mux.HandleFunc("upper", func(_ context.Context, r *Request) (any, error) {
		var s string
		if err := r.Bind(&s); err != nil {
			return nil, err
		}
		return strings.ToUpper(s), nil
	})
	mux.Handle("whoami", HandlerFunc(func(_ context.Context, r *Request) (any, error) {
		return r.Handler + "/" + r.Method + "/" + r.ID, nil
	}))

	tests := []struct {
		name   string
		method string
		params string
		want   any
	}{
		{name: "echo", method: "echo", params: `{"a":1}`, want: json.RawMessage(`{"a":1}`)},
		{name: "upper", method: "upper", params: `"abc"`, want: "ABC"},
		{name: "request fields reach the handler", method: "whoami", params: `null`, want: "h/whoami/id-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := mux.ServeRPC(context.Background(), &Request{ID: "id-1", Handler: "h", Method: tt.method, Params: json.RawMessage(tt.params)})
			if err != nil {
				t.Fatalf("ServeRPC(%s): %v", tt.method, err)
			}
			if fmt.Sprint(res) != fmt.Sprint(tt.want) {
				t.Fatalf("ServeRPC(%s) = %v, want %v", tt.method, res, tt.want)
			}
		})
	}
}

func TestMuxUnknownMethod(t *testing.T) {
	mux := NewMux()
	mux.HandleFunc("echo", echo)
	res, err := mux.ServeRPC(context.Background(), &Request{Method: "nope"})
	if !errors.Is(err, ErrMethodNotFound) {
		t.Fatalf("ServeRPC(nope) error = %v, want one wrapping ErrMethodNotFound", err)
	}
	if res != nil {
		t.Errorf("ServeRPC(nope) result = %v, want nil", res)
	}
	if !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("error %q does not name the method", err)
	}
	if w := wireError(err); w.Code != CodeMethodNotFound {
		t.Errorf("wire code = %d, want %d", w.Code, CodeMethodNotFound)
	}
}

func TestMuxRegistrationPanics(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		h       Handler
		mention string
	}{
		{name: "duplicate", method: "echo", h: HandlerFunc(echo), mention: "registered twice"},
		{name: "empty name", method: "", h: HandlerFunc(echo), mention: "empty"},
		{name: "name with space", method: "a b", h: HandlerFunc(echo), mention: "invalid name"},
		{name: "name with brace", method: "{x}", h: HandlerFunc(echo), mention: "invalid name"},
		{name: "name too long", method: strings.Repeat("m", 65), h: HandlerFunc(echo), mention: "limit"},
		{name: "nil handler", method: "other", h: nil, mention: "nil handler"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux := NewMux()
			mux.HandleFunc("echo", echo)
			msg := panicMessage(func() { mux.Handle(tt.method, tt.h) })
			if msg == "" {
				t.Fatalf("Handle(%q) did not panic", tt.method)
			}
			if !strings.Contains(msg, tt.mention) {
				t.Fatalf("panic %q does not mention %q", msg, tt.mention)
			}
			// The mux is unchanged.
			if got := len(mux.Methods()); got != 1 {
				t.Fatalf("after the panic the mux has %d methods, want 1", got)
			}
		})
	}
}

func panicMessage(f func()) (msg string) {
	defer func() {
		if p := recover(); p != nil {
			msg = fmt.Sprint(p)
			if msg == "" {
				msg = "(empty panic)"
			}
		}
	}()
	f()
	return ""
}

func TestMuxMethods(t *testing.T) {
	mux := NewMux()
	if got := mux.Methods(); len(got) != 0 {
		t.Fatalf("empty mux lists %v", got)
	}
	ps, rs := json.RawMessage(`{"type":"object"}`), json.RawMessage(`{"type":"string"}`)
	mux.HandleFunc("zeta", echo, Describe("last"))
	mux.HandleFunc("alpha", echo, Describe("first"), Schemas(ps, rs))
	mux.HandleFunc("Mid", echo)
	mux.HandleFunc("beta.v2", echo, Describe("second"))

	got := mux.Methods()
	want := []MethodInfo{
		{Name: "Mid"},
		{Name: "alpha", Description: "first", ParamsSchema: ps, ResultSchema: rs},
		{Name: "beta.v2", Description: "second"},
		{Name: "zeta", Description: "last"},
	}
	if len(got) != len(want) {
		t.Fatalf("Methods() = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Name != w.Name || g.Description != w.Description ||
			string(g.ParamsSchema) != string(w.ParamsSchema) || string(g.ResultSchema) != string(w.ResultSchema) {
			t.Errorf("Methods()[%d] = %+v, want %+v", i, g, w)
		}
	}
	// The description is what goes into the registry.
	b, err := json.Marshal(got[1])
	if err != nil {
		t.Fatal(err)
	}
	const wantJSON = `{"name":"alpha","description":"first","params_schema":{"type":"object"},"result_schema":{"type":"string"}}`
	if string(b) != wantJSON {
		t.Errorf("MethodInfo JSON = %s, want %s", b, wantJSON)
	}
	var _ MethodLister = mux // a Server registers a Mux's methods
}

// recorder returns middleware that appends name to a shared trace before and
// after the handler it wraps.
type recorder struct {
	mu    sync.Mutex
	trace []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.trace = append(r.trace, s)
	r.mu.Unlock()
}

func (r *recorder) mw(name string) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, req *Request) (any, error) {
			r.add(name + ">")
			res, err := next.ServeRPC(ctx, req)
			r.add("<" + name)
			return res, err
		})
	}
}

func (r *recorder) got() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.trace, " ")
}

func TestMiddlewareOrder(t *testing.T) {
	tests := []struct {
		name  string
		build func(rec *recorder, h Handler) Handler
		want  string
	}{
		{
			name:  "chain",
			build: func(rec *recorder, h Handler) Handler { return Chain(h, rec.mw("a"), rec.mw("b"), rec.mw("c")) },
			want:  "a> b> c> handler <c <b <a",
		},
		{
			name:  "chain without middleware",
			build: func(_ *recorder, h Handler) Handler { return Chain(h) },
			want:  "handler",
		},
		{
			name: "mux use in one call",
			build: func(rec *recorder, h Handler) Handler {
				mux := NewMux()
				mux.Handle("m", h)
				mux.Use(rec.mw("a"), rec.mw("b"))
				return mux
			},
			want: "a> b> handler <b <a",
		},
		{
			name: "mux use in several calls, after registration",
			build: func(rec *recorder, h Handler) Handler {
				mux := NewMux()
				mux.Use(rec.mw("a"))
				mux.Handle("m", h)
				mux.Use(rec.mw("b"))
				mux.Use(rec.mw("c"))
				return mux
			},
			want: "a> b> c> handler <c <b <a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			h := HandlerFunc(func(context.Context, *Request) (any, error) { rec.add("handler"); return "ok", nil })
			res, err := tt.build(rec, h).ServeRPC(context.Background(), &Request{Method: "m"})
			if err != nil || res != "ok" {
				t.Fatalf("ServeRPC = %v, %v; want ok, nil", res, err)
			}
			if got := rec.got(); got != tt.want {
				t.Fatalf("order = %q, want %q", got, tt.want)
			}
		})
	}
}

// An unknown method is refused before the middleware: it does not run.
func TestMuxUnknownMethodSkipsMiddleware(t *testing.T) {
	rec := &recorder{}
	mux := NewMux()
	mux.Use(rec.mw("a"))
	if _, err := mux.ServeRPC(context.Background(), &Request{Method: "missing"}); !errors.Is(err, ErrMethodNotFound) {
		t.Fatalf("error = %v, want ErrMethodNotFound", err)
	}
	if got := rec.got(); got != "" {
		t.Fatalf("middleware ran for an unknown method: %q", got)
	}
}

func TestRequestBind(t *testing.T) {
	type params struct {
		N int    `json:"n"`
		S string `json:"s"`
	}
	tests := []struct {
		name    string
		params  string
		wantErr bool
		want    params
	}{
		{name: "ok", params: `{"n":3,"s":"x"}`, want: params{N: 3, S: "x"}},
		{name: "wrong type", params: `{"n":"three"}`, wantErr: true},
		{name: "not an object", params: `[1]`, wantErr: true},
		{name: "invalid JSON", params: `{`, wantErr: true},
		{name: "empty", params: ``, wantErr: true},
		{name: "null leaves zero value", params: `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p params
			err := (&Request{Params: json.RawMessage(tt.params)}).Bind(&p)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Bind: %v", err)
				}
				if p != tt.want {
					t.Fatalf("Bind gave %+v, want %+v", p, tt.want)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Bind error = %v (%T), want *Error", err, err)
			}
			if e.Code != CodeInvalidParams {
				t.Fatalf("Bind error code = %d, want %d", e.Code, CodeInvalidParams)
			}
			if !strings.HasPrefix(e.Message, "invalid params: ") {
				t.Fatalf("Bind error message = %q, want it to start with %q", e.Message, "invalid params: ")
			}
			// Returned as is by a handler, it keeps its code on the wire.
			if w := wireError(err); w.Code != CodeInvalidParams {
				t.Fatalf("wire code = %d, want %d", w.Code, CodeInvalidParams)
			}
		})
	}
}

func TestWireError(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantMsg  string
		wantData string // "" for no data
	}{
		{name: "plain error", err: errors.New("disk full"), wantCode: CodeHandlerError, wantMsg: "disk full"},
		{name: "wrapped plain error", err: fmt.Errorf("saving: %w", errors.New("disk full")), wantCode: CodeHandlerError, wantMsg: "saving: disk full"},
		{name: "*Error keeps code", err: Errorf(4001, "over limit %d", 10), wantCode: 4001, wantMsg: "over limit 10"},
		{name: "*Error keeps data", err: &Error{Code: 4002, Message: "nope", Data: map[string]int{"max": 10}}, wantCode: 4002, wantMsg: "nope", wantData: `{"max":10}`},
		{name: "*Error raw data", err: &Error{Code: 4003, Message: "raw", Data: json.RawMessage(`[1,2]`)}, wantCode: 4003, wantMsg: "raw", wantData: `[1,2]`},
		{name: "*Error unencodable data dropped", err: &Error{Code: 4004, Message: "bad data", Data: func() {}}, wantCode: 4004, wantMsg: "bad data"},
		{name: "wrapped *Error", err: fmt.Errorf("ctx: %w", Errorf(CodeInvalidParams, "n must be positive")), wantCode: CodeInvalidParams, wantMsg: "n must be positive"},
		{name: "method not found", err: fmt.Errorf("%w: %q", ErrMethodNotFound, "x"), wantCode: -32601, wantMsg: `method not found: "x"`},
		{name: "panic", err: fmt.Errorf("%w: boom", errPanic), wantCode: CodeInternal, wantMsg: "handler panicked: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := wireError(tt.err)
			if w.Code != tt.wantCode {
				t.Errorf("code = %d, want %d", w.Code, tt.wantCode)
			}
			if w.Message != tt.wantMsg {
				t.Errorf("message = %q, want %q", w.Message, tt.wantMsg)
			}
			if string(w.Data) != tt.wantData {
				t.Errorf("data = %s, want %s", w.Data, tt.wantData)
			}
			// Whatever it is, it must survive the reply encoding.
			if e := streams.ErrorReply("id", w).Err(); e.Code != tt.wantCode || e.Message != tt.wantMsg {
				t.Errorf("through ErrorReply: %+v, want code %d message %q", e, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	if got, want := Errorf(4001, "a %s", "b").Error(), "rpc error 4001: a b"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
		mention string
	}{
		{name: "minimal", cfg: Config{Handler: "billing"}},
		{name: "full", cfg: Config{
			Handler: "billing", Description: "d", Concurrency: 4, Name: "c1", MaxAttempts: 2, RetryBaseDelay: time.Millisecond,
			RetryMaxDelay: time.Second, VisibilityTimeout: time.Second, MaxBacklog: 10, ReadBlock: time.Second, ResultTTL: time.Minute,
		}},
		{name: "no handler", cfg: Config{}, wantErr: true, mention: "handler name is empty"},
		{name: "bad handler name", cfg: Config{Handler: "bill ing"}, wantErr: true, mention: "bill ing"},
		{name: "handler with hash tag", cfg: Config{Handler: "{b}"}, wantErr: true, mention: "handler name"},
		{name: "handler too long", cfg: Config{Handler: strings.Repeat("h", 65)}, wantErr: true, mention: "limit is 64"},
		{name: "negative concurrency", cfg: Config{Handler: "b", Concurrency: -1}, wantErr: true, mention: "Concurrency -1"},
		{name: "negative read block", cfg: Config{Handler: "b", ReadBlock: -time.Second}, wantErr: true, mention: "negative"},
		{name: "negative result ttl", cfg: Config{Handler: "b", ResultTTL: -time.Second}, wantErr: true, mention: "negative"},
		{name: "negative max attempts", cfg: Config{Handler: "b", MaxAttempts: -1}, wantErr: true, mention: "MaxAttempts -1"},
		{name: "negative max backlog", cfg: Config{Handler: "b", MaxBacklog: -1}, wantErr: true, mention: "MaxBacklog -1"},
		{name: "negative retry base delay", cfg: Config{Handler: "b", RetryBaseDelay: -time.Second}, wantErr: true, mention: "negative"},
		{name: "negative retry max delay", cfg: Config{Handler: "b", RetryMaxDelay: -time.Second}, wantErr: true, mention: "negative"},
		{name: "negative visibility timeout", cfg: Config{Handler: "b", VisibilityTimeout: -time.Second}, wantErr: true, mention: "negative"},
		{name: "visibility timeout under 300ms", cfg: Config{Handler: "b", VisibilityTimeout: 299 * time.Millisecond}, wantErr: true, mention: "under 300ms"},
		{name: "visibility timeout 300ms", cfg: Config{Handler: "b", VisibilityTimeout: 300 * time.Millisecond}},
		{name: "negative heartbeat interval", cfg: Config{Handler: "b", HeartbeatInterval: -time.Second}, wantErr: true, mention: "negative"},
		{name: "heartbeat interval under 100ms", cfg: Config{Handler: "b", HeartbeatInterval: 99 * time.Millisecond}, wantErr: true, mention: "between 100ms and 2s"},
		{name: "heartbeat interval over 2s", cfg: Config{Handler: "b", HeartbeatInterval: 3 * time.Second}, wantErr: true, mention: "between 100ms and 2s"},
		{name: "negative dead after", cfg: Config{Handler: "b", DeadAfter: -time.Second}, wantErr: true, mention: "negative"},
		{name: "dead after under twice the default heartbeat", cfg: Config{Handler: "b", DeadAfter: 1500 * time.Millisecond}, wantErr: true, mention: "twice the heartbeat interval 1s"},
		{name: "dead after twice a short heartbeat", cfg: Config{Handler: "b", HeartbeatInterval: 200 * time.Millisecond, DeadAfter: 400 * time.Millisecond}},
		{name: "dead after under twice a given heartbeat", cfg: Config{Handler: "b", HeartbeatInterval: 2 * time.Second, DeadAfter: 3 * time.Second}, wantErr: true, mention: "twice the heartbeat interval 2s"},
		{name: "retry max under base", cfg: Config{Handler: "b", RetryBaseDelay: time.Second, RetryMaxDelay: time.Millisecond}, wantErr: true, mention: "RetryMaxDelay"},
		{name: "retry max equal to base", cfg: Config{Handler: "b", RetryBaseDelay: time.Second, RetryMaxDelay: time.Second}},
		{name: "bad consumer name", cfg: Config{Handler: "b", Name: "host 1"}, wantErr: true, mention: "consumer name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate() = %v, want an error wrapping ErrConfig", err)
			}
			if !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("Validate() = %q, want it to mention %q", err, tt.mention)
			}
		})
	}
}

func TestConfigWithDefaults(t *testing.T) {
	c := Config{Handler: "b"}.withDefaults()
	if c.Concurrency != 16 {
		t.Errorf("Concurrency = %d, want 16", c.Concurrency)
	}
	if c.ReadBlock != 2*time.Second {
		t.Errorf("ReadBlock = %v, want 2s", c.ReadBlock)
	}
	if c.Logger == nil {
		t.Error("Logger = nil, want slog.Default()")
	}
	pid := "-" + strconv.Itoa(os.Getpid()) + "-"
	if i := strings.LastIndex(c.Name, pid); i < 0 || len(c.Name)-i-len(pid) != 6 {
		t.Errorf("Name = %q, want a generated host%s<6 hex digits> name", c.Name, pid)
	}
	if other := (Config{Handler: "b"}).withDefaults(); other.Name == c.Name {
		t.Errorf("two default names are both %q, want them to differ", c.Name)
	}
	if c.MaxAttempts != 5 || c.RetryBaseDelay != time.Second || c.RetryMaxDelay != time.Minute || c.VisibilityTimeout != 30*time.Second {
		t.Errorf("retry defaults = attempts %d, base %v, max %v, visibility %v; want 5, 1s, 1m, 30s",
			c.MaxAttempts, c.RetryBaseDelay, c.RetryMaxDelay, c.VisibilityTimeout)
	}
	if c.HeartbeatInterval != time.Second || c.DeadAfter != 3*time.Second {
		t.Errorf("liveness defaults = heartbeat %v, dead after %v; want 1s, 3s", c.HeartbeatInterval, c.DeadAfter)
	}
	if c := (Config{Handler: "b", HeartbeatInterval: 2 * time.Second}).withDefaults(); c.DeadAfter != 4*time.Second {
		t.Errorf("dead after with a 2s heartbeat = %v, want 4s (twice the heartbeat)", c.DeadAfter)
	}
	if c.MaxBacklog != 0 || c.ResultTTL != 0 {
		t.Errorf("MaxBacklog %d, ResultTTL %v; want 0 (the edge's settings)", c.MaxBacklog, c.ResultTTL)
	}
	set := Config{
		Handler: "b", Concurrency: 3, Name: "me", ReadBlock: time.Millisecond, MaxAttempts: 1,
		RetryBaseDelay: time.Millisecond, RetryMaxDelay: time.Hour, VisibilityTimeout: time.Second,
	}.withDefaults()
	if set.Concurrency != 3 || set.Name != "me" || set.ReadBlock != time.Millisecond || set.MaxAttempts != 1 ||
		set.RetryBaseDelay != time.Millisecond || set.RetryMaxDelay != time.Hour || set.VisibilityTimeout != time.Second {
		t.Errorf("withDefaults overrode set values: %+v", set)
	}
	// A base delay over the default cap raises the cap.
	if got := (Config{Handler: "b", RetryBaseDelay: 2 * time.Minute}).withDefaults().RetryMaxDelay; got != 2*time.Minute {
		t.Errorf("RetryMaxDelay with a 2m base = %v, want 2m", got)
	}
}

func TestNewServerRefusesBadInput(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		h    Handler
	}{
		{name: "invalid config", cfg: Config{}, h: NewMux()},
		{name: "nil handler", cfg: Config{Handler: "b"}, h: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Both are refused before the Redis client is used, so nil is fine.
			s, err := NewServer(nil, tt.cfg, tt.h)
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("NewServer error = %v, want one wrapping ErrConfig", err)
			}
			if s != nil {
				t.Fatal("NewServer returned a server with an error")
			}
		})
	}
}
