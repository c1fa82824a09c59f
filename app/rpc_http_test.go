package app

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamrpc/streamrpc/streams"
)

func TestIsJSON(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		want        bool
	}{
		{name: "plain", contentType: "application/json", want: true},
		{name: "charset", contentType: "application/json; charset=utf-8", want: true},
		{name: "upper case", contentType: "Application/JSON", want: true},
		{name: "suffix", contentType: "application/vnd.api+json", want: true},
		{name: "problem json", contentType: "application/problem+json; charset=utf-8", want: true},
		{name: "empty", contentType: "", want: false},
		{name: "text", contentType: "text/plain", want: false},
		{name: "form", contentType: "application/x-www-form-urlencoded", want: false},
		{name: "json as text", contentType: "text/json", want: false},
		{name: "prefix only", contentType: "application/jsonx", want: false},
		{name: "malformed parameters", contentType: "application/json; charset", want: false},
		{name: "no subtype", contentType: "application", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isJSON(tt.contentType); got != tt.want {
				t.Fatalf("isJSON(%q) = %v, want %v", tt.contentType, got, tt.want)
			}
		})
	}
}

// newTestEdge returns an edge over a Redis that cannot be reached: nothing
// listens on 127.0.0.1:1. That is not a fake Redis: every command fails as it
// would in an outage, so the edge's answers that come before Redis can be
// checked, and so can its answer when Redis is down.
func newTestEdge(t testing.TB, cfg Config) *Edge {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{
		Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1, DialerRetries: 1,
	})
	t.Cleanup(func() { _ = rdb.Close() })
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e, err := New(rdb, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("edge Close: %v", err)
		}
	})
	return e
}

type errorBody struct {
	Error *struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

// do sends req to the edge's Fiber app and decodes the JSON error body.
func do(t *testing.T, e *Edge, req *http.Request) (*http.Response, errorBody) {
	t.Helper()
	resp, err := e.Fiber().Test(req, 10_000)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	t.Cleanup(func() { _ = resp.Body.Close() })
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	var body errorBody
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Fatalf("%s %s: body %q is not JSON: %v", req.Method, req.URL, raw, err)
		}
	}
	return resp, body
}

