package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDefaultHealthURL(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		cmd  string
		want string
	}{
		{"edge default", nil, "edge", "http://127.0.0.1:8080/healthz"},
		{"edge addr", map[string]string{"STREAMRPC_ADDR": ":9000"}, "edge", "http://127.0.0.1:9000/healthz"},
		{"edge ignores the health addr", map[string]string{"STREAMRPC_HEALTH_ADDR": ":8081"}, "edge", "http://127.0.0.1:8080/healthz"},
		{"consumer default", nil, "consumer", "http://127.0.0.1:8081/healthz"},
		{"consumer addr", map[string]string{"STREAMRPC_HEALTH_ADDR": "127.0.0.1:7000"}, "consumer", "http://127.0.0.1:7000/healthz"},
		{"unknown, health addr set", map[string]string{"STREAMRPC_HEALTH_ADDR": ":7001"}, "", "http://127.0.0.1:7001/healthz"},
		{"unknown, health off", map[string]string{"STREAMRPC_HEALTH_ADDR": "off"}, "", "http://127.0.0.1:8080/healthz"},
		{"unknown", nil, "", "http://127.0.0.1:8080/healthz"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := defaultHealthURL(func(k string) string { return tc.env[k] }, tc.cmd)
			if got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestHealthcheckCommand(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(status)
	}))
	defer srv.Close()
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"healthcheck", "--url", srv.URL + "/healthz"}, &out, &errOut); code != 0 {
		t.Fatalf("healthy: code %d, stderr %q", code, errOut.String())
	}
	status = http.StatusServiceUnavailable
	if code := run(t.Context(), []string{"healthcheck", "--url", srv.URL + "/healthz"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "503") {
		t.Fatalf("unhealthy: code %d, stderr %q", code, errOut.String())
	}
	srv.Close()
	errOut.Reset()
	if code := run(t.Context(), []string{"healthcheck", "--url", srv.URL + "/healthz"}, &out, &errOut); code != 1 {
		t.Fatalf("nothing listening: code %d, stderr %q", code, errOut.String())
	}
}

func TestConsumerRequiresSettings(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no redis", map[string]string{"REDIS_URL": ""}, "REDIS_URL is not set"},
		{"no upstream", map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0", "STREAMRPC_HANDLER": "app", "STREAMRPC_METHODS": "greet"}, "STREAMRPC_UPSTREAM_URL"},
		{"no methods", map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0", "STREAMRPC_HANDLER": "app", "STREAMRPC_UPSTREAM_URL": "http://127.0.0.1:1"}, "STREAMRPC_METHODS"},
		{"bad method", map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0", "STREAMRPC_HANDLER": "app", "STREAMRPC_UPSTREAM_URL": "http://127.0.0.1:1", "STREAMRPC_METHODS": "a b"}, "method"},
		// The consumer reads none of the edge's settings: a broken edge setting
		// in a shared environment does not stop it.
		{"edge settings ignored", map[string]string{"REDIS_URL": "", "STREAMRPC_AUTH": "bogus", "STREAMRPC_CALL_TIMEOUT": "-1s"}, "REDIS_URL is not set"},
		{"bad grace", map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0", "STREAMRPC_SHUTDOWN_GRACE": "-1s"}, "STREAMRPC_SHUTDOWN_GRACE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"REDIS_URL", "STREAMRPC_HANDLER", "STREAMRPC_METHODS", "STREAMRPC_UPSTREAM_URL", "STREAMRPC_AUTH", "STREAMRPC_CALL_TIMEOUT", "STREAMRPC_SHUTDOWN_GRACE"} {
				t.Setenv(k, tc.env[k])
			}
			t.Setenv("STREAMRPC_HEALTH_ADDR", "off")
			var out, errOut bytes.Buffer
			if code := run(t.Context(), []string{"consumer"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), tc.want) {
				t.Fatalf("code %d, stderr %q; want 1 and %q", code, errOut.String(), tc.want)
			}
		})
	}
}

// TestHealthcheckReady: --ready asks /readyz of the same host, so an edge
// that is alive but cannot reach Redis passes the liveness check only.
func TestHealthcheckReady(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			http.Error(w, `{"status":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, `{"status":"ok"}`)
	}))
	t.Cleanup(srv.Close)
	t.Setenv("STREAMRPC_ADDR", strings.TrimPrefix(srv.URL, "http://"))
	t.Setenv("STREAMRPC_HEALTH_ADDR", "")
	cases := []struct {
		name string
		args []string
		want int
	}{
		{"liveness", []string{"healthcheck"}, 0},
		{"readiness", []string{"healthcheck", "--ready"}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(t.Context(), tc.args, &out, &errOut); code != tc.want {
				t.Fatalf("code %d, want %d; stdout %q stderr %q", code, tc.want, out.String(), errOut.String())
			}
		})
	}
}
