package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"

	"github.com/streamrpc/streamrpc/streams"
)

// These tests check the client's side of the wire against small HTTP and
// WebSocket servers that answer as the edge does; the client against a real
// edge and Redis is tested in integration/.

func TestCodesMatchTheEdge(t *testing.T) {
	mine := map[string]int{
		"parse_error": CodeParseError, "invalid_request": CodeInvalidRequest, "method_not_found": CodeMethodNotFound,
		"invalid_params": CodeInvalidParams, "internal_error": CodeInternal, "handler_error": CodeHandlerError,
		"timeout": CodeTimeout, "unavailable": CodeUnavailable, "body_too_large": CodeBodyTooLarge,
		"unsupported_media_type": CodeUnsupportedMedia, "overloaded": CodeOverloaded, "cancelled": CodeCancelled,
		"dead_lettered": CodeDeadLettered, "not_found": CodeNotFound, "idempotency_mismatch": CodeIdempotencyMismatch,
		"unauthenticated": CodeUnauthenticated, "forbidden": CodeForbidden,
		"rate_limited": CodeRateLimited,
	}
	for _, c := range streams.Codes {
		if got, ok := mine[c.Name]; !ok || got != c.Code {
			t.Errorf("%s: client has %d, the edge %d", c.Name, got, c.Code)
		}
	}
}

func TestCall(t *testing.T) {
	var gotTimeout atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotTimeout.Store(r.Header.Get("Request-Timeout"))
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/rpc/echo/echo":
			if r.Header.Get("Content-Type") != "application/json" {
				w.WriteHeader(415)
				return
			}
			if len(body) == 0 {
				body = []byte("null")
			}
			fmt.Fprintf(w, `{"result":%s}`, body)
		case "/rpc/echo/fail":
			w.WriteHeader(422)
			fmt.Fprint(w, `{"error":{"code":-32000,"message":"card declined","data":{"retryable":false}}}`)
		default:
			w.WriteHeader(502)
			fmt.Fprint(w, `<html>bad gateway</html>`)
		}
	}))
	t.Cleanup(srv.Close)
	c := New(srv.URL + "/")

	type msg struct {
		Text string `json:"text"`
	}
	cases := []struct {
		name     string
		method   string
		params   any
		out      any
		want     any
		wantCode int // 0: no *Error
		wantErr  bool
	}{
		{"struct result", "echo", msg{"hi"}, &msg{}, &msg{"hi"}, 0, false},
		{"raw params and result kept", "echo", json.RawMessage(`{ "a" : 1 }`), new(json.RawMessage), ptr(json.RawMessage(`{ "a" : 1 }`)), 0, false},
		{"no params", "echo", nil, new(json.RawMessage), ptr(json.RawMessage(`null`)), 0, false},
		{"result dropped", "echo", 1, nil, nil, 0, false},
		{"handler error", "fail", nil, nil, nil, CodeHandlerError, false},
		{"not an edge answer", "nowhere", nil, nil, nil, 0, true},
		{"invalid raw params", "echo", json.RawMessage(`{`), nil, nil, 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := c.Call(context.Background(), "echo", tc.method, tc.params, tc.out)
			var rerr *Error
			switch {
			case tc.wantCode != 0:
				if !errors.As(err, &rerr) || rerr.Code != tc.wantCode || rerr.Status != 422 || string(rerr.Data) != `{"retryable":false}` {
					t.Fatalf("err = %#v, want *Error %d with status and data", err, tc.wantCode)
				}
			case tc.wantErr:
				if err == nil || errors.As(err, &rerr) {
					t.Fatalf("err = %v, want a non-*Error error", err)
				}
			case err != nil:
				t.Fatal(err)
			case tc.want != nil:
				if g, w := fmt.Sprint(tc.out), fmt.Sprint(tc.want); g != w {
					t.Fatalf("out = %s, want %s", g, w)
				}
			}
		})
	}
	t.Run("deadline sent as Request-Timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := c.Call(ctx, "echo", "echo", 1, nil); err != nil {
			t.Fatal(err)
		}
		if v, _ := gotTimeout.Load().(string); v == "" || v > "2.000" || v < "1.000" {
			t.Fatalf("Request-Timeout %q, want about 2", v)
		}
	})
}

func ptr[T any](v T) *T { return &v }