func TestCallValidation(t *testing.T) {
	e := newTestEdge(t, Config{MaxBody: 64, CallTimeout: 5 * time.Second})
	longName := strings.Repeat("h", 65)
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		header      map[string]string
		body        string
		wantStatus  int
		wantCode    int
		mention     []string // the message names the problem
	}{
		{
			name: "invalid JSON", path: "/rpc/h/m", contentType: "application/json", body: `{"a":`,
			wantStatus: 400, wantCode: streams.CodeParseError, mention: []string{"not valid JSON", "at byte"},
		},
		{
			name: "JSON with trailing garbage", path: "/rpc/h/m", contentType: "application/json", body: `{} x`,
			wantStatus: 400, wantCode: streams.CodeParseError, mention: []string{"not valid JSON"},
		},
		{
			name: "text content type", path: "/rpc/h/m", contentType: "text/plain", body: `{}`,
			wantStatus: 415, wantCode: streams.CodeUnsupportedMedia, mention: []string{"Content-Type", "application/json"},
		},
		{
			name: "no content type", path: "/rpc/h/m", body: `{}`,
			wantStatus: 415, wantCode: streams.CodeUnsupportedMedia, mention: []string{"Content-Type"},
		},
		{
			name: "handler with colon", path: "/rpc/a:b/m", contentType: "application/json", body: `{}`,
			wantStatus: 400, wantCode: streams.CodeInvalidRequest, mention: []string{"handler name", `"a:b"`},
		},
		{
			name: "handler too long", path: "/rpc/" + longName + "/m", contentType: "application/json", body: `{}`,
			wantStatus: 400, wantCode: streams.CodeInvalidRequest, mention: []string{"handler name", "limit is 64"},
		},
		{
			name: "method with escaped space", path: "/rpc/h/a%20b", contentType: "application/json", body: `{}`,
			wantStatus: 400, wantCode: streams.CodeInvalidRequest, mention: []string{"method name"},
		},
		{
			name: "method with brace", path: "/rpc/h/%7Bx%7D", contentType: "application/json", body: `{}`,
			wantStatus: 400, wantCode: streams.CodeInvalidRequest, mention: []string{"method name"},
		},
		{
			name: "bad name wins over bad body", path: "/rpc/a:b/m", contentType: "text/plain", body: `{`,
			wantStatus: 400, wantCode: streams.CodeInvalidRequest, mention: []string{"handler name"},
		},
		{
			name: "request timeout not a number", path: "/rpc/h/m", header: map[string]string{"Request-Timeout": "soon"},
			wantStatus: 400, wantCode: streams.CodeInvalidRequest, mention: []string{"Request-Timeout", "positive number of seconds"},
		},
		{
			name: "request timeout zero", path: "/rpc/h/m", header: map[string]string{"Request-Timeout": "0"},
			wantStatus: 400, wantCode: streams.CodeInvalidRequest, mention: []string{"Request-Timeout"},
		},
		{
			name: "request timeout negative", path: "/rpc/h/m", header: map[string]string{"Request-Timeout": "-1"},
			wantStatus: 400, wantCode: streams.CodeInvalidRequest, mention: []string{"Request-Timeout"},
		},
		{
			name: "request timeout NaN", path: "/rpc/h/m", header: map[string]string{"Request-Timeout": "NaN"},
			wantStatus: 400, wantCode: streams.CodeInvalidRequest, mention: []string{"Request-Timeout"},
		},
		{
			name: "request timeout infinite", path: "/rpc/h/m", header: map[string]string{"Request-Timeout": "+Inf"},
			wantStatus: 400, wantCode: streams.CodeInvalidRequest, mention: []string{"Request-Timeout"},
		},
		{
			name: "unknown route", method: http.MethodPost, path: "/nope",
			wantStatus: 404, wantCode: streams.CodeNotFound, mention: []string{"no such route", "/nope"},
		},
		{
			name: "missing method segment", method: http.MethodPost, path: "/rpc/h",
			wantStatus: 404, wantCode: streams.CodeNotFound, mention: []string{"no such route"},
		},
		{
			name: "bad call id", method: http.MethodGet, path: "/rpc/calls/a:b",
			wantStatus: 400, wantCode: streams.CodeInvalidRequest, mention: []string{"call id"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, tt.path, strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, body := do(t, e, req)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if body.Error == nil {
				t.Fatal(`body has no "error" object`)
			}
			if body.Error.Code != tt.wantCode {
				t.Errorf("error code = %d, want %d", body.Error.Code, tt.wantCode)
			}
			for _, m := range tt.mention {
				if !strings.Contains(body.Error.Message, m) {
					t.Errorf("message %q does not mention %q", body.Error.Message, m)
				}
			}
		})
	}
	if n := e.Waiting(); n != 0 {
		t.Errorf("edge waits on %d calls after requests refused before Redis, want 0", n)
	}
}

// serve runs the edge on a loopback listener, as in production (Serve also
// starts the reply reader, which keeps failing against the unreachable Redis),
// and returns its base URL. The edge is closed, and Serve has returned, when
// the test ends.
func serve(t *testing.T, e *Edge) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- e.Serve(ln) }()
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("edge Close: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve returned %v after Close, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10s of Close")
		}
	})
	return "http://" + ln.Addr().String()
}

