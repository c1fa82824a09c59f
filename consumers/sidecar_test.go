package consumers

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func newTestSidecar(t *testing.T, url string, mod func(*SidecarConfig)) *Sidecar {
	t.Helper()
	cfg := SidecarConfig{UpstreamURL: url, Methods: MethodList{{Name: "m", Description: "d"}}}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewSidecar(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestMethodListFromText(t *testing.T) {
	var l MethodList
	if err := l.UnmarshalText([]byte(" greet: says hello , add,, sub:minus: with colon ")); err != nil {
		t.Fatal(err)
	}
	want := MethodList{{Name: "greet", Description: "says hello"}, {Name: "add"}, {Name: "sub", Description: "minus: with colon"}}
	if len(l) != len(want) {
		t.Fatalf("got %+v, want %+v", l, want)
	}
	for i := range want {
		if l[i].Name != want[i].Name || l[i].Description != want[i].Description {
			t.Fatalf("got %+v, want %+v", l, want)
		}
	}
}

func TestSidecarConfigFromEnv(t *testing.T) {
	t.Setenv("STREAMRPC_UPSTREAM_URL", "http://127.0.0.1:3000/")
	t.Setenv("STREAMRPC_METHODS", "greet:says hello,add")
	t.Setenv("STREAMRPC_UPSTREAM_TIMEOUT", "5s")
	t.Setenv("STREAMRPC_UPSTREAM_READY_PATH", "")
	c, err := SidecarConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c = c.withDefaults()
	if c.UpstreamTimeout != 5*time.Second || c.ReadyPath != "/healthz" || c.ReadyTimeout != 2*time.Minute || len(c.Methods) != 2 || c.Methods[0].Description != "says hello" {
		t.Fatalf("config %+v", c)
	}
}

func TestSidecarConfigValidate(t *testing.T) {
	ok := SidecarConfig{UpstreamURL: "http://127.0.0.1:3000", Methods: MethodList{{Name: "m"}}}
	cases := map[string]func(*SidecarConfig){
		"no url":           func(c *SidecarConfig) { c.UpstreamURL = "" },
		"no scheme":        func(c *SidecarConfig) { c.UpstreamURL = "127.0.0.1:3000" },
		"ftp":              func(c *SidecarConfig) { c.UpstreamURL = "ftp://x" },
		"no methods":       func(c *SidecarConfig) { c.Methods = nil },
		"bad method":       func(c *SidecarConfig) { c.Methods = MethodList{{Name: "a/b"}} },
		"duplicate method": func(c *SidecarConfig) { c.Methods = MethodList{{Name: "a"}, {Name: "a"}} },
		"negative timeout": func(c *SidecarConfig) { c.UpstreamTimeout = -1 },
		"relative ready":   func(c *SidecarConfig) { c.ReadyPath = "healthz" },
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range cases {
		c := ok
		mod(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: Validate() = %v, want ErrConfig", name, err)
		}
	}
}

func TestSidecarForwardsTheCall(t *testing.T) {
	var got *http.Request
	var gotBody []byte
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		gotBody, _ = io.ReadAll(r.Body)
		_, _ = w.Write([]byte(` {"ok":true} `))
	}))
	defer up.Close()
	s := newTestSidecar(t, up.URL+"/api/", nil)
	deadline := time.Date(2030, 1, 2, 3, 4, 5, 678_000_000, time.UTC)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(time.Minute))
	defer cancel()
	res, err := s.ServeRPC(ctx, &Request{ID: "01ID", Handler: "h", Method: "m", Params: json.RawMessage(`{"a":1}`), Attempt: 2, Deadline: deadline})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.(json.RawMessage)) != `{"ok":true}` {
		t.Fatalf("result %s", res)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/api/m" || string(gotBody) != `{"a":1}` {
		t.Fatalf("request %s %s %s", got.Method, got.URL.Path, gotBody)
	}
	for h, want := range map[string]string{
		"Content-Type": "application/json", HeaderCallID: "01ID", HeaderAttempt: "2",
		HeaderDeadline: "2030-01-02T03:04:05.678Z", HeaderHandler: "h",
	} {
		if v := got.Header.Get(h); v != want {
			t.Errorf("header %s = %q, want %q", h, v, want)
		}
	}
	if ms := s.Methods(); len(ms) != 1 || ms[0].Name != "m" || ms[0].Description != "d" {
		t.Fatalf("Methods() = %+v", ms)
	}
}