func TestWSURL(t *testing.T) {
	cases := []struct{ in, want string }{
		{"ws://h:1/ws", "ws://h:1/ws"},
		{"http://h:1", "ws://h:1/ws"},
		{"https://h/", "wss://h/ws"},
		{"wss://h/custom?x=1", "wss://h/custom?x=1"},
		{"ftp://h", ""},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := wsURL(tc.in)
			if (err != nil) != (tc.want == "") || got != tc.want {
				t.Fatalf("wsURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}

// wsServer answers JSON-RPC requests after a random delay, so answers come
// out of order; a request for "x.close" makes it close the connection with 4008.
type wsServer struct {
	notified atomic.Int64
	seen     atomic.Int64 // calls of x.seen received
}

func (s *wsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{}
	conn, err := up.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	var writeMu sync.Mutex
	var calls sync.WaitGroup
	defer calls.Wait()
	for {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			return
		}
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(msg, &req); err != nil {
			return
		}
		if req.ID == nil {
			s.notified.Add(1)
			continue
		}
		if req.Method == "x.close" {
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4008, "slow"), time.Now().Add(time.Second))
			continue
		}
		if req.Method == "x.seen" {
			s.seen.Add(1)
		}
		calls.Add(1)
		go func() {
			defer calls.Done()
			time.Sleep(time.Duration(rand.IntN(5)) * time.Millisecond) // a handler taking its time
			var resp string
			if req.Method == "x.fail" {
				resp = `{"jsonrpc":"2.0","id":` + string(req.ID) + `,"error":{"code":-32601,"message":"no"}}`
			} else {
				resp = `{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":` + string(req.Params) + `}`
			}
			writeMu.Lock()
			defer writeMu.Unlock()
			_ = conn.WriteMessage(websocket.TextMessage, []byte(resp))
		}()
	}
}

func TestWS(t *testing.T) {
	s := &wsServer{}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	ws, err := DialWS(ctx, srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })

	t.Run("concurrent calls", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := range 300 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var out struct{ I int }
				if err := ws.Call(ctx, "x.echo", map[string]int{"i": i}, &out); err != nil || out.I != i {
					t.Errorf("call %d: %v, got %d", i, err, out.I)
				}
			}()
		}
		wg.Wait()
	})
	t.Run("error", func(t *testing.T) {
		var rerr *Error
		if err := ws.Call(ctx, "x.fail", []int{1}, nil); !errors.As(err, &rerr) || rerr.Code != CodeMethodNotFound || rerr.Status != 0 {
			t.Fatalf("err = %v, want *Error -32601", err)
		}
	})
	t.Run("notify", func(t *testing.T) {
		for range 3 {
			if err := ws.Notify(ctx, "x.echo", []int{1}); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for s.notified.Load() != 3 {
			if time.Now().After(deadline) {
				t.Fatalf("server saw %d notifications, want 3", s.notified.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Run("context ends the wait", func(t *testing.T) {
		short, cancel := context.WithCancel(ctx)
		cancel()
		// A done context wins, every time, and nothing is sent.
		for range 200 {
			if err := ws.Call(short, "x.seen", []int{1}, nil); !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
		}
		// The server reads in order: once it answered this call, it read
		// everything sent before.
		if err := ws.Call(ctx, "x.echo", []int{1}, nil); err != nil {
			t.Fatal(err)
		}
		if n := s.seen.Load(); n != 0 {
			t.Fatalf("%d calls were sent with a cancelled context", n)
		}
	})
	t.Run("closed by the edge", func(t *testing.T) {
		err := ws.Call(ctx, "x.close", nil, nil)
		if !errors.Is(err, ErrClosed) || ws.CloseCode() != 4008 {
			t.Fatalf("err = %v, close code %d; want ErrClosed and 4008", err, ws.CloseCode())
		}
		<-ws.Done()
		if err := ws.Call(ctx, "x.echo", nil, nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("a call after the close: %v, want ErrClosed", err)
		}
	})
}

func TestDialWSRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(503)
		fmt.Fprint(w, `{"error":{"code":-32005,"message":"too many connections","data":{"limit":1}}}`)
	}))
	t.Cleanup(srv.Close)
	_, err := DialWS(context.Background(), strings.Replace(srv.URL, "http", "ws", 1)+"/ws")
	var rerr *Error
	if !errors.As(err, &rerr) || rerr.Code != CodeOverloaded || rerr.Status != 503 {
		t.Fatalf("err = %v, want *Error -32005 with status 503", err)
	}
}

func TestEncodeRequest(t *testing.T) {
	cases := []struct {
		name   string
		id     uint64
		method string
		params json.RawMessage
		want   string
	}{
		{"call", 7, "echo.echo", json.RawMessage("{ \"a\" :\t\"<b>\" }"), "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"echo.echo\",\"params\":{ \"a\" :\t\"<b>\" }}"},
		{"notification", 0, "echo.echo", json.RawMessage(`[1]`), `{"jsonrpc":"2.0","method":"echo.echo","params":[1]}`},
		{"no params", 1, `a"b.c`, nil, `{"jsonrpc":"2.0","id":1,"method":"a\"b.c"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(encodeRequest(tc.id, tc.method, tc.params)); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestWithToken(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"result":null}`)
	}))
	t.Cleanup(srv.Close)
	cases := []struct {
		name string
		opts []Option
		want string
	}{
		{name: "none", want: ""},
		{name: "token", opts: []Option{WithToken("srpc_k")}, want: "Bearer srpc_k"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := New(srv.URL, tc.opts...).Call(t.Context(), "echo", "echo", nil, nil); err != nil {
				t.Fatal(err)
			}
			if got.Load() != tc.want {
				t.Fatalf("Authorization %q, want %q", got.Load(), tc.want)
			}
		})
	}
}

// TestPriorityOption: Priority sets Streamrpc-Priority on sync and async calls.
func TestPriorityOption(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Streamrpc-Priority"))
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Prefer") != "" {
			w.Header().Set("X-Request-Id", "echo.01")
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprint(w, `{"id":"echo.01","state":"queued"}`)
			return
		}
		fmt.Fprint(w, `{"result":null}`)
	}))
	t.Cleanup(srv.Close)
	c := New(srv.URL)
	cases := []struct {
		name string
		call func() error
		want string
	}{
		{name: "sync, none", call: func() error { return c.Call(t.Context(), "echo", "echo", nil, nil) }, want: ""},
		{name: "sync, high", call: func() error { return c.Call(t.Context(), "echo", "echo", nil, nil, Priority("high")) }, want: "high"},
		{name: "async, low", call: func() error {
			_, err := c.CallAsync(t.Context(), "echo", "echo", nil, Priority("low"))
			return err
		}, want: "low"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err != nil {
				t.Fatal(err)
			}
			if got.Load() != tc.want {
				t.Fatalf("Streamrpc-Priority %q, want %q", got.Load(), tc.want)
			}
		})
	}
}