// Fiber's app.Test reports an over-limit body as an error instead of the
// answer, so this one is checked over a real connection.
func TestCallBodyTooLarge(t *testing.T) {
	e := newTestEdge(t, Config{MaxBody: 64})
	base := serve(t, e)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	t.Cleanup(client.CloseIdleConnections)

	tests := []struct {
		name       string
		size       int
		wantStatus int
		wantCode   int
	}{
		{name: "over the limit", size: 65, wantStatus: http.StatusRequestEntityTooLarge, wantCode: streams.CodeBodyTooLarge},
		{name: "far over the limit", size: 10_000, wantStatus: http.StatusRequestEntityTooLarge, wantCode: streams.CodeBodyTooLarge},
		// At the limit the body is accepted and the call reaches Redis, which is down.
		{name: "at the limit", size: 64, wantStatus: http.StatusServiceUnavailable, wantCode: streams.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `"` + strings.Repeat("x", tt.size-2) + `"`
			resp, err := client.Post(base+"/rpc/h/m", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			defer func() { _ = resp.Body.Close() }()
			var got errorBody
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatalf("decoding the body: %v", err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got.Error == nil || got.Error.Code != tt.wantCode {
				t.Fatalf("error = %+v, want code %d", got.Error, tt.wantCode)
			}
			if tt.wantCode != streams.CodeBodyTooLarge {
				return
			}
			if !strings.Contains(got.Error.Message, "over the limit") {
				t.Errorf("message %q does not say the body is over the limit", got.Error.Message)
			}
			var data struct {
				Limit int `json:"limit_bytes"`
			}
			if err := json.Unmarshal(got.Error.Data, &data); err != nil || data.Limit != 64 {
				t.Errorf("error data = %s (%v), want limit_bytes 64", got.Error.Data, err)
			}
		})
	}
}

func TestRequestTimeout(t *testing.T) {
	const callTimeout = 30 * time.Second
	cases := []struct {
		name    string
		header  string
		want    time.Duration
		wantErr bool
	}{
		{"less is taken", "2.5", 2500 * time.Millisecond, false},
		{"more is the call timeout", "60", callTimeout, false},
		{"huge does not overflow", "1e10", callTimeout, false},
		{"past float range of durations", "1e300", callTimeout, false},
		{"tiny is 1ms", "0.0000001", time.Millisecond, false},
		{"zero is refused", "0", 0, true},
		{"negative is refused", "-1", 0, true},
		{"a unit is refused", "1s", 0, true},
		{"NaN is refused", "NaN", 0, true},
		{"Inf is refused", "Inf", 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, bad := requestTimeout(tc.header, callTimeout)
			switch {
			case tc.wantErr && (bad == nil || bad.Code != streams.CodeInvalidRequest):
				t.Fatalf("requestTimeout(%q) = %s, %v; want -32600", tc.header, got, bad)
			case !tc.wantErr && (bad != nil || got != tc.want):
				t.Fatalf("requestTimeout(%q) = %s, %v; want %s", tc.header, got, bad, tc.want)
			}
		})
	}
}

func TestRequestTimeoutErrorData(t *testing.T) {
	e := newTestEdge(t, Config{})
	req := httptest.NewRequest(http.MethodPost, "/rpc/h/m", nil)
	req.Header.Set("Request-Timeout", "1s")
	resp, body := do(t, e, req)
	if resp.StatusCode != http.StatusBadRequest || body.Error == nil {
		t.Fatalf("status %d, body %+v; want 400 with an error", resp.StatusCode, body)
	}
	if got := string(body.Error.Data); got != `{"value":"1s"}` {
		t.Fatalf("error data = %s, want the rejected value", got)
	}
}

// A valid call reaches Redis, which is down: the edge answers 503 at once with
// code -32002, does not keep waiting on the call, and says so in JSON.
func TestCallRedisUnavailable(t *testing.T) {
	e := newTestEdge(t, Config{CallTimeout: 5 * time.Second})
	tests := []struct {
		name        string
		body        string
		contentType string
		header      map[string]string
	}{
		{name: "object params", body: `{"a":1}`, contentType: "application/json"},
		{name: "no params", body: ``},
		{name: "whitespace body", body: " \n\t"},
		{name: "json suffix media type", body: `[1,2]`, contentType: "application/vnd.x+json; charset=utf-8"},
		{name: "shorter request timeout", body: `1`, contentType: "application/json", header: map[string]string{"Request-Timeout": "2.5"}},
		{name: "async", body: `{}`, contentType: "application/json", header: map[string]string{"Prefer": "respond-async"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/rpc/billing/charge.v2", strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			start := time.Now()
			resp, body := do(t, e, req)
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("the 503 took %v; an unreachable Redis should be reported at once", took)
			}
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("status = %d, want 503", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if body.Error == nil {
				t.Fatal(`body has no "error" object`)
			}
			if body.Error.Code != streams.CodeUnavailable {
				t.Errorf("error code = %d, want %d", body.Error.Code, streams.CodeUnavailable)
			}
			if ra := resp.Header.Get("Retry-After"); ra == "" {
				t.Error("a 503 without Retry-After")
			}
			if !strings.Contains(body.Error.Message, "redis") || !strings.Contains(body.Error.Message, "not accepted") {
				t.Errorf("message %q does not say Redis is down and the call was not accepted", body.Error.Message)
			}
			if id := resp.Header.Get("X-Request-Id"); id != "" {
				t.Errorf("X-Request-Id = %q on a call that was not accepted: it has no id", id)
			}
			if n := e.Waiting(); n != 0 {
				t.Errorf("edge still waits on %d calls after the 503", n)
			}
		})
	}
}