func TestSidecarMapsAnswers(t *testing.T) {
	cases := []struct {
		name      string
		status    int
		body      string
		result    string // for a success
		code      int    // for an error
		message   string // substring
		data      string
		retryable bool
	}{
		{name: "200 json", status: 200, body: `{"x":[1,2]}`, result: `{"x":[1,2]}`},
		{name: "200 empty is null", status: 200, body: ``, result: `null`},
		{name: "204 is null", status: 204, result: `null`},
		{name: "201 string", status: 201, body: `"hi"`, result: `"hi"`},
		{name: "200 not json", status: 200, body: `hello`, code: CodeInternal, message: "not JSON"},
		{name: "422 error object", status: 422, body: `{"error":{"code":1001,"message":"name is required","data":{"field":"name"}}}`, code: 1001, message: "name is required", data: `{"field":"name"}`},
		{name: "422 flat object", status: 422, body: `{"code":7,"message":"nope"}`, code: 7, message: "nope"},
		{name: "422 no code", status: 422, body: `{"message":"bad"}`, code: CodeHandlerError, message: "bad"},
		{name: "422 no body", status: 422, code: CodeHandlerError, message: "422 Unprocessable Entity"},
		{name: "400 text", status: 400, body: "missing a", code: CodeInvalidParams, message: "missing a"},
		{name: "404", status: 404, code: CodeMethodNotFound},
		{name: "409 own code", status: 409, body: `{"error":{"code":-32602,"message":"dup"}}`, code: -32602, message: "dup"},
		{name: "500 text", status: 500, body: "db down", code: CodeInternal, message: "db down", retryable: true},
		{name: "503 json", status: 503, body: `{"error":{"message":"later"}}`, code: CodeInternal, message: "later", retryable: true},
		{name: "429", status: 429, code: CodeInternal, retryable: true},
		{name: "302 is final", status: 302, code: CodeHandlerError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.status == 302 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer up.Close()
			s := newTestSidecar(t, up.URL, nil)
			res, err := s.ServeRPC(context.Background(), &Request{ID: "1", Method: "m", Attempt: 1})
			if tc.result != "" {
				if err != nil || string(res.(json.RawMessage)) != tc.result {
					t.Fatalf("got %v, %v; want %s", res, err, tc.result)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, %v; want an *Error", res, err)
			}
			if e.Code != tc.code || !strings.Contains(e.Message, tc.message) || IsRetryable(err) != tc.retryable {
				t.Fatalf("got %+v (retryable %v), want code %d, message with %q, retryable %v", e, IsRetryable(err), tc.code, tc.message, tc.retryable)
			}
			if tc.data != "" {
				if w := wireError(err); string(w.Data) != tc.data {
					t.Fatalf("data %s, want %s", w.Data, tc.data)
				}
			}
		})
	}
}

func TestSidecarTransportErrorsAreRetryable(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		s := newTestSidecar(t, "http://"+addr, nil)
		_, err = s.ServeRPC(context.Background(), &Request{ID: "1", Method: "m", Attempt: 1})
		var e *Error
		if !errors.As(err, &e) || !IsRetryable(err) || !strings.Contains(e.Message, "refused") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("upstream timeout", func(t *testing.T) {
		release := make(chan struct{})
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		defer up.Close()
		defer close(release)
		s := newTestSidecar(t, up.URL, func(c *SidecarConfig) { c.UpstreamTimeout = 100 * time.Millisecond })
		_, err := s.ServeRPC(context.Background(), &Request{ID: "1", Method: "m", Attempt: 1})
		var e *Error
		if !errors.As(err, &e) || !IsRetryable(err) || e.Code != CodeTimeout {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("call deadline", func(t *testing.T) {
		release := make(chan struct{})
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		defer up.Close()
		defer close(release)
		s := newTestSidecar(t, up.URL, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := s.ServeRPC(ctx, &Request{ID: "1", Method: "m", Attempt: 1})
		if !IsRetryable(err) || time.Since(start) > 10*time.Second {
			t.Fatalf("got %v after %s", err, time.Since(start))
		}
	})
}

func TestSidecarUnknownMethod(t *testing.T) {
	s := newTestSidecar(t, "http://127.0.0.1:1", nil)
	if _, err := s.ServeRPC(context.Background(), &Request{Method: "other"}); !errors.Is(err, ErrMethodNotFound) {
		t.Fatalf("got %v", err)
	}
}

func TestSidecarWaitReady(t *testing.T) {
	var ready atomic.Bool
	var probes atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" {
			http.NotFound(w, r)
			return
		}
		if probes.Add(1) >= 3 {
			ready.Store(true)
		}
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer up.Close()
	s := newTestSidecar(t, up.URL, func(c *SidecarConfig) { c.ReadyPath = "/ready"; c.ReadyTimeout = 30 * time.Second })
	if err := s.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	if probes.Load() < 3 {
		t.Fatalf("ready after %d probes, want 3", probes.Load())
	}

	never := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer never.Close()
	s = newTestSidecar(t, never.URL, func(c *SidecarConfig) { c.ReadyTimeout = 300 * time.Millisecond })
	if err := s.WaitReady(context.Background()); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("WaitReady on a never-ready upstream = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.WaitReady(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitReady with a cancelled context = %v", err)
	}
}