// Every 503 carries Retry-After, as 429 and overloaded do.
func TestUnavailableRetryAfter(t *testing.T) {
	e := newTestEdge(t, Config{})
	cases := []struct {
		name   string
		method string
		path   string
		body   string
	}{
		{"call status", http.MethodGet, "/rpc/calls/echo.01JBZ8Y0000000000000000000", ""},
		{"cancel", http.MethodDelete, "/rpc/calls/echo.01JBZ8Y0000000000000000000", ""},
		{"handlers", http.MethodGet, "/handlers", ""},
		{"jsonrpc over HTTP answers 200, with the error inside", http.MethodPost, "/jsonrpc", `{"jsonrpc":"2.0","id":1,"method":"echo.echo"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			resp, _ := do(t, e, req)
			if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
				t.Fatal("503 without Retry-After")
			}
			if resp.StatusCode != http.StatusServiceUnavailable && tc.path != "/jsonrpc" {
				t.Fatalf("status %d, want 503", resp.StatusCode)
			}
		})
	}
}

func TestResultRedisUnavailable(t *testing.T) {
	e := newTestEdge(t, Config{})
	resp, body := do(t, e, httptest.NewRequest(http.MethodGet, "/rpc/calls/echo.01HZX3Q4R5S6T7V8W9XAYBZC0D", nil))
	if resp.StatusCode != http.StatusServiceUnavailable || body.Error == nil || body.Error.Code != streams.CodeUnavailable {
		t.Fatalf("status %d, body %+v; want 503 with code %d", resp.StatusCode, body, streams.CodeUnavailable)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	e := newTestEdge(t, Config{})
	resp, _ := do(t, e, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz status = %d, want 200 even when Redis is down", resp.StatusCode)
	}
	resp, body := do(t, e, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if resp.StatusCode != http.StatusServiceUnavailable || body.Error == nil || body.Error.Code != streams.CodeUnavailable {
		t.Fatalf("/readyz: status %d, body %+v; want 503 with code %d", resp.StatusCode, body, streams.CodeUnavailable)
	}
	if !strings.Contains(body.Error.Message, "redis unavailable") {
		t.Errorf("/readyz message %q does not say Redis is unavailable", body.Error.Message)
	}
}

func TestParsePrefer(t *testing.T) {
	cases := []struct {
		name   string
		header string
		want   preferences
	}{
		{"respond-async", "respond-async", preferences{async: true}},
		{"tokens are case-insensitive", "Respond-Async", preferences{async: true}},
		{"with wait", "respond-async, wait=10", preferences{async: true, wait: 10 * time.Second}},
		{"wait first, spaces, any case", "WAIT = 3 ,RESPOND-ASYNC", preferences{async: true, wait: 3 * time.Second}},
		{"quoted wait", `respond-async, wait="2"`, preferences{async: true, wait: 2 * time.Second}},
		{"parameters ignored", "respond-async;foo=bar, wait=1;x", preferences{async: true, wait: time.Second}},
		{"wait capped", "respond-async, wait=100000", preferences{async: true, wait: maxWait}},
		{"bad wait ignored", "respond-async, wait=-1, wait=soon", preferences{async: true}},
		{"the first wait counts", "respond-async, wait=1, wait=9", preferences{async: true, wait: time.Second}},
		{"other preferences", "return=minimal, handling=lenient", preferences{}},
		{"not a prefix match", "respond-asyncx", preferences{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var p preferences
			p.add(tc.header)
			if p != tc.want {
				t.Fatalf("Prefer: %s gives %+v, want %+v", tc.header, p, tc.want)
			}
		})
	}
}
